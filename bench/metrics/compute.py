"""The compute step: every segbench metric of one confusion matrix, as plain Python numbers.

`compute_metrics` is the only place a metric is computed; `segbench.metrics.catalogue` declares how each scalar it
returns is reported (direction, unit, label, format). The definitions are written out in docs/metrics.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported by the callers that pass tensors; readers of records do not load it
    from torch import Tensor

# Macro mean -> the per-class metric it averages over the classes where that metric is defined.
MACRO_MEANS: dict[str, str] = {"miou": "iou", "mdice": "dice", "mprecision": "precision", "mrecall": "recall"}


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator in float64, NaN where the denominator is 0 (undefined, not 0)."""
    out = np.full(np.shape(numerator), math.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def mean_defined(values: np.ndarray | list[float]) -> float:
    """Mean over the entries that are not NaN; NaN (without numpy's empty-slice warning) when none is."""
    array = np.asarray(values, dtype=np.float64)
    defined = array[~np.isnan(array)]
    return float(defined.mean()) if defined.size else math.nan


def compute_metrics(matrix: Tensor | np.ndarray) -> dict[str, Any]:
    """All segbench metrics of a [C, C] confusion matrix (rows = ground truth, columns = prediction).

    Returns plain floats, ints and lists; undefined values are float('nan'). Macro means run over the classes that
    occur in the ground truth or the prediction; see docs/metrics.md for every formula.
    """
    if hasattr(matrix, "detach"):  # a torch tensor
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

    per_class = {
        "iou": ratio(tp, tp + fp + fn),  # NaN exactly for classes absent from both ground truth and prediction
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp),  # NaN for a class that is never predicted
        "recall": ratio(tp, tp + fn),  # NaN for a class absent from the ground truth
        "specificity": ratio(tn, tn + fp),
    }
    gt_share = ratio(gt_pixels, np.full(num_classes, num_pixels))

    # Pooled over classes. For single-label predictions sum(FP) = sum(FN) = E (wrong pixels), so micro precision,
    # recall and Dice all equal pixel accuracy; they are computed from the pooled counts so a test can check that.
    tp_all, fp_all, fn_all, tn_all = int(tp.sum()), int(fp.sum()), int(fn.sum()), int(tn.sum())

    def pooled(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else math.nan

    in_gt = gt_pixels > 0
    return {
        "pixel_accuracy": pooled(tp_all, num_pixels),
        **{mean: mean_defined(per_class[name]) for mean, name in MACRO_MEANS.items()},
        "fwiou": float((gt_share[in_gt] * per_class["iou"][in_gt]).sum()) if num_pixels else math.nan,
        "micro_iou": pooled(tp_all, tp_all + fp_all + fn_all),
        "micro_dice": pooled(2 * tp_all, 2 * tp_all + fp_all + fn_all),
        "micro_precision": pooled(tp_all, tp_all + fp_all),
        "micro_recall": pooled(tp_all, tp_all + fn_all),
        "micro_specificity": pooled(tn_all, tn_all + fp_all),
        "per_class": {
            **{name: values.tolist() for name, values in per_class.items()},
            "gt_pixels": gt_pixels.tolist(),
            "pred_pixels": pred_pixels.tolist(),
            "gt_share": gt_share.tolist(),
        },
        "num_pixels": num_pixels,
        "num_classes": num_classes,
    }
