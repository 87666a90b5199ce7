"""The report's tables: pandas frames of raw numbers (written as CSV) and their Markdown rendering.

Every frame is derived from records alone. Raw units in frames and CSVs (bytes, seconds, counts); formatting and the
"best value" marks happen only in `markdown_table`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segbench.analysis.summary import cell_row, group_key


def dataset_key(record: dict[str, Any]) -> str:
    dataset = (record.get("config") or {}).get("dataset") or {}
    return dataset.get("id") or dataset.get("name") or "unknown"


def short_label(record: dict[str, Any]) -> str:
    """model/encoder/loss/s<seed>: the slug without the dataset, for tables and figures of one dataset."""
    config = record.get("config") or {}
    loss = config.get("loss") or {}
    return f"{config.get('model')}/{config.get('encoder')}/{loss.get('id') or loss.get('name')}/s{config.get('seed')}"


@dataclass(frozen=True)
class Column:
    """How a raw column is shown: header, formatter, and which direction is best (+1 max, -1 min, 0 unmarked)."""

    header: str
    fmt: Callable[[Any], str]
    best: int = 0


def fixed(digits: int, scale: float = 1.0) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        return f"{value / scale:,.{digits}f}"

    return fmt


PERCENT = fixed(2, 0.01)  # fractions shown as percentages
MIB = fixed(0, 2**20)

LEADERBOARD: dict[str, Column] = {
    "cell": Column("cell", str),
    "miou": Column("mIoU %", PERCENT, +1),
    "pixel_accuracy": Column("pixel acc %", PERCENT, +1),
    "mdice": Column("mDice %", PERCENT, +1),
    "micro_iou": Column("micro IoU %", PERCENT, +1),
    "params": Column("params (M)", fixed(2, 1e6), -1),
    "gmacs": Column("GMACs", fixed(2), -1),
    "latency_ms_p50": Column("latency p50 b1 (ms)", fixed(1), -1),
    "throughput_images_per_s": Column("throughput (img/s)", fixed(1), +1),
    "train_time_s": Column("train time (s)", fixed(1), -1),
    "train_memory_bytes": Column("peak mem train (MiB)", MIB, -1),
    "inference_memory_bytes": Column("peak mem infer (MiB)", MIB, -1),
}


def leaderboard_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ok record, sorted by mIoU: accuracy and cost in raw units."""
    rows = [{"cell": short_label(r), **{k: cell_row(r)[k] for k in LEADERBOARD if k != "cell"}} for r in records]
    frame = pd.DataFrame(rows, columns=list(LEADERBOARD))
    return frame.sort_values("miou", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


SEED_STYLE: dict[str, Column] = {
    "cell": Column("cell", str),
    "micro_accuracy": Column("micro acc %", PERCENT),
    "micro_sensitivity": Column("micro sens %", PERCENT),
    "micro_specificity": Column("micro spec %", PERCENT),
    "micro_dice": Column("micro Dice %", PERCENT),
    "micro_iou": Column("micro IoU %", PERCENT),
    "macro_sensitivity": Column("macro sens %", PERCENT, +1),
    "macro_specificity": Column("macro spec %", PERCENT, +1),
    "mdice": Column("mDice %", PERCENT, +1),
    "miou": Column("mIoU %", PERCENT, +1),
}


def _nanmean(values: list[Any]) -> float:
    array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return float(np.nanmean(array)) if np.isfinite(array).any() else math.nan


def seed_style_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Micro scores (pooled over classes, as seed studies report them) next to the macro ones."""
    rows = []
    for record in records:
        metrics = record.get("metrics") or {}
        per_class = metrics.get("per_class") or {}
        rows.append({
            "cell": short_label(record),
            "micro_accuracy": metrics.get("pixel_accuracy"),
            "micro_sensitivity": metrics.get("micro_recall"),
            "micro_specificity": metrics.get("micro_specificity"),
            "micro_dice": metrics.get("micro_dice"),
            "micro_iou": metrics.get("micro_iou"),
            "macro_sensitivity": metrics.get("mrecall"),
            "macro_specificity": _nanmean(per_class.get("specificity") or []),
            "mdice": metrics.get("mdice"),
            "miou": metrics.get("miou"),
        })
    frame = pd.DataFrame(rows, columns=list(SEED_STYLE))
    return frame.sort_values("miou", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def per_class_iou_frame(records: list[dict[str, Any]], classes: list[str]) -> pd.DataFrame:
    """IoU per class (rows) and cell (columns); NaN where a class is absent from ground truth and prediction."""
    columns = {}
    for record in records:
        values = ((record.get("metrics") or {}).get("per_class") or {}).get("iou") or []
        columns[short_label(record)] = [math.nan if v is None else v for v in values]
    return pd.DataFrame(columns, index=pd.Index(classes, name="class"))


def seed_groups_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Cells that differ only by seed: mean, sample std (ddof 1) and n of the main metrics."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(group_key(record), []).append(record)
    rows = []
    for key, members in groups.items():
        row: dict[str, Any] = {"configuration": key.split("#")[0], "n": len(members),
                               "seeds": ",".join(str(m["config"].get("seed")) for m in members)}
        for metric in ("miou", "pixel_accuracy", "mdice"):
            values = [m["metrics"][metric] for m in members if (m.get("metrics") or {}).get(metric) is not None]
            row[f"{metric}_mean"] = float(np.mean(values)) if values else math.nan
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("miou_mean", ascending=False, kind="stable").reset_index(drop=True)


def cost_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The cost of each cell in detail (raw units): parameters, MACs, latency, training time, memory."""
    rows = []
    for record in records:
        cost = record.get("cost") or {}
        params, macs = cost.get("params") or {}, cost.get("macs") or {}
        latency = cost.get("latency") or {}
        single, batched = latency.get("batch_1") or {}, latency.get("batch_n") or {}
        memory = cost.get("memory") or {}
        timing = record.get("timing") or {}
        epochs = [h.get("epoch_time_s") for h in record.get("history") or [] if h.get("epoch_time_s") is not None]
        row = cell_row(record)
        rows.append({
            "cell": short_label(record),
            "params": params.get("total"), "params_encoder": params.get("encoder"),
            "params_decoder": params.get("decoder"),
            "macs": macs.get("macs"), "gflops": macs.get("gflops"),
            "macs_input_shape": shape_text(macs.get("input_shape")),
            "unsupported_ops": ", ".join(f"{k} x{v}" for k, v in (macs.get("unsupported_ops") or {}).items()),
            "latency_ms_p50": single.get("latency_ms_p50"), "latency_ms_p90": single.get("latency_ms_p90"),
            "latency_ms_std": single.get("latency_ms_std"), "latency_n": single.get("n"),
            "latency_ratio": latency.get("latency_ratio"),
            "batch_n": batched.get("batch_size"), "batch_n_latency_ms_p50": batched.get("latency_ms_p50"),
            "throughput_images_per_s": batched.get("throughput_images_per_s"),
            "train_step_s_median": timing.get("train_step_s_median"),
            "train_images_per_s": timing.get("train_images_per_s"),
            "train_time_s": timing.get("train_time_s"),
            "epoch_time_s_mean": float(np.mean(epochs)) if epochs else None,
            "train_memory_bytes": row["train_memory_bytes"], "inference_memory_bytes": row["inference_memory_bytes"],
            "torchinfo_estimate_bytes": (memory.get("estimate") or {}).get("forward_backward_bytes"),
        })
    return pd.DataFrame(rows)


COST: dict[str, Column] = {
    "cell": Column("cell", str),
    "params": Column("params (M)", fixed(2, 1e6)),
    "params_encoder": Column("encoder (M)", fixed(2, 1e6)),
    "params_decoder": Column("decoder (M)", fixed(2, 1e6)),
    "gflops": Column("GFLOPs (2xMACs)", fixed(2)),
    "latency_ms_p50": Column("b1 p50 (ms)", fixed(1)),
    "latency_ms_p90": Column("b1 p90 (ms)", fixed(1)),
    "latency_ratio": Column("latency ratio", fixed(3)),
    "batch_n_latency_ms_p50": Column("bN p50 (ms)", fixed(1)),
    "train_step_s_median": Column("train step (s)", fixed(3)),
    "train_images_per_s": Column("train img/s", fixed(1)),
    "epoch_time_s_mean": Column("s/epoch", fixed(1)),
    "torchinfo_estimate_bytes": Column("torchinfo est. (MiB)", MIB),
}


def shape_text(shape: list[int] | None) -> str:
    return "x".join(str(s) for s in shape) if shape else ""


def failed_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{"cell": r["slug"], "status": r["status"], "kind": (r.get("error") or {}).get("kind"),
             "error": (r.get("error") or {}).get("message")} for r in records]
    return pd.DataFrame(rows, columns=["cell", "status", "kind", "error"])


def environment_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The distinct environments the records were measured in, with how many cells each."""
    rows = []
    for record in records:
        env = record.get("environment") or {}
        packages = env.get("packages") or {}
        device = ((record.get("cost") or {}).get("latency") or {}).get("conditions") or {}
        row = {
            "device": device.get("device") or (env.get("device") or {}).get("name") or record.get("device"),
            "threads": device.get("threads") or (env.get("device") or {}).get("torch_threads"),
            "python": env.get("python"), "torch": packages.get("torch"),
            "smp": packages.get("segmentation-models-pytorch"), "timm": packages.get("timm"),
            "platform": env.get("platform"), "git commit": env.get("git_commit"),
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


def markdown_table(frame: pd.DataFrame, columns: dict[str, Column] | None = None) -> str:
    """A Markdown table of `frame`; the best value of each column with a direction is in bold."""
    columns = columns or {name: Column(str(name), auto_format) for name in frame.columns}
    names = [name for name in columns if name in frame.columns]
    best: dict[str, Any] = {}
    for name in names:
        direction = columns[name].best
        values = pd.to_numeric(frame[name], errors="coerce").dropna()
        if direction and len(values) > 1:
            best[name] = values.max() if direction > 0 else values.min()
    numeric = {n for n in names if pd.api.types.is_numeric_dtype(frame[n]) and not pd.api.types.is_bool_dtype(frame[n])}
    lines = ["| " + " | ".join(columns[n].header for n in names) + " |",
             "|" + "|".join("---:" if n in numeric and n != names[0] else "---" for n in names) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for name in names:
            value = row[name]
            text = "-" if _is_missing(value) else columns[name].fmt(value)
            if name in best and not _is_missing(value) and value == best[name]:
                text = f"**{text}**"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
