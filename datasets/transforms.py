"""Joint image/label transforms: `(PIL RGB image, uint8 label [H, W]) -> (float32 [3, H, W], int64 [H, W])`.

Randomness comes only from torch's global generator (`torch.rand`, `torch.randint`), so `torch.manual_seed(seed)`
makes training reproducible, DataLoader workers included (each worker's torch generator is seeded from the base
seed). Images are resampled bilinearly, labels with nearest-neighbour only, and label padding is always
`ignore_index`, so neither resizing nor padding invents a class.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from segbench.datasets.labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def normalize(image: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] with ImageNet mean and std (the mean colour becomes 0)."""
    if not image.flags.writeable:  # arrays viewing a PIL image are read-only; torch warns about those
        image = image.copy()
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return pixels.sub_(_MEAN).div_(_STD)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize`: float [3, H, W] -> uint8 [H, W, 3] (for visualisation)."""
    pixels = image.detach().cpu().mul(_STD).add(_MEAN).clamp(0, 1).mul(255).round()
    return pixels.to(torch.uint8).permute(1, 2, 0)


def padded_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(H, W) after bottom/right padding of each side up to a multiple of `multiple`, as EvalTransform pads."""
    return (-(-size[0] // multiple) * multiple, -(-size[1] // multiple) * multiple)  # integer ceiling


def _check_pair(image: Image.Image, label: np.ndarray) -> None:
    if label.ndim != 2 or (label.shape[1], label.shape[0]) != image.size:
        raise ValueError(f"label of shape {label.shape} does not match image of size {image.size} (W, H)")


def _int_random(high: int) -> int:
    """Uniform integer in [0, high] from torch's generator."""
    return int(torch.randint(0, high + 1, (1,)).item()) if high > 0 else 0


class TrainTransform:
    """Random rescale, pad, random crop, random horizontal flip, ImageNet normalisation.

    crop: (H, W) of the output. scale_range: factors of the rescale, drawn uniformly. The crop window is chosen in
    the rescaled image and only that window is resampled (PIL `resize(box=...)`), so the cost depends on the crop
    size, not on the image size or the scale.
    """

    def __init__(
        self,
        crop: tuple[int, int],
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if len(crop) != 2 or min(crop) < 1:
            raise ValueError(f"crop must be (H, W) with positive sizes, got {crop}")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        self.crop = (int(crop[0]), int(crop[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.hflip = hflip
        self.ignore_index = ignore_index

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, label)
        crop_h, crop_w = self.crop
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(1).item())
        width, height = image.size
        scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
        # Padding goes bottom/right; the crop window is drawn over the padded canvas.
        top = _int_random(max(scaled_h, crop_h) - crop_h)
        left = _int_random(max(scaled_w, crop_w) - crop_w)
        rows = min(top + crop_h, scaled_h) - top
        cols = min(left + crop_w, scaled_w) - left

        image_out = torch.zeros(3, crop_h, crop_w)  # 0 = the mean colour after normalisation
        label_out = torch.full((crop_h, crop_w), self.ignore_index, dtype=torch.int64)
        if rows > 0 and cols > 0:
            fx, fy = width / scaled_w, height / scaled_h
            box = (left * fx, top * fy, (left + cols) * fx, (top + rows) * fy)
            window = image.resize((cols, rows), Image.BILINEAR, box=box)
            label_window = Image.fromarray(label).resize((cols, rows), Image.NEAREST, box=box)
            image_out[:, :rows, :cols] = normalize(np.asarray(window))
            label_out[:rows, :cols] = torch.from_numpy(np.asarray(label_window).astype(np.int64))
        if self.hflip and float(torch.rand(1).item()) < 0.5:
            image_out, label_out = image_out.flip(-1), label_out.flip(-1)
        return image_out, label_out

    def __repr__(self) -> str:
        return f"TrainTransform(crop={self.crop}, scale_range={self.scale_range}, hflip={self.hflip})"


class EvalTransform:
    """Optional resize to size (H, W), normalisation, bottom/right padding to a multiple of `pad_multiple`.

    Padded label pixels are `ignore_index`, so they are never scored; crop predictions back to the label's
    unpadded extent (or just score with ignore) when comparing with other tools.
    """

    def __init__(
        self, size: tuple[int, int] | None = None, pad_multiple: int = 32, ignore_index: int = IGNORE_INDEX
    ) -> None:
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (H, W) with positive sizes or None, got {size}")
        if pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.pad_multiple = int(pad_multiple)
        self.ignore_index = ignore_index

    def __call__(self, image: Image.Image, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, label)
        if self.size is not None and (image.size[1], image.size[0]) != self.size:
            target = (self.size[1], self.size[0])
            image = image.resize(target, Image.BILINEAR)
            label = np.asarray(Image.fromarray(label).resize(target, Image.NEAREST))
        height, width = label.shape
        padded_h, padded_w = padded_size((height, width), self.pad_multiple)
        image_out = torch.zeros(3, padded_h, padded_w)
        label_out = torch.full((padded_h, padded_w), self.ignore_index, dtype=torch.int64)
        image_out[:, :height, :width] = normalize(np.asarray(image))
        label_out[:height, :width] = torch.from_numpy(label.astype(np.int64))
        return image_out, label_out

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, pad_multiple={self.pad_multiple})"
