"""Evaluation noise of one trained model: mIoU from per-image counts, and its bootstrap interval over images.

The cell stage calls `bootstrap_miou_interval` on the reported model's evaluation and stores the result in the record
(`intervals.miou`); reports only read it. Seed-to-seed variation is a different question, answered in
`segbench.analysis.statistics`.
"""

from __future__ import annotations

import math

import numpy as np


def _check_counts(intersections: np.ndarray, unions: np.ndarray) -> None:
    if intersections.ndim != 2 or intersections.shape != unions.shape:
        raise ValueError("intersections and unions must both have shape (n_images, n_classes), got "
                         f"{intersections.shape} and {unions.shape}.")


def _miou_from_pooled(pooled_intersections: np.ndarray, pooled_unions: np.ndarray) -> np.ndarray:
    """mIoU over the last axis, counting only classes whose pooled union is positive; NaN where there is none."""
    present = pooled_unions > 0
    iou = np.divide(pooled_intersections, pooled_unions, out=np.zeros(pooled_unions.shape), where=present)
    n_present = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, iou.sum(axis=-1) / n_present, np.nan)


def pooled_miou(intersections: np.ndarray, unions: np.ndarray) -> float:
    """mIoU (fraction) from per-image per-class pixel counts, shape (n_images, n_classes): sum the counts over the
    images, then average I / U over the classes whose pooled union is positive (absent classes are left out)."""
    intersections, unions = np.asarray(intersections), np.asarray(unions)
    _check_counts(intersections, unions)
    pooled = _miou_from_pooled(intersections.sum(axis=0, dtype=np.float64), unions.sum(axis=0, dtype=np.float64))
    return float(pooled)


def bootstrap_miou_interval(intersections: np.ndarray, unions: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                            confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled mIoU over validation images (evaluation noise of one model).

    `intersections` and `unions`: per-image per-class pixel counts, shape (n_images, n_classes). Each resample draws
    n_images images with replacement (numpy Generator seeded with `seed`, so the same seed gives the same interval),
    pools their counts and computes mIoU as `pooled_miou` does, so a class absent from every drawn image drops out
    of that resample's mean: a class seen in few images widens the interval by how far its IoU lies from the
    others' (docs/report.md, "mIoU intervals"). Vectorised: a (n_resamples, n_images) matrix of how often each image
    was drawn times the count matrices. No images give (nan, nan).
    """
    intersections, unions = np.asarray(intersections), np.asarray(unions)
    _check_counts(intersections, unions)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    n_images = intersections.shape[0]
    if n_images == 0 or n_resamples < 1:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_images, size=(n_resamples, n_images))
    offsets = (np.arange(n_resamples) * n_images)[:, None]
    times_drawn = np.bincount((drawn + offsets).ravel(), minlength=n_resamples * n_images)
    times_drawn = times_drawn.reshape(n_resamples, n_images).astype(np.float64)
    # float64 holds pixel counts exactly up to 2**53, far beyond any validation set
    mious = _miou_from_pooled(times_drawn @ intersections.astype(np.float64), times_drawn @ unions.astype(np.float64))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(mious, [tail, 100.0 - tail])
    return (float(low), float(high))
