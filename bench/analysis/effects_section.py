"""The report's comparisons: main effects of each grid axis over seeds, the same effects within each combination of
the other axes (conditional effects), and pairs of the top configurations, with verdicts.

Computed before anything is written (a bad `--baseline` is a one-sentence error, not half a report), from the rows of
the report's ok cells: mIoU, pixel accuracy and mDice, and the evaluation under conditions where the cells carry it
(ECE, boundary mIoU, mean corrupted mIoU, relative robustness, mIoU on each further dataset as `miou@<key>/<split>`).
Baselines: `--baseline AXIS=VALUE`, else the first value of the axis in the newest resolved grid saved in the results
folder (`<results>/grids/<name>-<hash>.yaml`), else the first value in sorted order. Report options only change what
is derived from records: no cell's hash and no record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from segbench.analysis import tables
from segbench.analysis.effects import (
    CELL_KEY,
    COLUMNS,
    DEFAULT_ALPHA,
    DEFAULT_MARGIN,
    DEFAULT_METRICS,
    METHOD_PARAGRAPH,
    conditional_effects,
    configuration_pairs,
    main_effects,
    pairs_paragraph,
    verdict_rule,
)
from segbench.analysis.seeds import top_configurations
from segbench.errors import ConfigError
from segbench.metrics.catalogue import METRICS, Metric
from segbench.records.grids import grid_axis_order, newest_grid_file
from segbench.records.rows import DOMAIN_METRIC_PREFIX, rows_frame
from segbench.records.schema import Record

if TYPE_CHECKING:
    from segbench.analysis.writer import ReportWriter

DEFAULT_TOP = 3
COMPARISONS_CSV = "comparisons.csv"
# The evaluation under conditions (issue 22), compared beside DEFAULT_METRICS where the records carry it, then mIoU on
# each further evaluation dataset (`miou@<key>/<split>`, segbench.records.rows.domain_metric). All are fractions.
CONDITION_METRICS = ("ece", "boundary_miou", "mean_corrupted_miou", "relative_robustness")


@dataclass(frozen=True)
class ComparisonOptions:
    """`segbench report` options: baseline level per axis, practical margin (metric's raw unit), top configurations
    per dataset compared pairwise, and the significance level of verdicts (intervals are 1 - alpha intervals)."""

    baselines: dict[str, str] = field(default_factory=dict)
    margin: float = DEFAULT_MARGIN
    top: int = DEFAULT_TOP
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        if not self.margin >= 0:
            raise ConfigError(f"--margin {self.margin} must be zero or positive, in the metric's unit (0.01 = one "
                              "mIoU point).")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"--alpha {self.alpha} must lie strictly between 0 and 1 (0.05: 95 % intervals).")
        if self.top < 2:
            raise ConfigError(f"--top {self.top} compares no pair of configurations; pass 2 or more.")


@dataclass(frozen=True)
class Comparisons:
    main: pd.DataFrame  # main_effects, exactly COLUMNS
    conditional: pd.DataFrame  # conditional_effects, exactly COLUMNS
    pairs: pd.DataFrame  # configuration_pairs over each dataset's top configurations, exactly COLUMNS
    grid_file: Path | None  # where the default baselines came from
    configurations: dict[str, int]  # per dataset, how many configurations have a mean mIoU (the top K's pool)
    metrics: tuple[str, ...]  # the compared metrics: DEFAULT_METRICS and those some ok cell carries

    @property
    def table(self) -> pd.DataFrame:
        """All three, as `comparisons.csv` holds them: main effects, conditional effects, configuration pairs."""
        frames = [frame for frame in (self.main, self.conditional, self.pairs) if not frame.empty]
        return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)


def comparison_metric(key: str) -> Metric:
    """A compared metric's catalogue entry (label, direction, unit). The corruption summaries and mIoU on a further
    evaluation dataset are not in the catalogue: they are fractions shown and directed as mIoU, with their own label."""
    if key in METRICS:
        return METRICS[key]
    miou = METRICS["miou"]
    if key.startswith(DOMAIN_METRIC_PREFIX):
        return replace(miou, key=key, label=f"{miou.label} on {key.removeprefix(DOMAIN_METRIC_PREFIX)}")
    column = tables.ROBUSTNESS[key]  # mean_corrupted_miou, relative_robustness: the report's robustness table
    return replace(miou, key=key, label=column.header, better=column.best)


def comparison_cells(records: list[Record]) -> pd.DataFrame:
    """One row per cell: the cell key, then as floats (NaN where missing) `DEFAULT_METRICS` and those of
    `CONDITION_METRICS` and of the further datasets' mIoU that at least one cell carries."""
    frame = rows_frame(records, domains=True)
    domains = [column for column in frame.columns if column.startswith(DOMAIN_METRIC_PREFIX)]
    values = frame[[*DEFAULT_METRICS, *CONDITION_METRICS, *domains]].apply(pd.to_numeric, errors="coerce")
    carried = [metric for metric in values.columns if metric in DEFAULT_METRICS or values[metric].notna().any()]
    return pd.concat([frame[list(CELL_KEY)], values[carried].astype("float64")], axis=1)


def compute_comparisons(results: Path, records: list[Record], seed_frame: pd.DataFrame,
                        options: ComparisonOptions) -> Comparisons:
    """Main and conditional effects over all ok cells, and pairs of each dataset's `options.top` configurations by
    mean mIoU, for every metric of `comparison_cells`; each metric's direction comes from `comparison_metric`."""
    cells = comparison_cells(records)
    metrics = tuple(column for column in cells.columns if column not in CELL_KEY)
    grid_file = newest_grid_file(results)
    higher = {metric: comparison_metric(metric).better > 0 for metric in metrics}
    if cells.empty:
        empty = pd.DataFrame(columns=COLUMNS)
        if options.baselines:
            raise ConfigError("--baseline has nothing to compare: the results hold no successful cell.")
        return Comparisons(empty, empty, empty, grid_file, {}, metrics)
    arguments = (metrics, options.baselines, grid_axis_order(grid_file), options.margin, higher, options.alpha)
    main, conditional = main_effects(cells, *arguments), conditional_effects(cells, *arguments)
    datasets = sorted(cells["dataset"].astype(str).unique())
    top = [configuration for dataset in datasets
           for configuration in top_configurations(seed_frame, dataset, options.top)]
    pairs = configuration_pairs(cells, top, metrics, options.margin, higher, options.alpha)
    configurations = {dataset: int(((seed_frame["dataset"] == dataset) & seed_frame["miou_mean"].notna()).sum())
                      for dataset in datasets}
    return Comparisons(main, conditional, pairs, grid_file, configurations, metrics)


# The evaluation under conditions in words, for the report's readers
CONDITION_TEXT = {
    "ece": "ECE (expected calibration error of the top-class confidence)",
    "boundary_miou": "boundary mIoU",
    "mean_corrupted_miou": "mean corrupted mIoU (eval.corruptions: over severities, then corruptions)",
    "relative_robustness": "relative robustness (mean corrupted mIoU / clean mIoU of the same images)",
}


def metrics_paragraph(metrics: tuple[str, ...], margin: float) -> str:
    """Which metrics the comparisons cover, their unit and direction, and how missing values are treated."""
    domains = [metric for metric in metrics if metric.startswith(DOMAIN_METRIC_PREFIX)]
    names = []
    for metric in (metric for metric in metrics if metric not in domains):
        entry = comparison_metric(metric)
        name = CONDITION_TEXT.get(metric, entry.label.removesuffix(" %"))
        names.append(name if entry.better > 0 else f"{name}, lower is better: 'better' means lower")
    if domains:
        names.append(f"mIoU on each further evaluation dataset of eval.datasets, named `miou@<dataset key>/<split>` "
                     f"({', '.join(f'`{metric}`' for metric in domains)})")
    return (f"Metrics compared: {'; '.join(names)}. Each is a fraction in the CSV, ECE included, so the margin of "
            f"{margin:g} applies to each in that unit ({margin * 100:g} on the % scale of the tables). A metric is "
            "compared only where records carry it: a cell without the value pairs with nothing for that metric (no "
            "value is filled in), so its n can be smaller than mIoU's.")


def _points(metric: str, value: float, signed: bool = False) -> str:
    """A value in the metric's shown unit: percentage points for fractions, raw otherwise."""
    if pd.isna(value):
        return "-"
    scale = 100.0 if comparison_metric(metric).unit == "fraction" else 1.0
    return f"{value * scale:+.2f}" if signed else f"{value * scale:.2f}"


def _p_text(p: float) -> str:
    return "-" if pd.isna(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


def shown_comparisons(frame: pd.DataFrame) -> pd.DataFrame:
    """The CSV rows as text for a Markdown table: fractions in points, the interval in brackets, p to 3 digits."""
    shown = pd.DataFrame({
        "axis": frame["axis"], "level": frame["level"], "baseline": frame["baseline"], "scope": frame["scope"],
        "metric": [comparison_metric(m).label for m in frame["metric"]], "n": frame["n"].astype(str),
        "mean_level": [_points(m, v) for m, v in zip(frame["metric"], frame["mean_level"], strict=True)],
        "mean_baseline": [_points(m, v) for m, v in zip(frame["metric"], frame["mean_baseline"], strict=True)],
        "delta": [_points(m, v, True) for m, v in zip(frame["metric"], frame["delta"], strict=True)],
        "ci": [f"[{_points(m, lo, True)}, {_points(m, hi, True)}]" if not pd.isna(lo) else "-"
               for m, lo, hi in zip(frame["metric"], frame["ci_low"], frame["ci_high"], strict=True)],
        "p_value": [_p_text(p) for p in frame["p_value"]],
        "p_signflip": [_p_text(p) for p in frame["p_signflip"]],
        "p_holm": [_p_text(p) for p in frame["p_holm"]],
        "prob_better": ["-" if pd.isna(p) else f"{p:.2f}" for p in frame["prob_better"]],
        "verdict": [f"**{v}**" if v in ("better", "worse") else v for v in frame["verdict"]],
        "note": ["" if pd.isna(note) else str(note) for note in frame["note"]],
    })
    return shown.reset_index(drop=True)


def _columns(n_header: str, p_header: str, alpha: float) -> dict[str, tables.Column]:
    headers = {"axis": "axis", "level": "level", "baseline": "baseline", "scope": "within", "metric": "metric",
               "n": n_header, "mean_level": "level mean", "mean_baseline": "baseline mean", "delta": "delta",
               "ci": f"{(1 - alpha) * 100:g} % CI of delta", "p_value": p_header, "p_signflip": "p (sign-flip)",
               "p_holm": "p (Holm)", "prob_better": "P(better)", "verdict": "verdict", "note": "note"}
    return {name: tables.Column(header, str) for name, header in headers.items()}


def _effects_table(writer: ReportWriter, frame: pd.DataFrame, alpha: float, scope: bool) -> None:
    """Main effects (scope dropped, all "all") or conditional effects as a table."""
    shown = shown_comparisons(frame)
    shown = shown if scope else shown.drop(columns=["scope"])
    writer.table(frame, _columns("n seeds", "p (t-test)", alpha), None, shown)


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


def _effects_block(writer: ReportWriter, heading: str, text: str, frame: pd.DataFrame, alpha: float, scope: bool,
                   empty: str) -> None:
    """A heading, its paragraph, then the effects table (or, without rows, why there are none)."""
    writer.add(heading, text)
    if frame.empty:
        writer.add(f"_({empty})_")
    else:
        _effects_table(writer, frame, alpha, scope=scope)


def write_comparison_section(writer: ReportWriter, comparisons: Comparisons, options: ComparisonOptions) -> None:
    """`## Comparisons`: the method and the verdict rule, then per dataset the main effects, the conditional
    effects and the top-configuration pairs; and comparisons.csv (exactly `comparisons.COLUMNS`, raw units)."""
    writer.add("## Comparisons")
    writer.add(METHOD_PARAGRAPH)
    writer.add(verdict_rule(options.margin, options.alpha))
    writer.add(metrics_paragraph(comparisons.metrics, options.margin))
    writer.add("Means, deltas and intervals are shown in percentage points (raw units in the CSV). Change the "
               "baselines with `--baseline AXIS=VALUE`, the margin with `--margin` and alpha with `--alpha`; none "
               "touches a record.")
    main, conditional, pairs = comparisons.main, comparisons.conditional, comparisons.pairs
    writer.add(f"All rows, raw units: {writer.csv(comparisons.table, COMPARISONS_CSV)}")
    datasets = sorted(set(main["dataset"].astype(str)) | set(pairs["dataset"].astype(str)))
    if not datasets:
        writer.add("_(no axis has two values with cells that differ on it alone, and no two configurations)_")
    for dataset in datasets:
        writer.add(f"### Comparisons: {dataset}")
        effects = main[main["dataset"] == dataset]
        _effects_block(writer, "#### Main effects: each level against the baseline level of its axis",
                       _baseline_sentence(effects, options, comparisons.grid_file, writer.results)
                       + " n = seeds; each seed's difference d_s averages the combinations of the other axes run at "
                       "that seed; p is the t-test on the d_s, p (sign-flip) the exact sign-flip test on the same "
                       "d_s, p (Holm) adjusts p over this dataset's rows of one metric; P(better) = share of seeds.",
                       effects, options.alpha, scope=False, empty="no axis with two or more values")
        _effects_block(writer, "#### Conditional effects: the same comparisons within each combination of the other "
                       "axes", "One cell pair per seed within the combination named under 'within' (n = seeds), so "
                       "a level that helps one combination and not another shows here; p (Holm) adjusts over the "
                       "rows of one metric and axis.", conditional[conditional["dataset"] == dataset], options.alpha,
                       scope=True, empty="no axis whose other axes vary: the main effects are the only combination")
        top = pairs[pairs["dataset"] == dataset]
        available = comparisons.configurations.get(dataset, 0)
        k = min(options.top, available)
        writer.add(f"#### Top {k} configurations, pairwise", pairs_paragraph(k, available))
        if top.empty:
            writer.add("_(fewer than two configurations)_")
        else:
            writer.table(top, _columns("n seeds", "p (Welch)", options.alpha), None,
                         shown_comparisons(top).drop(columns=["axis", "scope", "p_signflip"]))
