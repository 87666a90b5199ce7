"""Segmentation metrics, the torchmetrics way: one confusion matrix as the sufficient statistic, then a compute step.

`confusion_matrix` counts one batch on the batch's own device; `ConfusionMatrix` accumulates batches over a whole
split in int64; `compute_metrics` turns a matrix into plain Python numbers (JSON-ready, undefined values as NaN).
The definitions follow the project's measurement reference and are written out in docs/metrics.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Count (ground truth, prediction) pairs of one batch; pixels whose target is `ignore_index` are dropped.

    pred, target: integer class indices of the same shape (e.g. [B, H, W]). Returns an int64 [C, C] tensor on the
    inputs' device, rows = ground truth, columns = prediction.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError(f"pred and target must hold integer class indices, got {pred.dtype} and {target.dtype}")
    valid = target != ignore_index
    truth = target[valid].long()
    guess = pred[valid].long()
    if truth.numel() > 0:
        # One device-to-host sync for the whole range check. Labels outside 0..C-1 are a bug upstream (a wrong label
        # mapping, an unmapped void id); bincount would silently file them under another class.
        t_min, t_max, p_min, p_max = torch.stack([truth.min(), truth.max(), guess.min(), guess.max()]).tolist()
        if min(t_min, p_min) < 0 or max(t_max, p_max) >= num_classes:
            raise ValueError(
                f"class indices must lie in 0..{num_classes - 1} (or equal ignore_index={ignore_index} in the "
                f"target); got target range {t_min}..{t_max}, prediction range {p_min}..{p_max}"
            )
    counts = torch.bincount(truth * num_classes + guess, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


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


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator in float64, NaN where the denominator is 0 (undefined, not 0)."""
    out = np.full(np.shape(numerator), math.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the entries that are not NaN; NaN (without numpy's empty-slice warning) when none is."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def compute_metrics(matrix: Tensor | np.ndarray) -> dict[str, Any]:
    """All segbench metrics of a [C, C] confusion matrix (rows = ground truth, columns = prediction).

    Returns plain floats, ints and lists; undefined values are float('nan'). Macro means run over the classes that
    occur in the ground truth or the prediction; see docs/metrics.md for every formula.
    """
    if isinstance(matrix, Tensor):
        matrix = matrix.detach().cpu().numpy()
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix must be square [C, C], got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.integer):
        raise ValueError(f"a confusion matrix holds integer counts, got dtype {matrix.dtype}")
    counts = matrix.astype(np.int64)
    num_classes = counts.shape[0]

    # Sums stay int64 (exact); ratios are taken in float64, exact for counts below 2**53.
    tp = np.diag(counts)
    gt_pixels = counts.sum(axis=1)
    pred_pixels = counts.sum(axis=0)
    num_pixels = int(counts.sum())
    fp = pred_pixels - tp
    fn = gt_pixels - tp
    tn = num_pixels - tp - fp - fn

    iou = _ratio(tp, tp + fp + fn)  # NaN exactly for classes absent from both ground truth and prediction
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    precision = _ratio(tp, tp + fp)  # NaN for a class that is never predicted
    recall = _ratio(tp, tp + fn)  # NaN for a class absent from the ground truth
    specificity = _ratio(tn, tn + fp)
    gt_share = _ratio(gt_pixels, np.full(num_classes, num_pixels))

    # Pooled over classes. For single-label predictions sum(FP) = sum(FN) = E (wrong pixels), so micro precision,
    # recall and Dice all equal pixel accuracy; they are computed from the pooled counts so a test can check that.
    tp_all, fp_all, fn_all, tn_all = int(tp.sum()), int(fp.sum()), int(fn.sum()), int(tn.sum())

    def pooled(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else math.nan

    in_gt = gt_pixels > 0
    return {
        "pixel_accuracy": pooled(tp_all, num_pixels),
        "miou": _mean_defined(iou),
        "mdice": _mean_defined(dice),
        "mprecision": _mean_defined(precision),
        "mrecall": _mean_defined(recall),
        "fwiou": float((gt_share[in_gt] * iou[in_gt]).sum()) if num_pixels else math.nan,
        "micro_iou": pooled(tp_all, tp_all + fp_all + fn_all),
        "micro_dice": pooled(2 * tp_all, 2 * tp_all + fp_all + fn_all),
        "micro_precision": pooled(tp_all, tp_all + fp_all),
        "micro_recall": pooled(tp_all, tp_all + fn_all),
        "micro_specificity": pooled(tn_all, tn_all + fp_all),
        "per_class": {
            "iou": iou.tolist(),
            "dice": dice.tolist(),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "specificity": specificity.tolist(),
            "gt_pixels": gt_pixels.tolist(),
            "pred_pixels": pred_pixels.tolist(),
            "gt_share": gt_share.tolist(),
        },
        "num_pixels": num_pixels,
        "num_classes": num_classes,
    }
