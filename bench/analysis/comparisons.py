"""Trustworthy comparisons over seeds: main effects of one grid axis, and pairs of top configurations.

Input is a frame with one row per finished cell: `dataset, model, encoder, loss, seed` and metric columns (fractions,
NaN where missing). Output is a frame with exactly `COLUMNS`, one row per (dataset, axis, level, baseline, metric),
ready to be written as CSV. The method is described for readers of a report in `METHOD_PARAGRAPH`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from segbench.analysis.statistics import (
    holm_adjust,
    paired_t_interval,
    prob_better,
    sign_flip_p_value,
    verdict,
    welch_interval,
)
from segbench.errors import ConfigError
from segbench.registry import did_you_mean

AXES = ("model", "encoder", "loss")
CELL_KEY = ("dataset", *AXES, "seed")
DEFAULT_METRICS = ("miou", "pixel_accuracy", "mdice")
DEFAULT_MARGIN = 0.01
COLUMNS = ["dataset", "axis", "level", "baseline", "metric", "n", "mean_level", "mean_baseline", "delta", "ci_low",
           "ci_high", "p_value", "p_holm", "prob_better", "verdict"]

METHOD_PARAGRAPH = (
    "Each level of a grid axis (model, encoder, loss) is compared with a baseline level of that axis using only cells "
    "that differ on that axis alone: same dataset, same values of the other axes and same seed. Each such pair gives "
    "a difference level - baseline in the metric's unit; delta is their mean and [ci_low, ci_high] its 95 % paired t "
    "interval. p_value comes from an exact sign-flip permutation test of a zero mean difference (all 2^n sign "
    "assignments, no normality assumed), and p_holm is that p adjusted with Holm's step-down method over all rows of "
    "the same dataset and metric. With few pairs small p-values are impossible: the smallest two-sided p is 0.25 "
    "with 3 pairs and about 0.03 with 6, so with 3 seeds read the interval rather than p. prob_better is the fraction "
    "of pairs in which the level beats the baseline, ties counting one half. The verdict is 'better' or 'worse' when "
    "the interval excludes zero and |delta| reaches the margin (0.01 by default, in the metric's unit, e.g. one mIoU "
    "point), 'within noise' when the whole interval lies inside plus or minus the margin, 'inconclusive' otherwise, "
    "and 'one run' with fewer than two pairs. Pairs of top configurations share no cells, so they are compared "
    "unpaired over their seeds: a Welch interval and Welch t-test p, prob_better over all pairs of seeds, and n the "
    "smaller of the two seed counts."
)


def parse_baselines(items: Iterable[str]) -> dict[str, str]:
    """Parse `--baseline AXIS=VALUE` options, e.g. ["loss=ce", "model=unet"], into {axis: value}."""
    baselines: dict[str, str] = {}
    for item in items:
        axis, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not axis or not value:
            raise ConfigError(f"--baseline '{item}' is not AXIS=VALUE; write e.g. loss=ce (axes: {', '.join(AXES)}).")
        if axis not in AXES:
            raise ConfigError(f"--baseline '{item}' names an unknown axis '{axis}'{did_you_mean(axis, list(AXES))}; "
                              f"valid axes: {', '.join(AXES)}.")
        if baselines.get(axis, value) != value:
            raise ConfigError(f"--baseline gives axis {axis} twice ('{baselines[axis]}' and '{value}'); keep one.")
        baselines[axis] = value
    return baselines


def _metrics_present(frame: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """Check the cell key columns and one row per cell; return the requested metrics that the frame has."""
    missing = [column for column in CELL_KEY if column not in frame.columns]
    if missing:
        raise ValueError(f"the cells frame lacks the columns {', '.join(missing)}; it needs {', '.join(CELL_KEY)}.")
    duplicated = frame[frame.duplicated(subset=list(CELL_KEY), keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        cell = ", ".join(f"{column}={first[column]}" for column in CELL_KEY)
        raise ValueError(f"the cells frame has {len(duplicated)} rows for one cell ({cell}); pass one row per cell.")
    return [metric for metric in metrics if metric in frame.columns]


def _ordered_levels(values: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """Values in grid-file order where known, the rest sorted after them."""
    values = set(values)
    known = [value for value in (order or []) if value in values]
    return known + sorted(values - set(known))


def _check_baselines(frame: pd.DataFrame, baselines: Mapping[str, str]) -> None:
    for axis, value in baselines.items():
        if axis not in AXES:
            raise ConfigError(f"--baseline {axis}={value}: '{axis}' is not an axis (axes: {', '.join(AXES)}).")
        available = sorted(frame[axis].astype(str).unique())
        if value not in available:
            raise ConfigError(f"--baseline {axis}={value}: '{value}' is not a value of axis {axis} "
                              f"(values: {', '.join(available)}).")


def _row(dataset: str, axis: str, level: str, baseline: str, metric: str, n: int, mean_level: float,
         mean_baseline: float, interval: tuple[float, float], p_value: float, better_fraction: float, margin: float,
         higher_is_better: bool) -> dict:
    delta = mean_level - mean_baseline
    return {
        "dataset": dataset, "axis": axis, "level": level, "baseline": baseline, "metric": metric, "n": n,
        "mean_level": mean_level, "mean_baseline": mean_baseline, "delta": delta,
        "ci_low": interval[0], "ci_high": interval[1], "p_value": p_value, "p_holm": math.nan,
        "prob_better": better_fraction,
        "verdict": verdict(interval[0], interval[1], delta, n, margin, higher_is_better),
    }


def _finish(rows: list[dict]) -> pd.DataFrame:
    """Rows as a frame with exactly COLUMNS, p_holm adjusted within each (dataset, metric)."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    for _, group in table.groupby(["dataset", "metric"], sort=False):
        table.loc[group.index, "p_holm"] = holm_adjust(group["p_value"].to_numpy(dtype=np.float64))
    return table.astype({"n": "int64"})


def main_effects(frame: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS,
                 baselines: Mapping[str, str] | None = None, axis_order: Mapping[str, Sequence[str]] | None = None,
                 margin: float = DEFAULT_MARGIN, higher_is_better: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """Each level of each axis against that axis's baseline level, over cells paired on everything else.

    Per dataset, every axis with two or more values is compared. The baseline level is `baselines[axis]`, else the
    first value of `axis_order[axis]` (the grid file's order) present in the dataset, else the first sorted value.
    Cells pair when dataset, the other two axes and seed agree; a pair missing a metric (NaN) is left out for that
    metric, and a level with no pairs gives no row. `margin` is in the metric's unit (0.01 = one mIoU point);
    `higher_is_better` maps a metric to its direction (True when absent). Metrics the frame lacks are skipped.
    A baseline on an unknown axis or with a value the axis does not have raises ConfigError.
    """
    metrics = _metrics_present(frame, metrics)
    baselines, axis_order, higher_is_better = baselines or {}, axis_order or {}, higher_is_better or {}
    _check_baselines(frame, baselines)
    rows: list[dict] = []
    for dataset in sorted(frame["dataset"].astype(str).unique()):
        cells = frame[frame["dataset"].astype(str) == dataset]
        for axis in AXES:
            levels = _ordered_levels(cells[axis].astype(str).unique(), axis_order.get(axis))
            if len(levels) < 2:
                continue
            baseline = baselines.get(axis, levels[0])
            if baseline not in levels:  # the chosen baseline was not run on this dataset
                continue
            others = [other for other in AXES if other != axis] + ["seed"]
            baseline_cells = cells[cells[axis].astype(str) == baseline]
            for level in levels:
                if level == baseline:
                    continue
                pairs = cells[cells[axis].astype(str) == level].merge(
                    baseline_cells, on=others, suffixes=("_level", "_baseline"))
                for metric in metrics:
                    level_values = pairs[f"{metric}_level"].to_numpy(dtype=np.float64)
                    baseline_values = pairs[f"{metric}_baseline"].to_numpy(dtype=np.float64)
                    both = ~(np.isnan(level_values) | np.isnan(baseline_values))
                    level_values, baseline_values = level_values[both], baseline_values[both]
                    if level_values.size == 0:
                        continue
                    higher = higher_is_better.get(metric, True)
                    differences = level_values - baseline_values
                    better_fraction = (prob_better(level_values, baseline_values) if higher
                                       else prob_better(baseline_values, level_values))
                    rows.append(_row(dataset, axis, level, baseline, metric, int(level_values.size),
                                     float(level_values.mean()), float(baseline_values.mean()),
                                     paired_t_interval(differences), sign_flip_p_value(differences),
                                     better_fraction, margin, higher))
    return _finish(rows)


def _welch_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Welch t-test p; NaN with fewer than two values on a side, or no variance on both sides (t undefined)."""
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _configuration_values(frame: pd.DataFrame, configuration: tuple) -> pd.DataFrame:
    if len(configuration) != 4:
        raise ConfigError(f"configuration {configuration!r} is not (dataset, model, encoder, loss).")
    mask = np.ones(len(frame), dtype=bool)
    for column, value in zip(("dataset", *AXES), configuration, strict=True):
        mask &= (frame[column].astype(str) == str(value)).to_numpy()
    if not mask.any():
        raise ConfigError(f"configuration {'/'.join(map(str, configuration))} has no finished cells; "
                          "pick configurations from the results (dataset/model/encoder/loss).")
    return frame[mask]


def configuration_pairs(frame: pd.DataFrame, top_configurations: Sequence[tuple],
                        metrics: Sequence[str] = DEFAULT_METRICS, margin: float = DEFAULT_MARGIN,
                        higher_is_better: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """Every pair of the given configurations within one dataset, compared unpaired over their seeds.

    `top_configurations` are (dataset, model, encoder, loss) tuples in rank order; for a pair (i, j) with i ranked
    above j, the level is i and the baseline j, both written "model/encoder/loss", axis "configuration". Per metric:
    Welch interval of mean(level) - mean(baseline), Welch t-test p, prob_better over all (level seed, baseline seed)
    combinations with ties one half, and n = min(seeds of level, seeds of baseline) -- the number that limits the
    comparison, and the one the verdict reads ("one run" when either side has one seed). Missing values (NaN) are
    left out; a side with no values gives no row. p_holm adjusts over the rows of one dataset and metric.
    """
    metrics = _metrics_present(frame, metrics)
    higher_is_better = higher_is_better or {}
    cells = [_configuration_values(frame, tuple(configuration)) for configuration in top_configurations]
    rows: list[dict] = []
    for i, level_cells in enumerate(cells):
        for j in range(i + 1, len(cells)):
            level_config, baseline_config = top_configurations[i], top_configurations[j]
            if str(level_config[0]) != str(baseline_config[0]):
                continue
            baseline_cells = cells[j]
            for metric in metrics:
                level_values = level_cells[metric].dropna().to_numpy(dtype=np.float64)
                baseline_values = baseline_cells[metric].dropna().to_numpy(dtype=np.float64)
                if level_values.size == 0 or baseline_values.size == 0:
                    continue
                higher = higher_is_better.get(metric, True)
                # all (level, baseline) seed combinations, as two aligned arrays
                level_grid = np.repeat(level_values, baseline_values.size)
                baseline_grid = np.tile(baseline_values, level_values.size)
                better_fraction = (prob_better(level_grid, baseline_grid) if higher
                                   else prob_better(baseline_grid, level_grid))
                rows.append(_row(str(level_config[0]), "configuration", "/".join(map(str, level_config[1:])),
                                 "/".join(map(str, baseline_config[1:])), metric,
                                 int(min(level_values.size, baseline_values.size)), float(level_values.mean()),
                                 float(baseline_values.mean()), welch_interval(level_values, baseline_values),
                                 _welch_p_value(level_values, baseline_values), better_fraction, margin, higher))
    return _finish(rows)
