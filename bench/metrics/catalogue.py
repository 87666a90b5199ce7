"""The metric catalogue: every number segbench reports about a cell, declared once.

An entry says which way is better, the unit of the raw number (records, summaries and CSVs keep raw units) and how
reports show it. Summary rows, `compare --fail-on`, the leaderboards, the report's tables and their CSVs read this
catalogue. Adding a confusion-matrix metric means one line in `compute_metrics`, one entry here and its test; a cost
or timing field also needs its reader in `segbench.records.rows`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def fixed(digits: int, scale: float = 1.0) -> Callable[[Any], str]:
    """A formatter: value / scale with `digits` decimals and thousands separators."""

    def fmt(value: Any) -> str:
        return f"{value / scale:,.{digits}f}"

    return fmt


PERCENT = fixed(2, 0.01)  # fractions shown as percentages
MILLIONS = fixed(2, 1e6)
MIB = fixed(0, 2**20)


@dataclass(frozen=True)
class Metric:
    """One reported number of a cell.

    key: its name in records' `metrics`, summary rows, CSV columns and `--fail-on`. better: +1 when higher is better,
    -1 when lower is. unit: of the raw number. label: column header in reports (names the shown unit); short: header
    in the 80-column terminal leaderboard; fmt: raw number -> text under those headers. from_matrix: computed by
    `compute_metrics` from the confusion matrix (otherwise a cost or timing field). summary: a field of summary
    rows, hence of baselines and regression gates. timed: read from a clock on the machine that ran the cell, so
    `compare` gates it only between equal machine fingerprints (segbench.measure.machine). quality: a property of the
    predictions (every matrix metric, calibration, boundary IoU), not of their cost.
    """

    key: str
    better: int
    unit: str
    label: str
    short: str
    fmt: Callable[[Any], str]
    from_matrix: bool
    summary: bool = True
    timed: bool = False
    quality: bool | None = None  # None: as from_matrix

    @property
    def is_quality(self) -> bool:
        return self.from_matrix if self.quality is None else self.quality


def _accuracy(key: str, label: str, short: str, summary: bool = True) -> Metric:
    return Metric(key, +1, "fraction", f"{label} %", short, PERCENT, from_matrix=True, summary=summary)


# Summary rows list the summary fields in this order; keep the baseline's order when adding entries.
CATALOGUE: tuple[Metric, ...] = (
    _accuracy("miou", "mIoU", "mIoU"),
    _accuracy("pixel_accuracy", "pixel acc", "pix.acc"),
    _accuracy("mdice", "mDice", "mDice"),
    _accuracy("micro_iou", "micro IoU", "microIoU"),
    _accuracy("fwiou", "fwIoU", "fwIoU"),
    # For single-label predictions the micro scores below repeat pixel accuracy (docs/metrics.md), and the macro
    # precision and recall are better read as mDice: records keep them, summaries and gates do not.
    _accuracy("mprecision", "macro precision", "mPrec", summary=False),
    _accuracy("mrecall", "macro recall", "mRec", summary=False),
    _accuracy("micro_dice", "micro Dice", "microDice", summary=False),
    _accuracy("micro_precision", "micro precision", "microPrec", summary=False),
    _accuracy("micro_recall", "micro recall", "microRec", summary=False),
    _accuracy("micro_specificity", "micro spec", "microSpec", summary=False),
    Metric("params", -1, "parameters", "params (M)", "Mparams", MILLIONS, from_matrix=False),
    Metric("macs", -1, "MACs at batch 1", "MACs (G)", "GMACs", fixed(2, 1e9), from_matrix=False),
    Metric("gmacs", -1, "GMACs at batch 1", "GMACs", "GMACs", fixed(2), from_matrix=False),
    Metric("latency_ratio", -1, "model p50 / reference p50", "latency ratio", "lat.ratio", fixed(3),
           from_matrix=False, timed=True),
    Metric("latency_ms_p50", -1, "ms at batch 1", "latency p50 b1 (ms)", "p50 ms", fixed(1), from_matrix=False,
           timed=True),
    Metric("throughput_images_per_s", +1, "images/s at the measurement batch", "throughput (img/s)", "img/s",
           fixed(1), from_matrix=False, timed=True),
    Metric("train_time_s", -1, "s", "train time (s)", "train s", fixed(1), from_matrix=False, timed=True),
    Metric("train_step_s_median", -1, "s", "train step (s)", "step s", fixed(3), from_matrix=False, timed=True),
    Metric("train_memory_bytes", -1, "bytes", "peak mem train (MiB)", "train MiB", MIB, from_matrix=False),
    Metric("inference_memory_bytes", -1, "bytes", "peak mem infer (MiB)", "infer MiB", MIB, from_matrix=False),
    # Time to accuracy (segbench.records.rows.time_to_accuracy): when val mIoU first reached 90 % of its final value.
    # Not summary fields: they depend on how often a grid evaluates, and the committed baseline's rows keep their shape.
    Metric("time_to_90pct_s", -1, "s of training", "time to 90% (s)", "t90 s", fixed(1), from_matrix=False,
           timed=True, summary=False),
    Metric("iterations_to_90pct", -1, "iterations", "iters to 90%", "it90", fixed(0), from_matrix=False,
           summary=False),
    # The final evaluation's calibration and boundaries (records from issue 22 on; older baselines lack them, and a
    # field missing on one side is not gated).
    Metric("ece", -1, "fraction", "ECE %", "ECE", PERCENT, from_matrix=False, quality=True),
    Metric("boundary_miou", +1, "fraction", "boundary mIoU %", "bIoU", PERCENT, from_matrix=False, quality=True),
)

METRICS: dict[str, Metric] = {metric.key: metric for metric in CATALOGUE}
MATRIX_METRICS: tuple[str, ...] = tuple(metric.key for metric in CATALOGUE if metric.from_matrix)
# Field -> direction of an improvement: the numeric fields of a summary row, the only ones `compare` checks.
SUMMARY_FIELDS: dict[str, int] = {metric.key: metric.better for metric in CATALOGUE if metric.summary}
# Fields read from a clock: comparable only between runs on machines with equal fingerprints.
TIMED_FIELDS: frozenset[str] = frozenset(metric.key for metric in CATALOGUE if metric.timed)
