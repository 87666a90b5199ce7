"""The report's tables: pandas frames of raw numbers (written as CSV) and their Markdown rendering.

Every frame is derived from records alone, through their rows (`segbench.records.rows.record_row`); headers, formats
and directions of metrics come from the catalogue (`segbench.metrics.catalogue`). Raw units in frames and CSVs
(bytes, seconds, counts); formatting and the "best value" marks happen only in `markdown_table`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segbench.analysis.summary import latency_conditions
from segbench.metrics.catalogue import METRICS, MIB, MILLIONS, PERCENT, fixed
from segbench.records.rows import record_row, rows_frame
from segbench.records.schema import Environment, LatencyConditions, Record


def file_slug(text: str) -> str:
    """A dataset name as a safe part of a file name: "cityscapes/fine" -> "cityscapes-fine"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "dataset"


@dataclass(frozen=True)
class Column:
    """How a raw column is shown: header, formatter, and which direction is best (+1 max, -1 min, 0 unmarked)."""

    header: str
    fmt: Callable[[Any], str]
    best: int = 0


def metric_column(key: str, header: str | None = None, marked: bool = True) -> Column:
    """The catalogue's display of a metric; `marked`: bold the best value in its direction."""
    metric = METRICS[key]
    return Column(header or metric.label, metric.fmt, metric.better if marked else 0)


CELL = Column("cell", str)


def _cells(records: list[Record], columns: Iterable[str], ranked: bool,
           sources: dict[str, str] | None = None) -> pd.DataFrame:
    """The rows of `records` reduced to `columns` (the row's label shown as "cell"); `sources` maps a column to
    the row key it shows when the two names differ."""
    frame = rows_frame(records, ranked=ranked)
    names = {"cell": "label", **(sources or {})}
    return pd.DataFrame({name: frame[names.get(name, name)] for name in columns})


def interval_text(low: Any, high: Any) -> str:
    """A fraction interval in percent, "[49.86, 54.34]"; "-" when the record has none."""
    if _is_missing(low) or _is_missing(high):
        return "-"
    return f"[{low * 100:.2f}, {high * 100:.2f}]"


# The leaderboard CSV: these columns in raw units; the Markdown table shows the mIoU interval as one text column.
LEADERBOARD_CSV = ("cell", "miou", "miou_ci_low", "miou_ci_high", "pixel_accuracy", "mdice", "micro_iou",
                   "boundary_miou", "ece", "params", "gmacs", "latency_ms_p50", "throughput_images_per_s",
                   "train_time_s", "time_to_90pct_s", "iterations_to_90pct", "train_memory_bytes",
                   "inference_memory_bytes", "budget", "machine")
# What set each cell's training length ("3 epochs", "200 it", "0.5 TFLOPs (120 it)"): cells compared on another
# basis did not get the same training.
BUDGET = Column("budget", str)
LEADERBOARD: dict[str, Column] = {
    "cell": CELL, "miou": metric_column("miou"), "miou_ci": Column("mIoU 95 % CI (val images)", str),
    **{key: metric_column(key) for key in LEADERBOARD_CSV[4:-2] if key != "iterations_to_90pct"}, "budget": BUDGET,
    "machine": Column("latency machine", str)}


DOMAINS: dict[str, Column] = {
    "cell": CELL, "dataset": Column("evaluated on", str), "images": Column("images", fixed(0)),
    "classes_mapped": Column("classes mapped", fixed(0)), "own_miou": Column("mIoU on its own split %", PERCENT),
    "miou": Column("mIoU there %", PERCENT, +1), "gap": Column("gap (points)", fixed(2, 0.01)),
    "pixel_accuracy": Column("pixel acc there %", PERCENT, +1)}


def domains_frame(records: list[Record]) -> pd.DataFrame:
    """One row per cell and further dataset (eval.datasets): its mIoU there against its own split's, best own mIoU
    first; gap = there - own (negative: worse)."""
    rows = []
    for record in sorted(records, key=lambda r: -(r.metrics.miou or -1) if r.metrics else 1):
        own = record.metrics.miou if record.metrics else None
        for entry in record.domains or []:
            there = entry.metrics.miou if entry.metrics else None
            rows.append({"cell": record_row(record)["label"], "dataset": f"{entry.dataset} ({entry.split})",
                         "images": entry.images, "classes_mapped": entry.classes_mapped, "own_miou": own,
                         "miou": there, "gap": None if own is None or there is None else there - own,
                         "pixel_accuracy": entry.metrics.pixel_accuracy if entry.metrics else None})
    return pd.DataFrame(rows, columns=list(DOMAINS))


ROBUSTNESS: dict[str, Column] = {
    "cell": CELL, "images": Column("images", fixed(0)), "clean_miou": Column("clean mIoU %", PERCENT, +1),
    "mean_corrupted_miou": Column("mean corrupted mIoU %", PERCENT, +1),
    "relative_robustness": Column("relative robustness %", PERCENT, +1), "worst": Column("worst corruption", str),
    "worst_miou": Column("its mIoU %", PERCENT)}


def robustness_frame(records: list[Record]) -> pd.DataFrame:
    """One row per cell evaluated under corruptions, most robust (mean corrupted mIoU) first."""
    rows = []
    for record in records:
        part = record.corruptions
        if part is None:
            continue
        rows.append({"cell": record_row(record)["label"], "images": part.images, "clean_miou": part.clean_miou,
                     "mean_corrupted_miou": part.mean_corrupted_miou,
                     "relative_robustness": part.relative_robustness, "worst": part.worst,
                     "worst_miou": part.per_corruption.get(part.worst) if part.worst else None})
    frame = pd.DataFrame(rows, columns=list(ROBUSTNESS))
    return frame.sort_values("mean_corrupted_miou", ascending=False, na_position="last", ignore_index=True)


def corruption_frame(records: list[Record]) -> pd.DataFrame:
    """mIoU per cell (rows) and corruption (columns), averaged over the severities."""
    return pd.DataFrame({record_row(record)["label"]: record.corruptions.per_corruption
                         for record in records if record.corruptions}).T.rename_axis("cell")


CALIBRATION: dict[str, Column] = {"cell": CELL, "miou": metric_column("miou"),
                                  "boundary_miou": metric_column("boundary_miou"), "ece": metric_column("ece")}


DEPLOYMENT: dict[str, Column] = {
    "cell": CELL, "runtime": Column("runtime", str), "precision": Column("precision", str),
    "latency_ms_p50": Column("latency p50 b1 (ms)", fixed(2), -1),
    "throughput_images_per_s": Column("throughput bN (img/s)", fixed(1), +1),
    "ratio_to_eager": Column("b1 latency / eager", fixed(2), -1),
    "miou": Column("mIoU %", PERCENT, +1), "miou_change": Column("change from eager fp32 (points)", fixed(2, 0.01)),
    "agreement": Column("pixels as eager fp32 %", fixed(3, 0.01), +1), "status": Column("status", str)}


def deployment_frame(records: list[Record]) -> pd.DataFrame:
    """One row per cell and deployed form (measure.runtimes x precisions) that was measured or failed:
    batch-1 latency and its ratio to eager fp32 timed in the same process, batch-N throughput, the form's own mIoU,
    its change from eager fp32 and its agreement with eager fp32's predictions; a failed form shows why in `status`
    (skipped ones are left out). Cells in record order, forms in the grid's order."""
    rows = []
    for record in records:
        forms = record.deployment.forms if record.deployment else []
        timed = [form.latency for form in forms if form.latency]  # each holds eager fp32's, timed beside it
        for form in forms:
            if form.status == "skipped":  # said once under the table (report.py)
                continue
            latency = form.latency or {}
            one, many = latency.get("batch_1") or {}, latency.get("batch_n") or {}
            status = form.status if form.reason is None else f"{form.status}: {form.reason}"
            if form.status == "reference" and timed:  # eager fp32 as timed beside the first measured form
                status = "reference (eager PyTorch fp32)"
                one = {"latency_ms_p50": timed[0]["batch_1"]["eager_latency_ms_p50"], "ratio_to_eager": 1.0}
            rows.append({"cell": record_row(record)["label"], "runtime": form.runtime, "precision": form.precision,
                         "latency_ms_p50": one.get("latency_ms_p50"),
                         "throughput_images_per_s": many.get("throughput_images_per_s"),
                         "ratio_to_eager": one.get("ratio_to_eager"), "miou": form.miou,
                         "miou_change": form.miou_change, "agreement": form.agreement, "status": status})
    return pd.DataFrame(rows, columns=list(DEPLOYMENT))


def calibration_frame(records: list[Record]) -> pd.DataFrame:
    """mIoU, boundary mIoU and ECE per cell, best mIoU first."""
    return _cells(records, tuple(CALIBRATION), ranked=True)


def leaderboard_frame(records: list[Record]) -> pd.DataFrame:
    """The report's leaderboard: one row per record, best mIoU first, accuracy and cost in raw units."""
    return _cells(records, LEADERBOARD_CSV, ranked=True)


def leaderboard_shown(frame: pd.DataFrame) -> pd.DataFrame:
    """`leaderboard_frame` with the mIoU interval joined into the text column `miou_ci` for the Markdown table, and
    the latency machine (the latency gate's fingerprint) shown only where the rows' latencies come from more than one
    machine (merged folders), where latencies do not compare across rows."""
    shown = frame.copy()
    shown["miou_ci"] = [interval_text(low, high) for low, high in zip(frame["miou_ci_low"], frame["miou_ci_high"],
                                                                       strict=True)]
    timed = frame.loc[frame["latency_ms_p50"].notna(), "machine"]
    if timed.nunique(dropna=False) <= 1:
        shown = shown.drop(columns="machine")
    return shown


# Seed studies' vocabulary: the micro scores are pooled over classes; they are shown unmarked because for
# single-label predictions they restate pixel accuracy (docs/metrics.md).
SEED_STYLE: dict[str, Column] = {
    "cell": CELL,
    "micro_accuracy": metric_column("pixel_accuracy", "micro acc %", marked=False),
    "micro_sensitivity": metric_column("micro_recall", "micro sens %", marked=False),
    "micro_specificity": metric_column("micro_specificity", marked=False),
    "micro_dice": metric_column("micro_dice", marked=False),
    "micro_iou": metric_column("micro_iou", marked=False),
    "macro_sensitivity": metric_column("mrecall", "macro sens %"),
    "macro_specificity": Column("macro spec %", PERCENT, +1),
    "mdice": metric_column("mdice"),
    "miou": metric_column("miou"),
}
SEED_STYLE_SOURCES = {"micro_accuracy": "pixel_accuracy", "micro_sensitivity": "micro_recall",
                      "macro_sensitivity": "mrecall"}


def seed_style_frame(records: list[Record]) -> pd.DataFrame:
    """Micro scores (pooled over classes, as seed studies report them) next to the macro ones, best mIoU first."""
    return _cells(records, SEED_STYLE, ranked=True, sources=SEED_STYLE_SOURCES)


def per_class_iou_frame(records: list[Record], classes: list[str]) -> pd.DataFrame:
    """IoU per class (rows) and cell (columns); NaN where a class is absent from ground truth and prediction."""
    columns = {}
    for record in records:
        per_class = record.metrics.per_class if record.metrics else None
        values = per_class.iou if per_class else []
        columns[record_row(record)["label"]] = [math.nan if v is None else v for v in values]
    return pd.DataFrame(columns, index=pd.Index(classes, name="class"))


COST: dict[str, Column] = {
    "cell": CELL,
    "params": metric_column("params", marked=False),
    "params_encoder": Column("encoder (M)", MILLIONS),
    "params_decoder": Column("decoder (M)", MILLIONS),
    "gflops": Column("GFLOPs (2xMACs)", fixed(2)),
    "latency_ms_p50": metric_column("latency_ms_p50", "b1 p50 (ms)", marked=False),
    "latency_ms_p90": Column("b1 p90 (ms)", fixed(1)),
    "latency_ratio": metric_column("latency_ratio", marked=False),
    "latency_spread": Column("round spread %", fixed(1, 0.01)),
    "batch_n_latency_ms_p50": Column("bN p50 (ms)", fixed(1)),
    "protocol_latency_ms_p50": Column("full image, protocol p50 (ms)", fixed(1)),
    "train_step_s_median": metric_column("train_step_s_median", marked=False),
    "train_images_per_s": Column("train img/s", fixed(1)),
    "epoch_time_s_mean": Column("s/epoch", fixed(1)),
    "time_to_90pct_s": metric_column("time_to_90pct_s", marked=False),
    "iterations_to_90pct": metric_column("iterations_to_90pct", marked=False),
    "torchinfo_estimate_bytes": Column("torchinfo est. (MiB)", MIB),
}
# The cost CSV holds more than the Markdown table shows: every measured detail, in raw units.
COST_CSV = ("cell", "params", "params_encoder", "params_decoder", "macs", "gflops", "macs_input_shape",
            "unsupported_ops", "latency_ms_p50", "latency_ms_p90", "latency_ms_std", "latency_n", "latency_ratio",
            "latency_spread", "machine", "batch_n", "batch_n_latency_ms_p50", "protocol_latency_ms_p50",
            "throughput_images_per_s",
            "train_step_s_median", "train_images_per_s", "train_time_s", "epoch_time_s_mean", "time_to_90pct_s",
            "iterations_to_90pct", "train_memory_bytes", "inference_memory_bytes", "torchinfo_estimate_bytes")


def cost_frame(records: list[Record]) -> pd.DataFrame:
    """The cost of each cell in detail (raw units): parameters, MACs, latency, training time, memory."""
    return _cells(records, COST_CSV, ranked=False)


def failed_frame(records: list[Record]) -> pd.DataFrame:
    rows = [{"cell": r.slug, "status": r.status, "kind": r.error_kind, "error": r.error.message if r.error else None}
            for r in records]
    return pd.DataFrame(rows, columns=["cell", "status", "kind", "error"])


def environment_frame(records: list[Record]) -> pd.DataFrame:
    """The distinct environments the records were measured in, with how many cells each."""
    rows = []
    for record in records:
        env = record.environment or Environment()
        packages, device = env.packages, env.device
        conditions = latency_conditions(record) or LatencyConditions()
        row = {
            "device": conditions.device or (device.name if device else None) or record.device,
            "threads": conditions.threads or (device.torch_threads if device else None),
            "python": env.python, "torch": packages.get("torch"),
            "smp": packages.get("segmentation-models-pytorch"), "timm": packages.get("timm"),
            "machine": conditions.machine.id if conditions.machine else None,
            "platform": env.platform, "git commit": env.git_commit,
        }
        rows.append({key: "-" if value is None else str(value) for key, value in row.items()})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.groupby(list(frame.columns), sort=False).size().reset_index(name="cells")


def auto_format(value: Any) -> str:
    """Plain text for a cell of a table without a declared format: floats with 4 significant digits."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


@dataclass(frozen=True)
class Cells:
    """A frame as a table shows it: column names and headers, which are numeric, and per row each cell's text and
    whether it is its column's best value."""

    names: list[str]
    headers: list[str]
    numeric: set[str]
    rows: list[list[tuple[str, bool]]]


def table_cells(frame: pd.DataFrame, columns: dict[str, Column] | None = None) -> Cells:
    """The texts of `frame` under `columns` (None: every column, `auto_format`); the best value of each column with
    a direction is marked. Shared by the Markdown and the HTML report."""
    columns = columns or {name: Column(str(name), auto_format) for name in frame.columns}
    names = [name for name in columns if name in frame.columns]
    best: dict[str, Any] = {}
    for name in names:
        direction = columns[name].best
        values = pd.to_numeric(frame[name], errors="coerce").dropna()
        if direction and len(values) > 1:
            best[name] = values.max() if direction > 0 else values.min()
    numeric = {n for n in names if pd.api.types.is_numeric_dtype(frame[n]) and not pd.api.types.is_bool_dtype(frame[n])}
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for name in names:
            value = row[name]
            missing = _is_missing(value)
            cells.append(("-" if missing else columns[name].fmt(value),
                          name in best and not missing and value == best[name]))
        rows.append(cells)
    return Cells(names, [columns[n].header for n in names], numeric, rows)


def markdown_table(frame: pd.DataFrame, columns: dict[str, Column] | None = None) -> str:
    """A Markdown table of `frame`; the best value of each column with a direction is in bold."""
    cells = table_cells(frame, columns)
    names = cells.names
    lines = ["| " + " | ".join(cells.headers) + " |",
             "|" + "|".join("---:" if n in cells.numeric and n != names[0] else "---" for n in names) + "|"]
    for row in cells.rows:
        texts = [(f"**{text}**" if best else text).replace("|", "\\|") for text, best in row]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)
