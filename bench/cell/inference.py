"""The evaluation protocol: how the logits of a batch of evaluation images are produced (the grid's `eval.mode` and
`eval.tta`).

- `whole` (eval.size unset) and `resize` (eval.size set; the loader resized the image): one forward pass of the
  padded image.
- `slide`: windows of `eval.crop` every `eval.stride` over the image, the last window of each row and column aligned
  to the image's border; each pixel's logits are the sum over the windows that cover it divided by their number
  (mmsegmentation's `slide_inference`). A side shorter than the window is one window of that side.
- `eval.tta: {scales, flip}`: softmax probabilities averaged over every scale (the image resized by it, padded to the
  architecture's multiple, its output cropped and resized back, bilinear) and, with `flip`, over the horizontally
  mirrored image too; each pass runs the mode above. The result is returned as log-probabilities, so that argmax and
  softmax downstream (metrics, calibration) see the averaged probabilities.

Every function takes the batch as the loader gives it: normalised, padded at the bottom and right to the
architecture's multiple (padded pixels are labelled ignore and never scored).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Forward = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Protocol:
    mode: str = "whole"  # whole | resize | slide
    crop: tuple[int, int] | None = None  # slide: window (H, W)
    stride: tuple[int, int] | None = None  # slide: step (H, W)
    scales: tuple[float, ...] = (1.0,)  # tta
    flip: bool = False
    pad_multiple: int = 1  # the architecture's: each TTA scale is padded to it

    @classmethod
    def of(cls, evaluation, pad_multiple: int) -> Protocol:
        """The protocol of a grid's `eval` section (segbench.grid.schema.EvalConfig) for an architecture that takes
        inputs padded to `pad_multiple`."""
        tta = evaluation.tta
        return cls(mode=evaluation.protocol_mode, crop=evaluation.crop, stride=evaluation.stride,
                   scales=tuple(tta.scales) if tta else (1.0,), flip=bool(tta and tta.flip),
                   pad_multiple=pad_multiple)

    @classmethod
    def during_training(cls, evaluation, pad_multiple: int) -> Protocol:
        """The protocol of the evaluations while a cell trains (every eval_every epochs, the selection split, a
        tuning trial's score): one forward pass of the image resized to eval.size, else whole. The grid's protocol
        (eval.mode, eval.tta) is an evaluation setting of the trained weights and never changes what trains."""
        return cls(mode="resize" if evaluation.size is not None else "whole", pad_multiple=pad_multiple)

    @property
    def tta(self) -> bool:
        return self.scales != (1.0,) or self.flip

    def describe(self) -> str:
        text = {"whole": "whole image", "resize": "resized image (eval.size)"}.get(self.mode) or (
            f"sliding window {self.crop[0]}x{self.crop[1]}, stride {self.stride[0]}x{self.stride[1]}")
        if self.tta:
            text += f"; TTA: softmax averaged over scales {list(self.scales)}{' and flip' if self.flip else ''}"
        return text


WHOLE = Protocol()  # one forward pass of the batch as it is


class ProtocolModel(torch.nn.Module):
    """`model` under `protocol`, as a module (what the cost measurement times for one full image)."""

    def __init__(self, model: torch.nn.Module, protocol: Protocol) -> None:
        super().__init__()
        self.model = model
        self.protocol = protocol

    def forward(self, images: Tensor) -> Tensor:
        return protocol_logits(self.model, images, self.protocol)


def protocol_logits(model: Forward, images: Tensor, protocol: Protocol) -> Tensor:
    """Logits [B, C, H, W] of `images` [B, 3, H, W] under `protocol` (log-probabilities under TTA)."""
    def single(batch: Tensor) -> Tensor:
        if protocol.mode == "slide":
            return slide_logits(model, batch, protocol.crop, protocol.stride)
        return model(batch)

    if not protocol.tta:
        return single(images)
    return tta_log_probabilities(single, images, protocol.scales, protocol.flip, protocol.pad_multiple)


def slide_logits(model: Forward, images: Tensor, crop: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """Overlapping windows (mmsegmentation's slide_inference): per pixel, the mean of the logits of the windows that
    cover it, summed in float32."""
    batch, _, height, width = images.shape
    (crop_h, crop_w), (stride_h, stride_w) = crop, stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total: Tensor | None = None
    count = torch.zeros(1, 1, height, width, device=images.device)
    for row in range(rows):
        for col in range(cols):
            y2, x2 = min(row * stride_h + crop_h, height), min(col * stride_w + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            window = model(images[:, :, y1:y2, x1:x2]).float()
            if total is None:
                total = torch.zeros(batch, window.shape[1], height, width, device=images.device)
            total[:, :, y1:y2, x1:x2] += window
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def tta_log_probabilities(single: Forward, images: Tensor, scales: tuple[float, ...], flip: bool,
                          pad_multiple: int) -> Tensor:
    """log of the softmax probabilities averaged over `scales` x (image, mirrored image if `flip`)."""
    height, width = images.shape[-2:]
    total: Tensor | None = None
    passes = 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = images if size == (height, width) else F.interpolate(images, size=size, mode="bilinear",
                                                                      align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            batch = scaled.flip(-1) if mirrored else scaled
            padded_h, padded_w = (-(-side // pad_multiple) * pad_multiple for side in size)
            batch = F.pad(batch, (0, padded_w - size[1], 0, padded_h - size[0]))
            logits = single(batch).float()[..., :size[0], :size[1]]
            if mirrored:
                logits = logits.flip(-1)
            if size != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probabilities = logits.softmax(dim=1)
            total = probabilities if total is None else total + probabilities
            passes += 1
    return (total / passes).clamp_min(torch.finfo(torch.float32).tiny).log()
