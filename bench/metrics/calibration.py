"""Expected calibration error (ECE) of the top-class confidence, per pixel, accumulated exactly over a whole split.

Each pixel whose label is not ignored has a confidence (its largest softmax probability) and is correct when that
class is its label. Pixels are filed into BINS equal-width bins of confidence, bin m (1-based) holding the
confidences in ((m-1)/M, m/M] and the first bin also 0 (Guo et al., "On Calibration of Modern Neural Networks", ICML
2017, section 2). Per bin the accumulator keeps the pixel count, the sum of confidences and the count of correct
pixels, so ECE = sum over bins of (n_m / N) |accuracy_m - mean confidence_m| is exact for the split: no sampling.
The same bins give the reliability diagram. torchmetrics' `MulticlassCalibrationError(n_bins=15, norm="l1")` computes
the same number, except that it gives a confidence of exactly 1.0 a bin of its own.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

BINS = 15


class CalibrationBins:
    """Per-bin pixel counts, confidence sums (float64) and correct counts over batches of logits and labels."""

    def __init__(self, bins: int = BINS, device: torch.device | str | None = None) -> None:
        self.bins = bins
        self.count = torch.zeros(bins, dtype=torch.int64, device=device)
        self.confidence = torch.zeros(bins, dtype=torch.float64, device=device)
        self.correct = torch.zeros(bins, dtype=torch.int64, device=device)

    def update(self, logits: Tensor, target: Tensor, ignore_index: int) -> None:
        """logits [B, C, H, W] (any float dtype; the softmax is taken in float32), target [B, H, W] class indices."""
        probabilities = torch.softmax(logits.float(), dim=1)
        confidence, pred = probabilities.max(dim=1)
        valid = target != ignore_index
        confidence = confidence[valid].double()
        correct = (pred[valid] == target[valid]).long()
        index = (torch.ceil(confidence * self.bins).long() - 1).clamp_(0, self.bins - 1)
        self.count.index_add_(0, index, torch.ones_like(index))
        self.confidence.index_add_(0, index, confidence)
        self.correct.index_add_(0, index, correct)

    def state(self) -> Tensor:
        """The three accumulators stacked as float64 [3, bins] (for a sum over ranks)."""
        return torch.stack([self.count.double(), self.confidence, self.correct.double()])

    def load_state(self, state: Tensor) -> None:
        self.count = state[0].round().long()
        self.confidence = state[1].clone()
        self.correct = state[2].round().long()

    def compute(self) -> dict[str, Any]:
        return calibration_summary(self.count.cpu().tolist(), self.confidence.cpu().tolist(),
                                   self.correct.cpu().tolist())


def calibration_summary(count: list[int], confidence_sum: list[float], correct: list[int]) -> dict[str, Any]:
    """ECE (NaN with no pixel) and the reliability diagram's bins from the accumulated sums."""
    total = sum(count)
    bins = len(count)
    rows = []
    ece = 0.0
    for m, (n, conf, hits) in enumerate(zip(count, confidence_sum, correct, strict=True)):
        accuracy = hits / n if n else math.nan
        mean_confidence = conf / n if n else math.nan
        if n:
            ece += n / total * abs(accuracy - mean_confidence)
        rows.append({"lower": m / bins, "upper": (m + 1) / bins, "pixels": n, "accuracy": accuracy,
                     "confidence": mean_confidence})
    return {"ece": ece if total else math.nan, "bins": rows, "pixels": total,
            "method": f"top-class softmax confidence per pixel (ignore pixels excluded), {bins} equal-width bins "
                      "((m-1)/M, m/M], l1 (Guo et al. 2017), exact counts over the split"}
