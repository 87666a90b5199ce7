"""Training losses behind one registry, and class weights computed from pixel counts.

Every entry of `LOSSES` is a factory `(*, num_classes, class_weights, ignore_index, gamma) -> nn.Module` whose module
maps logits [B, C, H, W] and targets [B, H, W] (class indices, `ignore_index` for void) to a scalar loss.
Definitions are written out in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segbench.errors import ConfigError
from segbench.registry import Registry, did_you_mean

LossFactory = Callable[..., nn.Module]
LOSSES: Registry[LossFactory] = Registry("loss")

CLASS_WEIGHT_METHODS = ("inverse_freq", "median_freq")


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017) with an ignore index and optional class weights.

    Per valid pixel with target y: FL = -w[y] * (1 - p_y)^gamma * log p_y, p = softmax(logits) over classes. The
    sum over valid pixels is divided by the sum of w[y] over valid pixels, the normalisation of weighted
    `nn.CrossEntropyLoss`, so gamma = 0 reproduces cross-entropy exactly. A batch without valid pixels gives 0.
    """

    def __init__(
        self, num_classes: int, class_weights: Tensor | None = None, ignore_index: int = 255, gamma: float = 2.0
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.gamma = float(gamma)
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: [B, C, ...] in any float dtype; target: [B, ...] class indices. Returns a float32 scalar."""
        if logits.dim() != target.dim() + 1 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"expected logits [B, {self.num_classes}, ...] for a target {tuple(target.shape)}, "
                f"got {tuple(logits.shape)}"
            )
        # float32 whatever the autocast dtype: log-probabilities of rare classes underflow in half precision.
        log_probs = F.log_softmax(logits.float(), dim=1)
        valid = target != self.ignore_index
        # Ignore pixels read class 0 so that gather stays in range; their weight is zeroed below.
        safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
        log_p = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)
        # 1 - p computed as -expm1(log p) keeps precision for confident pixels; the clamp keeps the gradient of
        # (1 - p)^gamma finite for 0 < gamma < 1 when p rounds to 1.
        one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(torch.float32).tiny)
        per_pixel = -one_minus_p.pow(self.gamma) * log_p
        if self.class_weights is None:
            weight = valid.float()
        else:
            weight = self.class_weights.to(device=logits.device, dtype=torch.float32)[safe_target] * valid
        # The clamp only matters when no pixel carries weight: 0 / tiny = 0 instead of 0 / 0 = NaN, and the result
        # stays connected to the graph (its gradient is 0).
        return (per_pixel * weight).sum() / weight.sum().clamp_min(torch.finfo(torch.float32).tiny)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """`nn.CrossEntropyLoss` that gives 0 (not NaN) for a batch without a valid pixel, like `FocalLoss`.

    A crop can fall entirely on void pixels; NaN there would be mistaken for a diverging run.
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = super().forward(logits, target)
        # torch.where rather than an `if` on the tensor, which would make the host wait for the device every step.
        return torch.where((target != self.ignore_index).any(), loss, torch.zeros_like(loss))


@LOSSES.register("ce")
def cross_entropy(
    *, num_classes: int, class_weights: Tensor | None, ignore_index: int = 255, gamma: float = 2.0
) -> nn.Module:
    """Weighted cross-entropy over valid pixels (gamma is not used)."""
    return CrossEntropyLoss(weight=class_weights, ignore_index=ignore_index)


@LOSSES.register("focal")
def focal(*, num_classes: int, class_weights: Tensor | None, ignore_index: int = 255, gamma: float = 2.0) -> nn.Module:
    """Softmax focal loss; see `FocalLoss`."""
    return FocalLoss(num_classes, class_weights=class_weights, ignore_index=ignore_index, gamma=gamma)


def build_loss(
    name: str,
    *,
    num_classes: int,
    class_weights: Tensor | np.ndarray | None = None,
    ignore_index: int = 255,
    gamma: float = 2.0,
) -> nn.Module:
    """The registered loss `name`. class_weights: [C] per-class weights (e.g. from `class_weights_from_counts`)."""
    factory = LOSSES.get(name)
    weights = None
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if weights.shape != (num_classes,):
            raise ValueError(f"class_weights must have shape ({num_classes},), got {tuple(weights.shape)}")
    return factory(num_classes=num_classes, class_weights=weights, ignore_index=ignore_index, gamma=gamma)


def class_weights_from_counts(counts: np.ndarray, method: str) -> np.ndarray:
    """Per-class loss weights from pixel counts, normalised to mean 1 over the classes that occur.

    counts: [C] pixel histogram of the training split, or [num_images, C] per-image histograms.
    - inverse_freq: w_c = 1 / f_c with f_c = class c's share of all valid pixels.
    - median_freq (Eigen & Fergus 2015): w_c = median(f) / f_c with f_c = class c's pixels divided by the pixels of
      the images in which c occurs; the median runs over classes that occur. From a [C] histogram f_c falls back to
      the global share, and after the mean-1 normalisation the result then equals inverse_freq.
    Classes with no pixel get weight 0 (they never occur as a target). Returns float64 [C].
    """
    if method not in CLASS_WEIGHT_METHODS:
        raise ConfigError(
            f"unknown class-weight method '{method}'{did_you_mean(method, list(CLASS_WEIGHT_METHODS))}; "
            f"valid methods: {', '.join(CLASS_WEIGHT_METHODS)}."
        )
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim not in (1, 2) or (counts < 0).any():
        raise ValueError(f"counts must be a non-negative [C] or [num_images, C] array, got shape {counts.shape}")
    class_pixels = counts if counts.ndim == 1 else counts.sum(axis=0)
    occurs = class_pixels > 0
    if not occurs.any():
        raise ValueError("counts are all zero: the training split has no labelled pixel")

    if method == "median_freq" and counts.ndim == 2:
        image_pixels = counts.sum(axis=1, keepdims=True)
        pixels_where_present = (image_pixels * (counts > 0)).sum(axis=0)
        freq = class_pixels[occurs] / pixels_where_present[occurs]
    else:
        freq = class_pixels[occurs] / class_pixels.sum()
    raw = 1.0 / freq if method == "inverse_freq" else np.median(freq) / freq

    weights = np.zeros(class_pixels.shape[0])
    weights[occurs] = raw / raw.mean()
    return weights
