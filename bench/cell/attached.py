"""Evaluations attached to a cell's trained weights, and evaluating a finished cell again without training it.

A cell is identified by what trains it; its evaluation settings (segbench.grid.cells.EVALUATION_KEYS: the inference
protocol, further datasets, corruptions) are attached to the trained weights. `reported_parts` and `further_parts`
turn the evaluations of the selected weights into record parts, both after training (pipeline.record_parts) and in
`evaluate_trained`, which the worker runs instead of training when a finished cell's record was evaluated with other
settings than the grid's now: it loads the cell's checkpoint and computes only what is missing.

- The inference protocol changed (eval.mode, crop, stride, tta): the reported split is evaluated again (metrics,
  interval, calibration, boundary IoU, per-image counts), the protocol's latency measured again, and every further
  dataset and corruption evaluated again under the new protocol.
- Same protocol: further datasets and (corruption, severity) pairs that the record already holds, evaluated alike
  (same dataset, split and parameters; the same images), are kept; only the new ones are evaluated.

What the record says about training (history, selection, timing, cost but the protocol's latency, examples) is
kept; the record's `reevaluations` says when, where and what was evaluated again.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.atomic import atomic_write_bytes
from segbench.cell.deployment import forward_shape, measure_deployment, wants_deployment
from segbench.cell.domains import evaluate_domains
from segbench.cell.evaluate import EvaluationResult
from segbench.cell.examples import sample_id
from segbench.cell.inference import Protocol
from segbench.cell.robustness import evaluate_corruptions
from segbench.grid.cells import Cell
from segbench.metrics.bootstrap import bootstrap_miou_interval
from segbench.records.paths import PER_IMAGE_COUNTS_FILE

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def reported_parts(final: EvaluationResult, val_set: Any) -> tuple[dict[str, Any], bytes]:
    """The record parts of the reported evaluation (metrics, mIoU interval, calibration, boundary IoU, confusion
    matrix, per-image rows and the reference to the per-image counts), and the counts file's bytes, which the caller
    writes (write_per_image_counts) once nothing can fail before the record."""
    per_image = [{**row, "sample_id": sample_id(val_set, row["index"])} for row in final.per_image]
    counts, reference = per_image_counts(final, [row["sample_id"] for row in per_image])
    parts = {
        "metrics": final.metrics,
        "intervals": {"miou": miou_interval(final)},
        "calibration": final.calibration.compute() if final.calibration is not None else None,
        "boundary": final.boundary.compute() if final.boundary is not None else None,
        "confusion_matrix": final.matrix.tolist(),
        "per_image": per_image,
        "per_image_counts": reference,
    }
    return {key: value for key, value in parts.items() if value is not None}, counts


def further_parts(model: torch.nn.Module, cell: Cell, info: Any, protocol: Protocol, device: torch.device, autocast,
                  cache_dir: Path | None, earlier: Any = None) -> dict[str, Any]:
    """`domains` (eval.datasets) and `corruptions` (eval.corruptions) of the selected weights, when the cell asks for
    them. earlier: a record of the same weights evaluated under the same protocol, whose entries evaluated alike are
    kept instead of computed again."""
    parts: dict[str, Any] = {}
    if cell.eval.datasets:
        known = [entry.to_json() for entry in (earlier.domains or [])] if earlier is not None else []
        parts["domains"] = evaluate_domains(model, cell, info, protocol, device, autocast, cache_dir, known)
    if cell.eval.corruptions is not None:
        known = earlier.corruptions.to_json() if earlier is not None and earlier.corruptions else None
        parts["corruptions"] = evaluate_corruptions(model, cell, info, protocol, device, autocast, cache_dir, known)
    return parts


def per_image_counts(result: EvaluationResult, sample_ids: list[str]) -> tuple[bytes, dict[str, Any]]:
    """The per-image, per-class intersection and union counts (int64 [N, C], compressed .npz) as file bytes, and
    the record's reference to the file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, intersection=result.intersection, union=result.union,
                        sample_id=np.asarray(sample_ids))
    images, classes = result.intersection.shape
    return buffer.getvalue(), {"file": PER_IMAGE_COUNTS_FILE, "images": images, "classes": classes,
                               "arrays": {"intersection": "int64 [images, classes]",
                                          "union": "int64 [images, classes]"}}


def write_per_image_counts(cell_dir: Path, counts: bytes) -> None:
    """Write the per-image counts beside the record, atomically."""
    atomic_write_bytes(cell_dir / PER_IMAGE_COUNTS_FILE, counts)


def miou_interval(result: EvaluationResult) -> dict[str, Any]:
    """95% percentile bootstrap interval of mIoU over the evaluated images (1000 resamples, seed 0)."""
    low, high = bootstrap_miou_interval(result.intersection, result.union, n_resamples=BOOTSTRAP_RESAMPLES,
                                        seed=BOOTSTRAP_SEED, confidence=0.95)
    return {"low": low, "high": high, "confidence": 0.95, "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED,
            "method": "percentile bootstrap over val images: images resampled with replacement, mIoU recomputed "
                      "from the pooled per-class intersections and unions"}


def evaluate_trained(cell: Cell, cell_dir: Path, device: torch.device, cache_dir: Path | None) -> dict[str, Any]:
    """Evaluate the saved weights of the finished cell in `cell_dir` with `cell`'s evaluation settings, training
    nothing: the record parts that change, and `reevaluations` (the record's earlier entries and this one).

    The record's training identity must be the cell's (the runner checks it); CheckpointError when its checkpoint is
    missing or unusable."""
    from torch.utils.data import DataLoader

    from segbench.cell.data import dataset_info, evaluation_set, loader_settings
    from segbench.cell.evaluate import evaluate_model
    from segbench.cell.inference import ProtocolModel
    from segbench.cell.trained import load_trained_cell
    from segbench.devices import resolve_precision
    from segbench.env import environment
    from segbench.measure.latency import protocol_latency
    from segbench.records.store import now_iso

    started, at = time.perf_counter(), now_iso()
    trained = load_trained_cell(cell_dir, device)
    record, model = trained.record, trained.model
    if cell.train.channels_last:  # as it was evaluated after training
        model = model.to(memory_format=torch.channels_last)
    pad_multiple = trained.transform.pad_multiple
    val_set = evaluation_set(cell, pad_multiple, cache_dir)
    info = dataset_info(val_set)
    protocol, before = Protocol.of(cell.eval, pad_multiple), trained.protocol
    precision = resolve_precision(cell.train.precision, device)
    autocast = trained.autocast()
    parts: dict[str, Any] = {}
    evaluated = []
    counts = None
    if protocol != before:
        loader = DataLoader(val_set, batch_size=cell.eval.batch_size, shuffle=False, **loader_settings(cell, device))
        final = evaluate_model(model, loader, info, device, autocast, final=True, protocol=protocol)
        reported, counts = reported_parts(final, val_set)
        parts.update(reported)
        evaluated.append(f"the reported split ({cell.eval.split}) under the new protocol")
        cost = record.cost.to_json() if record.cost is not None else None
        latency = (cost or {}).get("latency")
        if latency is not None and "error" not in latency and cost.get("input_shape"):
            latency.pop("protocol", None)
            if protocol.mode == "slide" or protocol.tta:
                latency["protocol"] = protocol_latency(ProtocolModel(model, protocol), tuple(cost["input_shape"]),
                                                       device, cell.measure, precision, protocol.describe())
                evaluated.append("the protocol's latency")
            parts["cost"] = cost
    further = further_parts(model, cell, info, protocol, device, autocast, cache_dir,
                            earlier=record if protocol == before else None)
    parts.update(further)
    measured_again = protocol != before or trained.cell.evaluation.get("measure") != cell.evaluation.get("measure")
    if wants_deployment(cell) and measured_again:
        earlier = record.deployment.to_json() if record.deployment is not None and protocol == before else None
        parts["deployment"] = measure_deployment(model, cell, cell_dir, val_set, info, protocol, device,
                                                 forward_shape(protocol, tuple(val_set[0][0].shape[1:])),
                                                 cache_dir, earlier)
        measured = [f"{form['runtime']} {form['precision']}" for form in parts["deployment"]["forms"]
                    if form not in (earlier or {}).get("forms", [])]
        evaluated.append(f"deployment: {', '.join(measured) or 'nothing new'}")
    asked = {"domains": bool(cell.eval.datasets), "corruptions": cell.eval.corruptions is not None,
             "deployment": wants_deployment(cell)}
    parts.update({key: None for key, wanted in asked.items() if not wanted})  # asked no more: the record drops them
    kept_domains = [entry.to_json() for entry in (record.domains or [])]
    evaluated += [f"dataset {entry['dataset']} ({entry['split']})" for entry in further.get("domains") or []
                  if entry not in kept_domains]  # a kept entry is the earlier one, its seconds included
    if "corruptions" in further:
        part = further["corruptions"]
        evaluated.append(f"{len(part['results']) - part['kept']} of {len(part['results'])} corruption x severity "
                         f"results{'' if part['kept'] else ' and the clean images'}")
    if counts is not None:
        write_per_image_counts(cell_dir, counts)
    entry = {"at": at, "seconds": time.perf_counter() - started, "device": str(device),
             "host": environment(device).get("hostname"), "protocol": protocol.describe(),
             "evaluated": evaluated, "kept": "training history, selection, timing, examples and the cost other than "
                                             "the protocol's latency, from the training run"}
    earlier = [item.to_json() for item in (record.reevaluations or [])]
    return {**parts, "reevaluations": [*earlier, entry]}
