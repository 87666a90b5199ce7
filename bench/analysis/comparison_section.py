"""The report's comparisons: main effects of each grid axis and pairs of the top configurations, with verdicts.

Computed before anything is written (a bad `--baseline` is a one-sentence error, not half a report), from the rows of
the report's ok cells. Baselines: `--baseline AXIS=VALUE`, else the first value of the axis in the newest resolved
grid saved in the results folder (`<results>/grids/<name>-<hash>.yaml`), else the first value in sorted order. Report
options only change what is derived from records: no cell's hash and no record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from pydantic import ValidationError

from segbench.analysis import tables
from segbench.analysis.comparisons import (
    CELL_KEY,
    COLUMNS,
    DEFAULT_MARGIN,
    DEFAULT_METRICS,
    METHOD_PARAGRAPH,
    configuration_pairs,
    main_effects,
)
from segbench.analysis.seeds import top_configurations
from segbench.errors import ConfigError
from segbench.grid.schema import LossSpec
from segbench.metrics.catalogue import METRICS
from segbench.records.paths import grids_dir
from segbench.records.rows import rows_frame

if TYPE_CHECKING:
    from segbench.analysis.report import ReportWriter

DEFAULT_TOP = 3
COMPARISONS_CSV = "comparisons.csv"


@dataclass(frozen=True)
class ComparisonOptions:
    """`segbench report` options: baseline level per axis, practical margin (metric's raw unit), top configurations
    per dataset compared pairwise."""

    baselines: dict[str, str] = field(default_factory=dict)
    margin: float = DEFAULT_MARGIN
    top: int = DEFAULT_TOP

    def __post_init__(self) -> None:
        if not self.margin >= 0:
            raise ConfigError(f"--margin {self.margin} must be zero or positive, in the metric's unit (0.01 = one "
                              "mIoU point).")
        if self.top < 2:
            raise ConfigError(f"--top {self.top} compares no pair of configurations; pass 2 or more.")


@dataclass(frozen=True)
class Comparisons:
    main: pd.DataFrame  # main_effects, exactly COLUMNS
    pairs: pd.DataFrame  # configuration_pairs over each dataset's top configurations, exactly COLUMNS
    grid_file: Path | None  # where the default baselines came from

    @property
    def table(self) -> pd.DataFrame:
        """Both, as `comparisons.csv` holds them."""
        frames = [frame for frame in (self.main, self.pairs) if not frame.empty]
        return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)


def newest_grid_file(results: Path) -> Path | None:
    files = sorted(grids_dir(results).glob("*.yaml"), key=lambda path: path.stat().st_mtime)
    return files[-1] if files else None


def _loss_key(entry: Any) -> str:
    """A saved grid's loss entry as cells name it (LossSpec.key); the id or name if it no longer validates."""
    if isinstance(entry, str):
        return entry
    try:
        return LossSpec.model_validate(entry).key
    except (ValidationError, ValueError, TypeError):
        return str(entry.get("id") or entry.get("name")) if isinstance(entry, dict) else str(entry)


def grid_axis_order(path: Path | None) -> dict[str, list[str]]:
    """{axis: values in the grid file's order} of a resolved grid; {} when there is none or it cannot be read."""
    if path is None:
        return {}
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(grid, dict):
        return {}
    return {"model": [str(v) for v in grid.get("models") or []],
            "encoder": [str(v) for v in grid.get("encoders") or []],
            "loss": [_loss_key(v) for v in grid.get("losses") or []]}


def comparison_cells(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell: the cell key and the compared metrics as floats (NaN where missing)."""
    frame = rows_frame(records)[[*CELL_KEY, *DEFAULT_METRICS]]
    for metric in DEFAULT_METRICS:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype("float64")
    return frame


def compute_comparisons(results: Path, records: list[dict[str, Any]], seed_frame: pd.DataFrame,
                        options: ComparisonOptions) -> Comparisons:
    """Main effects over all ok cells, and pairs of each dataset's `options.top` configurations by mean mIoU."""
    cells = comparison_cells(records)
    grid_file = newest_grid_file(results)
    higher = {metric: METRICS[metric].better > 0 for metric in DEFAULT_METRICS}
    if cells.empty:
        empty = pd.DataFrame(columns=COLUMNS)
        if options.baselines:
            raise ConfigError("--baseline has nothing to compare: the results hold no successful cell.")
        return Comparisons(empty, empty, grid_file)
    main = main_effects(cells, DEFAULT_METRICS, options.baselines, grid_axis_order(grid_file), options.margin, higher)
    top = [configuration for dataset in sorted(cells["dataset"].astype(str).unique())
           for configuration in top_configurations(seed_frame, dataset, options.top)]
    pairs = configuration_pairs(cells, top, DEFAULT_METRICS, options.margin, higher)
    return Comparisons(main, pairs, grid_file)


def _points(metric: str, value: float, signed: bool = False) -> str:
    """A value in the metric's shown unit: percentage points for fractions, raw otherwise."""
    if pd.isna(value):
        return "-"
    scale = 100.0 if METRICS[metric].unit == "fraction" else 1.0
    return f"{value * scale:+.2f}" if signed else f"{value * scale:.2f}"


def _p_text(p: float) -> str:
    return "-" if pd.isna(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def shown_comparisons(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSV rows as text for a Markdown table: fractions in points, the interval in brackets, p to 3 digits."""
    shown = pd.DataFrame({
        "axis": frame["axis"], "level": frame["level"], "baseline": frame["baseline"],
        "metric": [METRICS[m].label for m in frame["metric"]], "n": frame["n"].astype(str),
        "mean_level": [_points(m, v) for m, v in zip(frame["metric"], frame["mean_level"], strict=True)],
        "mean_baseline": [_points(m, v) for m, v in zip(frame["metric"], frame["mean_baseline"], strict=True)],
        "delta": [_points(m, v, True) for m, v in zip(frame["metric"], frame["delta"], strict=True)],
        "ci": [f"[{_points(m, lo, True)}, {_points(m, hi, True)}]" if not pd.isna(lo) else "-"
               for m, lo, hi in zip(frame["metric"], frame["ci_low"], frame["ci_high"], strict=True)],
        "p_value": [_p_text(p) for p in frame["p_value"]],
        "p_holm": [_p_text(p) for p in frame["p_holm"]],
        "prob_better": ["-" if pd.isna(p) else f"{p:.2f}" for p in frame["prob_better"]],
        "verdict": [f"**{v}**" if v in ("better", "worse") else v for v in frame["verdict"]],
    })
    return shown.reset_index(drop=True)


def _columns(n_header: str) -> dict[str, tables.Column]:
    headers = {"axis": "axis", "level": "level", "baseline": "baseline", "metric": "metric", "n": n_header,
               "mean_level": "level mean", "mean_baseline": "baseline mean", "delta": "delta",
               "ci": "95 % CI of delta", "p_value": "p", "p_holm": "p (Holm)", "prob_better": "P(better)",
               "verdict": "verdict"}
    return {name: tables.Column(header, str) for name, header in headers.items()}


def _baseline_sentence(main: pd.DataFrame, options: ComparisonOptions, grid_file: Path | None,
                       results: Path) -> str:
    """Which baseline each axis used and where it came from: --baseline, the saved grid, or sorted order."""
    used = [f"{axis}={baseline}" for axis, baseline in main.drop_duplicates(["axis", "baseline"])[
        ["axis", "baseline"]].itertuples(index=False)]
    chosen = [item for item in used if item.split("=")[0] in options.baselines]
    default = [item for item in used if item not in chosen]
    source = (f"first values in `{grid_file.relative_to(results).as_posix()}`" if grid_file
              else "first in sorted order: no saved grid")
    parts = ([f"{', '.join(chosen)} (--baseline)"] if chosen else []) + (
        [f"{', '.join(default)} ({source})"] if default else [])
    return f"Baselines: {'; '.join(parts)}." if parts else ""


def write_comparison_section(writer: ReportWriter, comparisons: Comparisons, options: ComparisonOptions) -> None:
    """`## Comparisons`: the method, the main-effects table and the top-configuration pairs per dataset, and
    comparisons.csv (exactly `comparisons.COLUMNS`, raw units)."""
    writer.add("## Comparisons", METHOD_PARAGRAPH,
               f"Margin: {options.margin:g} in the metric's unit ({options.margin * 100:g} on the % scale shown "
               f"here). Means are over n seeds; deltas and intervals in percentage points. Change the "
               f"baselines with `--baseline AXIS=VALUE` and the margin with `--margin`; neither touches a record.")
    main, pairs = comparisons.main, comparisons.pairs
    writer.add(f"All rows, raw units: {writer.csv(comparisons.table, COMPARISONS_CSV)}")
    datasets = sorted(set(main["dataset"].astype(str)) | set(pairs["dataset"].astype(str)))
    if not datasets:
        writer.add("_(no axis has two values with cells that differ on it alone, and no two configurations)_")
    for dataset in datasets:
        writer.add(f"### Comparisons: {dataset}")
        effects = main[main["dataset"] == dataset]
        writer.add("#### Main effects: each level against the baseline level of its axis",
                   _baseline_sentence(effects, options, comparisons.grid_file, writer.results)
                   + " n = matched pairs of cells (one per seed and combination of the other axes).")
        if effects.empty:
            writer.add("_(no axis with two or more values)_")
        else:
            writer.add(tables.markdown_table(shown_comparisons(effects), _columns("n pairs")))
        top = pairs[pairs["dataset"] == dataset]
        writer.add(f"#### Top {options.top} configurations, pairwise",
                   "Configurations ranked by mean mIoU over their seeds; each against every lower-ranked one "
                   "(level = the higher-ranked), unpaired over seeds (Welch). n = seeds of the smaller side.")
        if top.empty:
            writer.add("_(fewer than two configurations)_")
        else:
            writer.add(tables.markdown_table(shown_comparisons(top).drop(columns=["axis"]), _columns("n seeds")))
