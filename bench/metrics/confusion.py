"""Segmentation metrics, the torchmetrics way: one confusion matrix as the sufficient statistic, then a compute step.

`confusion_matrix` counts one batch on the batch's own device; `ConfusionMatrix` accumulates batches over a whole
split in int64; its `compute` is `segbench.metrics.compute.compute_metrics`, which turns a matrix into plain Python
numbers (JSON-ready, undefined values as NaN). The definitions are written out in docs/metrics.md.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from segbench.metrics.compute import compute_metrics


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Count (ground truth, prediction) pairs of one batch; pixels whose target is `ignore_index` are dropped.

    pred, target: integer class indices of the same shape (e.g. [B, H, W]). Returns an int64 [C, C] tensor on the
    inputs' device, rows = ground truth, columns = prediction.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError(f"pred and target must hold integer class indices, got {pred.dtype} and {target.dtype}")
    if pred.numel() == 0:
        return torch.zeros(num_classes, num_classes, dtype=torch.int64, device=pred.device)
    # One bincount over a flat (truth, prediction) index, ignored pixels sent to an extra bin that is dropped: no
    # boolean selection, which copies both tensors and costs more than the count itself.
    bins = num_classes * num_classes
    ignored = target == ignore_index
    index = target.long() * num_classes + pred
    index.masked_fill_(ignored, bins)
    # Labels outside 0..C-1 are a bug upstream (a wrong label mapping, an unmapped void id); bincount would silently
    # file them under another class. The cheap tests cover every pixel (one device-to-host sync before the count,
    # one after); only when one fails are the valid pixels examined alone, since an ignored pixel may hold anything.
    p_min, p_max, t_min = torch.stack([value.long() for value in (*torch.aminmax(pred), target.min())]).tolist()
    if p_min < 0 or p_max >= num_classes or t_min < 0:
        _check_range(pred, target, num_classes, ignore_index)
    counts = torch.bincount(index.reshape(-1), minlength=bins + 1)
    # With predictions in range, a target above C-1 lands in the extra bin or beyond it.
    if counts.numel() > bins + 1 or bool(counts[bins] != ignored.sum()):
        _check_range(pred, target, num_classes, ignore_index)
    return counts[:bins].reshape(num_classes, num_classes)


def _check_range(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise ValueError when a pixel whose target is not `ignore_index` holds a class outside 0..C-1."""
    valid = target != ignore_index
    truth, guess = target[valid], pred[valid]
    if truth.numel() == 0:
        return
    t_min, t_max, p_min, p_max = torch.stack([truth.min(), truth.max(), guess.min(), guess.max()]).tolist()
    if min(t_min, p_min) < 0 or max(t_max, p_max) >= num_classes:
        raise ValueError(
            f"class indices must lie in 0..{num_classes - 1} (or equal ignore_index={ignore_index} in the "
            f"target); got target range {t_min}..{t_max}, prediction range {p_min}..{p_max}"
        )


class ConfusionMatrix:
    """Accumulates an int64 confusion matrix over many batches (int32 overflows on Cityscapes train).

    With `device=None` the matrix moves to the device of the first batch and stays there, so accumulation never
    copies a batch to the host.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._follow_input = device is None
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred_or_logits: Tensor, target: Tensor) -> None:
        """Add one batch. pred_or_logits: class indices shaped like target ([B, H, W]) or logits [B, C, H, W].

        Logits are reduced with argmax over the class dimension; a softmax is never thresholded, so every valid
        pixel receives exactly one predicted class.
        """
        if pred_or_logits.is_floating_point():
            if pred_or_logits.dim() != target.dim() + 1 or pred_or_logits.shape[1] != self.num_classes:
                raise ValueError(
                    f"floating-point predictions must be logits [B, {self.num_classes}, ...] for a target "
                    f"{tuple(target.shape)}, got {tuple(pred_or_logits.shape)}"
                )
            pred = pred_or_logits.argmax(dim=1)
        else:
            pred = pred_or_logits
        counts = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        if self._follow_input and self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts.to(self.matrix.device)

    def compute(self) -> dict[str, Any]:
        return compute_metrics(self.matrix)

    def reset(self) -> None:
        self.matrix.zero_()
