"""A trained cell under weather and sensor corruptions (`eval.corruptions`): the reported split again, each image
corrupted at its native size before the evaluation transform (segbench.datasets.corruptions), once per corruption
and severity, under the cell's inference protocol, one confusion matrix each.

Summaries: the mean over severities per corruption, the mean corrupted mIoU over all of them, and the relative
robustness (mean corrupted mIoU / clean mIoU on the same images; Kamann & Rother, Cityscapes-C). The record keeps them
as `corruptions`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from segbench.cell.data import eval_transform
from segbench.cell.evaluate import evaluate_model
from segbench.cell.inference import Protocol
from segbench.grid.cells import Cell


def _split(cell: Cell, transform: Any, limit: int | None, cache_dir: Path | None):
    from segbench.datasets import build_dataset, parse_dataset_params

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    dataset = build_dataset(cell.dataset.name, params, cell.eval.split, transform, cache_dir)
    return Subset(dataset, range(limit)) if limit is not None and len(dataset) > limit else dataset


def evaluate_corruptions(model: torch.nn.Module, cell: Cell, info: Any, protocol: Protocol, device: torch.device,
                         autocast, cache_dir: Path | None, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's `corruptions` of the selected weights: per (corruption, severity) mIoU and pixel accuracy, and
    the summaries, on the first `max_images` images of the reported split (eval.corruptions, else eval.max_images).

    earlier: the `corruptions` of an earlier evaluation of the same weights under the same protocol; when it was on
    the same images, its clean mIoU and its results for the (corruption, severity) pairs asked again are kept (the
    corrupted images are seeded by the cell's seed, so they would come out the same), counted in `kept`."""
    from segbench.datasets.corruptions import CorruptedTransform

    settings = cell.eval.corruptions
    limit = settings.max_images or cell.eval.max_images
    started = time.perf_counter()
    plain = eval_transform(cell, protocol.pad_multiple)

    def scores(transform: Any) -> dict[str, Any]:
        dataset = _split(cell, transform, limit, cache_dir)
        loader = DataLoader(dataset, batch_size=cell.eval.batch_size)
        metrics = evaluate_model(model, loader, info, device, autocast, protocol=protocol).metrics
        return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"], "images": len(dataset)}

    images = len(_split(cell, plain, limit, cache_dir))
    known = {}
    if earlier is not None and earlier.get("images") == images:
        known = {(result["name"], result["severity"]): result for result in earlier.get("results", [])}
    clean = {"miou": earlier["clean_miou"], "images": images} if known else scores(plain)
    results, kept = [], 0
    for name in settings.names:
        for severity in settings.severities:
            if (name, severity) in known:
                results.append(known[name, severity])
                kept += 1
                continue
            result = scores(CorruptedTransform(plain, name, severity, cell.seed))
            results.append({"name": name, "severity": severity, "miou": result["miou"],
                            "pixel_accuracy": result["pixel_accuracy"]})
    per_corruption = {name: _mean([r["miou"] for r in results if r["name"] == name]) for name in settings.names}
    mean = _mean(list(per_corruption.values()))
    worst = min(per_corruption, key=lambda name: per_corruption[name] if per_corruption[name] is not None else 2.0)
    return {
        "names": list(settings.names), "severities": list(settings.severities), "images": clean["images"],
        "clean_miou": clean["miou"], "results": results, "per_corruption": per_corruption,
        "mean_corrupted_miou": mean, "worst": worst,
        "relative_robustness": mean / clean["miou"] if mean is not None and clean["miou"] else None,
        "seconds": time.perf_counter() - started, "kept": kept,
        "method": "each image of the reported split corrupted at its native size before the evaluation transform "
                  "(Hendrycks & Dietterich 2019 definitions, seeded per cell seed and image), evaluated under the "
                  f"cell's protocol ({protocol.describe()}); means over severities, then over corruptions; relative "
                  "robustness = mean corrupted mIoU / clean mIoU of the same images",
    }


def _mean(values: list[float | None]) -> float | None:
    defined = [value for value in values if value is not None and value == value]
    return sum(defined) / len(defined) if defined else None
