"""One flat row per record: the only place a record is flattened for summaries, leaderboards, tables and figures.

A row holds the cell's identity (`cell_id, slug, config_hash, status, error` kind, the axes `dataset, model,
encoder, loss, seed`), its `label`, seed `group` and training length `budget` ("3 epochs", "200 it", "0.5 TFLOPs
(120 it)"), every metric of the catalogue under its key, the bootstrap
interval of mIoU over val images (`miou_ci_low, miou_ci_high`, where the record has one), the mean corrupted mIoU
and relative robustness under eval.corruptions, and the cost details of the report's cost table. Values are raw
(fractions, counts, seconds, bytes); None where a value was not measured or is undefined (NaN), so rows are JSON-ready.
mIoU on each further evaluation dataset (eval.datasets) varies in number with the grid, so it is not part of every row:
`domain_values` gives it under `domain_metric` names, and `rows_frame(..., domains=True)` adds it as columns.
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
from segbench.records.schema import (
    CellConfig,
    Cost,
    DatasetRef,
    Epoch,
    Interval,
    Latency,
    LatencyConditions,
    LatencyStats,
    LossRef,
    Macs,
    Memory,
    Metrics,
    Params,
    Record,
    Timing,
    as_record,
)

SEED_SUFFIX = re.compile(r"__s-?\d+$")
TIME_TO_ACCURACY_FRACTION = 0.9  # time to accuracy: when val mIoU first reaches 90 % of its final value


def group_key(record: Record) -> str:
    """Cells that differ only by seed share this key: the slug without `__s<seed>` plus a digest of the config
    without the seed."""
    digest = hashlib.sha256(json.dumps(record.config.without_seed(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{configuration_slug(record.slug)}#{digest}"


def configuration_slug(slug: str) -> str:
    """The slug without its `__s<seed>` suffix: "unet__resnet18__ce__camvid__s0" -> "unet__resnet18__ce__camvid"."""
    return SEED_SUFFIX.sub("", slug)


def time_to_accuracy(history: list[Epoch], fraction: float = TIME_TO_ACCURACY_FRACTION
                     ) -> tuple[float | None, int | None]:
    """(training seconds, iterations) at the first evaluation whose val mIoU reached `fraction` of the final one.

    The final value is the last evaluation in the history (the final model's mIoU). Seconds are the cumulative
    `epoch_time_s` (training only, evaluation excluded) up to and including that epoch; iterations are the history's
    cumulative `iterations` there. (None, None) when the history has no evaluation (or the last one is NaN).
    """
    evaluated = [row for row in history if row.val_miou is not None]
    if not evaluated or not math.isfinite(evaluated[-1].val_miou):
        return None, None
    target = fraction * evaluated[-1].val_miou
    # with fraction <= 1 the last evaluation always reaches the target
    reached = next((row for row in evaluated if row.val_miou >= target), evaluated[-1])
    seconds = sum(row.epoch_time_s or 0.0 for row in history if row.epoch <= reached.epoch)
    return float(seconds), reached.iterations


def training_length_text(record: Record) -> str | None:
    """What set a cell's training length, for tables: "3 epochs", "200 it", "0.5 TFLOPs (120 it)" (a compute budget
    and the iterations it implied; "0.5 TFLOPs" alone for a cell that failed before counting them)."""
    train, budget = record.config.train, record.budget
    if train.budget:
        implied = budget.iterations if budget is not None else None
        return f"{train.budget['tflops']:g} TFLOPs" + (f" ({implied} it)" if implied is not None else "")
    if train.iterations is not None:
        return f"{train.iterations} it"
    if train.epochs is not None:
        return f"{train.epochs} epoch{'' if train.epochs == 1 else 's'}"
    return None


def shape_text(shape: list[int] | None) -> str:
    """[1, 3, 64, 128] -> "1x3x64x128"; "" when unknown."""
    return "x".join(str(s) for s in shape) if shape else ""


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


def _loss_key(record: Record, dataset: str) -> str:
    """The loss as the slug names it (e.g. "focal-g1" for focal with gamma 1, so that two focal losses stay two
    levels): the slug between "<model>__<encoder>[+<weights>]__" and "__<dataset>__s<seed>"; the loss's id or name
    otherwise."""
    config = record.config
    prefix = f"{config.model}__{config.encoder}{'+' + config.weights if config.weights else ''}__"  # Cell.encoder_key
    suffix = f"__{dataset}__s{config.seed}"
    slug = record.slug
    if slug.startswith(prefix) and slug.endswith(suffix) and len(slug) > len(prefix) + len(suffix):
        return slug[len(prefix):-len(suffix)]
    return config.loss.id or config.loss.name


def _identity(record: Record) -> dict[str, Any]:
    config = record.config
    dataset = config.dataset.id or config.dataset.name
    row = {
        "cell_id": record.cell_id,
        "slug": record.slug,
        "config_hash": record.config_hash,
        "status": record.status,
        "error": record.error_kind,
        "dataset": dataset,
        "model": config.model,
        # the encoder as the slug names it: "resnet18", or "resnet18+imagenet" when it started from pretrained
        # weights, so that comparisons of the encoder axis set pretrained against random initialisation
        "encoder": f"{config.encoder}+{config.weights}" if config.weights else config.encoder,
        "weights": config.weights or "none",  # the grid axis `weights` on its own
        "loss": _loss_key(record, dataset),
        "seed": config.seed,
    }
    # model/encoder/loss/s<seed>: the slug without the dataset, for tables and figures of one dataset.
    row["label"] = f"{row['model']}/{row['encoder']}/{row['loss']}/s{row['seed']}"
    row["group"] = group_key(record)
    row["budget"] = training_length_text(record)  # the basis the cell trained under (epochs, iterations, tflops)
    return row


def _cost(record: Record) -> dict[str, Any]:
    """The catalogue's cost and timing fields, then the details only the report's cost table shows."""
    cost = record.cost or Cost()
    params, macs = cost.params or Params(), cost.macs or Macs()
    latency = cost.latency or Latency()
    single, batched = latency.batch_1 or LatencyStats(), latency.batch_n or LatencyStats()
    memory = cost.memory or Memory()
    timing = record.timing or Timing()
    history = record.history or []
    epochs = [h.epoch_time_s for h in history if h.epoch_time_s is not None]
    seconds_to_90, iterations_to_90 = time_to_accuracy(history)
    return {
        "params": params.total,
        "macs": macs.macs,
        "gmacs": macs.gmacs,
        "latency_ratio": latency.latency_ratio,
        "latency_ms_p50": single.latency_ms_p50,
        "throughput_images_per_s": batched.throughput_images_per_s,
        "train_time_s": timing.train_time_s,
        "train_step_s_median": timing.train_step_s_median,
        "train_memory_bytes": memory.train_step.peak_bytes() if memory.train_step else None,
        "inference_memory_bytes": memory.inference.peak_bytes() if memory.inference else None,
        "time_to_90pct_s": seconds_to_90,
        "iterations_to_90pct": iterations_to_90,
        # details
        "params_encoder": params.encoder,
        "params_decoder": params.decoder,
        "gflops": macs.gflops,
        "macs_input_shape": shape_text(macs.input_shape),
        "unsupported_ops": ", ".join(f"{k} x{v}" for k, v in macs.unsupported_ops.items()),
        "latency_ms_p90": single.latency_ms_p90,
        "latency_ms_std": single.latency_ms_std,
        "latency_n": single.n,
        "batch_n": batched.batch_size,
        "batch_n_latency_ms_p50": batched.latency_ms_p50,
        "protocol_latency_ms_p50": latency.protocol.latency_ms_p50 if latency.protocol else None,
        "train_images_per_s": timing.train_images_per_s,
        "epoch_time_s_mean": float(np.mean(epochs)) if epochs else None,
        "torchinfo_estimate_bytes": memory.estimate.forward_backward_bytes if memory.estimate else None,
        **latency_provenance(record),
    }


def latency_provenance(record: Record) -> dict[str, Any]:
    """Where and how steadily a record's latency was timed: `machine` (the fingerprint id; None for records from
    before fingerprints), `machine_label`, `latency_spread` (largest batch-1 round ratio / smallest - 1; None for
    records timed in one round) and `latency_workload`, the same text for cells whose timed inference is identical
    (architecture, encoder, parameter count, input shape, precision, memory format, threads, machine), whatever their
    loss or seed."""
    cost = record.cost or Cost()
    latency = cost.latency or Latency()
    conditions = latency.conditions or LatencyConditions()
    machine = conditions.machine
    shape = latency.batch_1.input_shape if latency.batch_1 else None
    workload = None
    if shape:
        workload = (f"{record.config.model}/{record.config.encoder}, {cost.params.total if cost.params else None} "
                    f"params, input {shape_text(shape)}, {conditions.precision}, {conditions.memory_format}, "
                    f"{conditions.threads} threads, machine {machine.id if machine else None}")
    return {
        "machine": machine.id if machine else None,
        "machine_label": machine.label if machine else None,
        "latency_spread": latency.stability.spread if latency.stability else None,
        "latency_workload": workload,
    }


def record_row(record: Record) -> dict[str, Any]:
    """The flat row of one record (see the module docstring); missing parts of a failed cell are None."""
    record = as_record(record)
    metrics = record.metrics or Metrics()
    specificity = metrics.per_class.specificity if metrics.per_class else []
    miou_interval = (record.intervals or {}).get("miou") or Interval()
    row = {
        **_identity(record),
        **{key: metrics.value(key) for key in MATRIX_METRICS},
        # evaluation noise of this one model: bootstrap over val images (records written before issue 11 have none)
        "miou_ci_low": miou_interval.low,
        "miou_ci_high": miou_interval.high,
        "ece": record.calibration.ece if record.calibration else None,
        "boundary_miou": record.boundary.boundary_miou if record.boundary else None,
        # under eval.corruptions: means over severities, then corruptions; relative = that / clean mIoU
        "mean_corrupted_miou": record.corruptions.mean_corrupted_miou if record.corruptions else None,
        "relative_robustness": record.corruptions.relative_robustness if record.corruptions else None,
        # The macro mean of per-class specificity is not a recorded metric; the micro-vs-macro table shows it.
        "macro_specificity": mean_defined([math.nan if v is None else v for v in specificity]),
        **_cost(record),
    }
    return {key: _number(value) for key, value in row.items()}


# every row has exactly these keys, in this order
ROW_COLUMNS: tuple[str, ...] = tuple(record_row(Record(
    cell_id="", slug="", config_hash="", status="", config=CellConfig(
        dataset=DatasetRef(name=""), model="", encoder="", loss=LossRef(name=""), seed=0))))


# Summary fields of the deployed forms (measure.runtimes x measure.precisions, segbench.cell.deployment), present in
# a summary row only where measured: latency_ratio_<runtime>_<precision> (batch-1 p50 over eager fp32's, timed in
# the same process) and miou_<runtime>_<precision> ('-' in a runtime's name written '_'), and int8_miou_drop (eager
# fp32 mIoU minus ONNX Runtime INT8's). Latency ratios are timed fields: gated on one machine only.
DEPLOYMENT_FIELD = re.compile(
    r"^(latency_ratio|miou)_(torch|torch_compile|onnxruntime|tensorrt)_(fp32|fp16|bf16|int8)$")
INT8_MIOU_DROP = "int8_miou_drop"


def is_deployment_field(name: str) -> bool:
    return name == INT8_MIOU_DROP or DEPLOYMENT_FIELD.match(name) is not None


def is_timed_deployment_field(name: str) -> bool:
    return DEPLOYMENT_FIELD.match(name) is not None and name.startswith("latency_ratio_")


def deployment_values(record: Record) -> dict[str, float | None]:
    """The summary fields of the record's deployed forms that ran (see DEPLOYMENT_FIELD), in the grid's order."""
    deployment = as_record(record).deployment
    values: dict[str, float | None] = {}
    for form in deployment.forms if deployment else []:
        if form.status != "ok":
            continue
        suffix = f"{form.runtime.replace('-', '_')}_{form.precision}"
        values[f"latency_ratio_{suffix}"] = _number((form.latency or {}).get("batch_1", {}).get("ratio_to_eager"))
        values[f"miou_{suffix}"] = _number(form.miou)
    int8 = deployment.form("onnxruntime", "int8") if deployment else None
    if int8 is not None and int8.status == "ok" and int8.miou_change is not None:
        values[INT8_MIOU_DROP] = _number(-int8.miou_change)
    return values


DOMAIN_METRIC_PREFIX = "miou@"


def domain_metric(key: str, split: str | None) -> str:
    """The name of mIoU on a further evaluation dataset: "miou@<key>/<split>", e.g. "miou@fog/val". The split is part
    of it because a grid may evaluate one dataset key on two splits (eval.datasets keeps key/split distinct)."""
    return f"{DOMAIN_METRIC_PREFIX}{key}/{split}" if split else f"{DOMAIN_METRIC_PREFIX}{key}"


def domain_values(record: Record) -> dict[str, float | None]:
    """mIoU (a fraction) of the record's selected weights on each further evaluation dataset (its `domains`), under
    `domain_metric` names, in eval.datasets order; empty for a record evaluated on none."""
    return {domain_metric(entry.dataset, entry.split): _number(entry.metrics.miou if entry.metrics else None)
            for entry in as_record(record).domains or []}


def rows_frame(records: list[Record], ranked: bool = False, domains: bool = False) -> pd.DataFrame:
    """One row per record (columns `ROW_COLUMNS`), in record order or, `ranked`, best mIoU first (no mIoU last).
    `domains`: then one column per further evaluation dataset any record has (`domain_values`, in order of first
    appearance), None where a record was not evaluated there."""
    rows = [record_row(record) | (domain_values(record) if domains else {}) for record in records]
    extra = dict.fromkeys(key for row in rows for key in row if key not in ROW_COLUMNS)
    frame = pd.DataFrame(rows, columns=[*ROW_COLUMNS, *extra])
    if ranked:
        frame = frame.sort_values("miou", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return frame


def selection_text(record: Record) -> str:
    """Which weights a record reports: its selection rule's description, and the epoch of the selected weights."""
    selection = record.selection
    if selection is None:
        return "best val mIoU"
    text = selection.description or f"rule {selection.rule}"
    return f"{text}, epoch {selection.epoch}" if selection.epoch is not None else text
