"""One flat row per record: the only place a record is flattened for summaries, leaderboards, tables and figures.

A row holds the cell's identity (`cell_id, slug, config_hash, status, error` kind, the axes `dataset, model,
encoder, loss, seed`), its `label` and seed `group`, every metric of the catalogue under its key, the bootstrap
interval of mIoU over val images (`miou_ci_low, miou_ci_high`, where the record has one), and the cost details of the
report's cost table. Values are raw (fractions, counts, seconds, bytes); None where a value was not measured or is
undefined (NaN), so rows are JSON-ready.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from segbench.metrics.catalogue import MATRIX_METRICS
from segbench.metrics.compute import mean_defined

SEED_SUFFIX = re.compile(r"__s-?\d+$")
TIME_TO_ACCURACY_FRACTION = 0.9  # time to accuracy: when val mIoU first reaches 90 % of its final value


def group_key(record: dict[str, Any]) -> str:
    """Cells that differ only by seed share this key: the slug without `__s<seed>` plus a digest of the config
    without the seed."""
    config = {key: value for key, value in (record.get("config") or {}).items() if key != "seed"}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return f"{configuration_slug(record.get('slug') or '')}#{digest}"


def configuration_slug(slug: str) -> str:
    """The slug without its `__s<seed>` suffix: "unet__resnet18__ce__camvid__s0" -> "unet__resnet18__ce__camvid"."""
    return SEED_SUFFIX.sub("", slug)


def time_to_accuracy(history: list[dict[str, Any]], fraction: float = TIME_TO_ACCURACY_FRACTION
                     ) -> tuple[float | None, int | None]:
    """(training seconds, iterations) at the first evaluation whose val mIoU reached `fraction` of the final one.

    The final value is the last evaluation in the history (the final model's mIoU). Seconds are the cumulative
    `epoch_time_s` (training only, evaluation excluded) up to and including that epoch; iterations are the history's
    cumulative `iterations` there. (None, None) when the history has no evaluation (or the last one is NaN).
    """
    evaluated = [row for row in history if row.get("val_miou") is not None]
    if not evaluated or not math.isfinite(evaluated[-1]["val_miou"]):
        return None, None
    target = fraction * evaluated[-1]["val_miou"]
    # with fraction <= 1 the last evaluation always reaches the target
    reached = next((row for row in evaluated if row["val_miou"] >= target), evaluated[-1])
    seconds = sum(row.get("epoch_time_s") or 0.0 for row in history if row["epoch"] <= reached["epoch"])
    return float(seconds), reached.get("iterations")


def shape_text(shape: list[int] | None) -> str:
    """[1, 3, 64, 128] -> "1x3x64x128"; "" when unknown."""
    return "x".join(str(s) for s in shape) if shape else ""


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _memory_bytes(phase: dict[str, Any] | None) -> int | None:
    """Peak memory of one measured phase: CUDA peak allocated, or the CPU resident-set increase."""
    if not phase:
        return None
    return phase.get("peak_allocated_bytes", phase.get("increase_bytes"))


def _loss_key(record: dict[str, Any], dataset: str | None) -> str | None:
    """The loss as the slug names it (e.g. "focal-g1" for focal with gamma 1, so that two focal losses stay two
    levels): the slug between "<model>__<encoder>__" and "__<dataset>__s<seed>"; the loss's id or name otherwise."""
    config = record.get("config") or {}
    loss = config.get("loss") or {}
    slug = record.get("slug") or ""
    prefix = f"{config.get('model')}__{config.get('encoder')}__"
    suffix = f"__{dataset}__s{config.get('seed')}"
    if slug.startswith(prefix) and slug.endswith(suffix) and len(slug) > len(prefix) + len(suffix):
        return slug[len(prefix):-len(suffix)]
    return loss.get("id") or loss.get("name")


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    dataset_spec = config.get("dataset") or {}
    dataset = dataset_spec.get("id") or dataset_spec.get("name")
    row = {
        "cell_id": record.get("cell_id"),
        "slug": record.get("slug"),
        "config_hash": record.get("config_hash"),
        "status": record.get("status"),
        "error": (record.get("error") or {}).get("kind"),
        "dataset": dataset,
        "model": config.get("model"),
        "encoder": config.get("encoder"),
        "loss": _loss_key(record, dataset),
        "seed": config.get("seed"),
    }
    # model/encoder/loss/s<seed>: the slug without the dataset, for tables and figures of one dataset.
    row["label"] = f"{row['model']}/{row['encoder']}/{row['loss']}/s{row['seed']}"
    row["group"] = group_key(record)
    return row


def _cost(record: dict[str, Any]) -> dict[str, Any]:
    """The catalogue's cost and timing fields, then the details only the report's cost table shows."""
    cost = record.get("cost") or {}
    params, macs = cost.get("params") or {}, cost.get("macs") or {}
    latency = cost.get("latency") or {}
    single, batched = latency.get("batch_1") or {}, latency.get("batch_n") or {}
    memory = cost.get("memory") or {}
    timing = record.get("timing") or {}
    history = record.get("history") or []
    epochs = [h.get("epoch_time_s") for h in history if h.get("epoch_time_s") is not None]
    seconds_to_90, iterations_to_90 = time_to_accuracy(history)
    return {
        "params": params.get("total"),
        "macs": macs.get("macs"),
        "gmacs": macs.get("gmacs"),
        "latency_ratio": latency.get("latency_ratio"),
        "latency_ms_p50": single.get("latency_ms_p50"),
        "throughput_images_per_s": batched.get("throughput_images_per_s"),
        "train_time_s": timing.get("train_time_s"),
        "train_step_s_median": timing.get("train_step_s_median"),
        "train_memory_bytes": _memory_bytes(memory.get("train_step")),
        "inference_memory_bytes": _memory_bytes(memory.get("inference")),
        "time_to_90pct_s": seconds_to_90,
        "iterations_to_90pct": iterations_to_90,
        # details
        "params_encoder": params.get("encoder"),
        "params_decoder": params.get("decoder"),
        "gflops": macs.get("gflops"),
        "macs_input_shape": shape_text(macs.get("input_shape")),
        "unsupported_ops": ", ".join(f"{k} x{v}" for k, v in (macs.get("unsupported_ops") or {}).items()),
        "latency_ms_p90": single.get("latency_ms_p90"),
        "latency_ms_std": single.get("latency_ms_std"),
        "latency_n": single.get("n"),
        "batch_n": batched.get("batch_size"),
        "batch_n_latency_ms_p50": batched.get("latency_ms_p50"),
        "train_images_per_s": timing.get("train_images_per_s"),
        "epoch_time_s_mean": float(np.mean(epochs)) if epochs else None,
        "torchinfo_estimate_bytes": (memory.get("estimate") or {}).get("forward_backward_bytes"),
        **latency_provenance(record),
    }


def latency_provenance(record: dict[str, Any]) -> dict[str, Any]:
    """Where and how steadily a record's latency was timed: `machine` (the fingerprint id; None for records from
    before fingerprints), `machine_label`, `latency_spread` (largest batch-1 round ratio / smallest - 1; None for
    records timed in one round) and `latency_workload`, the same text for cells whose timed inference is identical
    (architecture, encoder, parameter count, input shape, precision, memory format, threads, machine), whatever their
    loss or seed."""
    config = record.get("config") or {}
    cost = record.get("cost") or {}
    latency = cost.get("latency") or {}
    conditions = latency.get("conditions") or {}
    machine = conditions.get("machine") or {}
    shape = (latency.get("batch_1") or {}).get("input_shape")
    workload = None
    if shape:
        workload = (f"{config.get('model')}/{config.get('encoder')}, {(cost.get('params') or {}).get('total')} params, "
                    f"input {shape_text(shape)}, {conditions.get('precision')}, {conditions.get('memory_format')}, "
                    f"{conditions.get('threads')} threads, machine {machine.get('id')}")
    return {
        "machine": machine.get("id"),
        "machine_label": machine.get("label"),
        "latency_spread": (latency.get("stability") or {}).get("spread"),
        "latency_workload": workload,
    }


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """The flat row of one record (see the module docstring); missing parts of a failed cell are None."""
    metrics = record.get("metrics") or {}
    specificity = (metrics.get("per_class") or {}).get("specificity") or []
    miou_interval = (record.get("intervals") or {}).get("miou") or {}
    row = {
        **_identity(record),
        **{key: metrics.get(key) for key in MATRIX_METRICS},
        # evaluation noise of this one model: bootstrap over val images (records written before issue 11 have none)
        "miou_ci_low": miou_interval.get("low"),
        "miou_ci_high": miou_interval.get("high"),
        # The macro mean of per-class specificity is not a recorded metric; the micro-vs-macro table shows it.
        "macro_specificity": mean_defined([math.nan if v is None else v for v in specificity]),
        **_cost(record),
    }
    return {key: _number(value) for key, value in row.items()}


ROW_COLUMNS: tuple[str, ...] = tuple(record_row({}))  # every row has exactly these keys, in this order


def rows_frame(records: list[dict[str, Any]], ranked: bool = False) -> pd.DataFrame:
    """One row per record (columns `ROW_COLUMNS`), in record order or, `ranked`, best mIoU first (no mIoU last)."""
    frame = pd.DataFrame([record_row(record) for record in records], columns=list(ROW_COLUMNS))
    if ranked:
        frame = frame.sort_values("miou", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return frame


def selection_text(record: dict[str, Any]) -> str:
    """Which weights a record reports: its selection rule's description (records before issue 11 hold a sentence)."""
    selection = record.get("selection")
    if isinstance(selection, dict):
        text = selection.get("description") or f"rule {selection.get('rule')}"
        return f"{text}, epoch {selection['epoch']}" if selection.get("epoch") is not None else text
    return str(selection or "best val mIoU")
