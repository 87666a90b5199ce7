"""Evaluate a model on a loader: one confusion matrix on the evaluation device, plus per-image counts.

Per image it keeps valid and correct pixels and, per class, the intersection and union pixel counts: enough to
recompute mIoU over any resample of the images (the bootstrap interval of segbench.metrics.bootstrap). The reported
(final) evaluation also accumulates the calibration bins (segbench.metrics.calibration) and the boundary IoU counts
(segbench.metrics.boundary); the evaluations during training do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from segbench.cell.inference import WHOLE, Protocol, protocol_logits
from segbench.metrics.boundary import BoundaryIoU
from segbench.metrics.calibration import CalibrationBins
from segbench.metrics.confusion import ConfusionMatrix, compute_metrics


@dataclass
class EvaluationResult:
    matrix: torch.Tensor  # int64 [C, C] on the CPU; rows = ground truth, columns = prediction
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]  # index, valid pixels, correct pixels (in loader order)
    intersection: np.ndarray  # int64 [N images, C]: pixels predicted c where the ground truth is c
    union: np.ndarray  # int64 [N images, C]: valid pixels predicted c or labelled c
    seconds: float = 0.0  # wall time of the evaluation, set by the caller that timed it
    calibration: CalibrationBins | None = None  # the final evaluation's (evaluate_model(final=True))
    boundary: BoundaryIoU | None = None


def per_image_class_counts(pred: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-class intersection and union pixel counts of a batch, int64 [B, C] each.

    pred and labels are [B, H, W] class indices; pixels whose label is `ignore_index` are never counted."""
    batch = pred.shape[0]
    valid = labels != ignore_index
    image = torch.arange(batch, device=pred.device).view(batch, 1, 1).expand_as(pred)
    target = labels.clamp(0, num_classes - 1)
    both = torch.stack([target, pred.clamp(0, num_classes - 1)])  # [2, B, H, W]
    counts = torch.zeros(3, batch * num_classes, dtype=torch.int64, device=pred.device)
    for row, classes in enumerate(both):  # pixels labelled c, pixels predicted c
        counts[row].index_add_(0, (image * num_classes + classes)[valid], torch.ones_like(classes[valid]))
    hit = valid & (pred == labels)
    counts[2].index_add_(0, (image * num_classes + target)[hit], torch.ones_like(target[hit]))
    labelled, predicted, intersection = (c.view(batch, num_classes) for c in counts)
    return intersection, labelled + predicted - intersection


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module, loader: DataLoader, info: Any, device: torch.device, autocast, final: bool = False,
    protocol: Protocol = WHOLE,
) -> EvaluationResult:
    """Argmax predictions over the whole split under the inference `protocol` (inference.py); padded and ignore
    pixels are never counted. final: also the calibration bins and boundary IoU counts (the reported evaluation)."""
    model.eval()
    confusion = ConfusionMatrix(info.num_classes, ignore_index=info.ignore_index, device=device)
    calibration = CalibrationBins(device=device) if final else None
    boundary = BoundaryIoU(info.num_classes, info.ignore_index, device=device) if final else None
    per_image: list[dict[str, Any]] = []
    intersections: list[torch.Tensor] = []
    unions: list[torch.Tensor] = []
    index = 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast:
            logits = protocol_logits(model, images, protocol)
        pred = logits.argmax(dim=1)
        confusion.update(pred, labels)
        if final:
            calibration.update(logits, labels, info.ignore_index)
            boundary.update(pred, labels)
        intersection, union = per_image_class_counts(pred, labels, info.num_classes, info.ignore_index)
        intersections.append(intersection.cpu())
        unions.append(union.cpu())
        valid = labels != info.ignore_index
        correct = ((pred == labels) & valid).flatten(1).sum(dim=1).tolist()
        counts = valid.flatten(1).sum(dim=1).tolist()
        for valid_pixels, correct_pixels in zip(counts, correct, strict=True):
            per_image.append({"index": index, "valid_pixels": valid_pixels, "correct_pixels": correct_pixels})
            index += 1
    matrix = confusion.matrix.cpu()
    empty = torch.zeros(0, info.num_classes, dtype=torch.int64)
    return EvaluationResult(matrix=matrix, metrics=compute_metrics(matrix), per_image=per_image,
                            intersection=torch.cat(intersections or [empty]).numpy(),
                            union=torch.cat(unions or [empty]).numpy(), calibration=calibration, boundary=boundary)
