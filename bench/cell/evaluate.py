"""Evaluate a model on a loader: one confusion matrix on the evaluation device, plus per-image accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from segbench.metrics.confusion import ConfusionMatrix, compute_metrics


@dataclass
class EvaluationResult:
    matrix: torch.Tensor  # int64 [C, C] on the CPU; rows = ground truth, columns = prediction
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]  # index, valid pixels, correct pixels (in loader order)


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module, loader: DataLoader, info: Any, device: torch.device, autocast
) -> EvaluationResult:
    """Argmax predictions over the whole split; padded and ignore pixels are never counted."""
    model.eval()
    confusion = ConfusionMatrix(info.num_classes, ignore_index=info.ignore_index, device=device)
    per_image: list[dict[str, Any]] = []
    index = 0
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast:
            logits = model(images)
        pred = logits.argmax(dim=1)
        confusion.update(pred, labels)
        valid = labels != info.ignore_index
        correct = ((pred == labels) & valid).flatten(1).sum(dim=1).tolist()
        counts = valid.flatten(1).sum(dim=1).tolist()
        for valid_pixels, correct_pixels in zip(counts, correct, strict=True):
            per_image.append({"index": index, "valid_pixels": valid_pixels, "correct_pixels": correct_pixels})
            index += 1
    matrix = confusion.matrix.cpu()
    return EvaluationResult(matrix=matrix, metrics=compute_metrics(matrix), per_image=per_image)
