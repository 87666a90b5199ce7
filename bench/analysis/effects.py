"""Comparisons over seeds: main effects of one grid axis, the same effects within each combination of the other
axes (conditional effects), and pairs of top configurations; each row with a test, Holm's adjustment and a verdict.

Input is a frame with one row per finished cell: `dataset, model, encoder, loss, seed` and metric columns (fractions,
NaN where missing). Output is a frame with exactly `COLUMNS`, ready to be written as CSV. The unit of replication is
the seed: cells run with the same seed share their initial weights and data order (`seed_everything(cell.seed)`), so
their differences are correlated, and a level is compared with its baseline through one difference per seed
(`seed_differences`). The method is described for readers of a report in `METHOD_PARAGRAPH`, `verdict_rule` and
`pairs_paragraph`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.analysis.statistics import (
    MeanTest,
    holm_adjust,
    prob_better,
    share_better,
    sign_flip_p_value,
    t_test,
    verdict,
    welch_test,
)
from segbench.errors import ConfigError
from segbench.registry import did_you_mean

AXES = ("model", "encoder", "loss")
CELL_KEY = ("dataset", *AXES, "seed")
DEFAULT_METRICS = ("miou", "pixel_accuracy", "mdice")
DEFAULT_MARGIN = 0.01
DEFAULT_ALPHA = 0.05
ALL_SCOPE = "all"
CONFIGURATION_AXIS = "configuration"
COLUMNS = ["dataset", "axis", "level", "baseline", "scope", "metric", "n", "mean_level", "mean_baseline", "delta",
           "ci_low", "ci_high", "p_value", "p_signflip", "p_holm", "prob_better", "verdict", "note"]
# Holm families: the rows adjusted together (rows without a p-value, such as one-run rows, do not count)
MAIN_FAMILY = ("dataset", "metric")
CONDITIONAL_FAMILY = ("dataset", "metric", "axis")
PAIRS_FAMILY = ("dataset", "metric")

METHOD_PARAGRAPH = (
    "Each level of a grid axis (model, encoder, loss) is compared with a baseline level of that axis on one dataset, "
    "using only cells that differ on that axis alone. The unit of replication is the seed: cells run with the same "
    "seed share their initial weights and data order, so their differences are correlated, and treating every cell "
    "pair as independent makes intervals too narrow (simulated with 2 combinations of the other axes x 3 seeds and "
    "no true effect, a nominal 95 % interval over the 6 pairs held the true 0 in 83 % of 20 000 draws at a within-seed "
    "correlation of 0.8, the interval over seeds below in 95 %). So for each seed s, d_s is the mean, over the "
    "combinations of the other axes that have both the level and the baseline at seed s, of level - baseline in the "
    "metric's unit, and n is the number of seeds with such a pair. delta is the mean of the d_s, [ci_low, ci_high] "
    "its t interval with n - 1 degrees of freedom (as scipy.stats.ttest_1samp(d).confidence_interval), and p the "
    "two-sided one-sample t-test of a zero mean on the same d_s, so p < alpha exactly when the interval excludes 0. "
    "p_signflip is the exact sign-flip permutation p of the d_s (all 2^n sign assignments, no normality assumed), "
    "shown as a check on the t-test; it cannot go below 2/2^n: 0.25 with 3 seeds, 0.125 with 4, 0.0625 with 5, so "
    "with fewer than 6 seeds it never reaches 0.05. Before issue 19 (CHANGELOG.md) p_value held that sign-flip p, "
    "computed over cell pairs. p_holm is p adjusted with Holm's step-down method within its family: main effects "
    "per dataset and metric, conditional effects per dataset, metric and axis, configuration pairs per dataset and "
    "metric. prob_better is the fraction of seeds whose d_s favours the level in the metric's own direction (higher "
    "mIoU; lower for a loss or a calibration error), ties counting one half. mean_level and mean_baseline are the "
    "per-seed means of the paired cells, averaged over seeds. Conditional effects repeat the comparison within each "
    "combination of the other axes (scope), one cell pair per seed, so an interaction is visible: a loss that helps "
    "one model and not another shows as two different rows, while its main effect averages them."
)


def verdict_rule(margin: float, alpha: float) -> str:
    """The verdict rule in one paragraph, with the margin (metric's unit) and alpha the report used."""
    confidence = f"{(1 - alpha) * 100:g} %"
    return (
        f"Verdicts follow one test, the one shown (p_holm), with alpha = {alpha:g} and a margin of {margin:g} in "
        f"the metric's unit ({margin * 100:g} on the % scale of the tables); intervals are {confidence} intervals. "
        f"'better' / 'worse' (in the metric's direction) when p_holm < {alpha:g} and |delta| >= {margin:g} (the "
        f"interval then excludes 0 as well); 'within margin' when the whole interval lies inside "
        f"[-{margin:g}, +{margin:g}], identical results (every difference exactly 0) included; 'one run' when "
        "n < 2, with no p and no p_holm, not counted in any Holm family; 'inconclusive' otherwise, which includes a "
        "zero spread with a non-zero delta: no interval exists then, and the note says so."
    )


def pairs_paragraph(top: int, configurations: int) -> str:
    """How the top configurations are compared: Welch, post hoc, Holm over all K(K-1)/2 pairs."""
    pairs = top * (top - 1) // 2
    return (
        f"The top K = {top} of {configurations} configurations by mean mIoU over seeds, each against every "
        "lower-ranked one (level = the higher-ranked). Post hoc: the top configurations were chosen on these same "
        "seeds, so the higher-ranked side is favoured by construction; read these rows as a ranking check, not as "
        "tests planned in advance. Unpaired over seeds: Welch interval and Welch t-test p (no p_signflip), n = "
        "seeds of the smaller side, prob_better over every (level seed, baseline seed) combination, ties one half. "
        f"p_holm adjusts over all K(K-1)/2 = {pairs} pairs of a dataset and metric (those with a p), and the "
        "verdict follows the rule above."
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


def _pvalue_or_nan(n: int, p: float) -> float:
    return p if n >= 2 else math.nan


def _finish(rows: list[dict], family: Sequence[str], margin: float, alpha: float,
            higher_is_better: Mapping[str, bool]) -> pd.DataFrame:
    """Rows as a frame with exactly COLUMNS: p_holm within each `family`, then the verdict from it."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    for _, group in table.groupby(list(family), sort=False):
        table.loc[group.index, "p_holm"] = holm_adjust(group["p_value"].to_numpy(dtype=np.float64))
    table["verdict"] = [
        verdict(row.delta, row.ci_low, row.ci_high, row.p_holm, row.n, margin, alpha,
                higher_is_better.get(row.metric, True))
        for row in table.itertuples(index=False)]
    return table.astype({"n": "int64"})


@dataclass(frozen=True)
class _Contrast:
    """A level and its baseline on one dataset, with every pair of cells that differ on the axis alone."""

    dataset: str
    axis: str
    level: str
    baseline: str
    pairs: pd.DataFrame  # other axes, seed, <metric>_level, <metric>_baseline: one row per matched pair of cells
    varying: tuple[str, ...]  # the other axes with two or more values on this dataset
    orders: dict[str, list[str]]  # their values in grid order


def _contrasts(frame: pd.DataFrame, baselines: Mapping[str, str],
               axis_order: Mapping[str, Sequence[str]]) -> Iterator[_Contrast]:
    """Per dataset and axis with two or more values, each level against the baseline level, in grid order."""
    for dataset in sorted(frame["dataset"].astype(str).unique()):
        cells = frame[frame["dataset"].astype(str) == dataset]
        orders = {axis: _ordered_levels(cells[axis].astype(str).unique(), axis_order.get(axis)) for axis in AXES}
        for axis in AXES:
            levels = orders[axis]
            if len(levels) < 2:
                continue
            baseline = baselines.get(axis, levels[0])
            if baseline not in levels:  # the chosen baseline was not run on this dataset
                continue
            others = [other for other in AXES if other != axis]
            varying = tuple(other for other in others if len(orders[other]) > 1)
            baseline_cells = cells[cells[axis].astype(str) == baseline]
            for level in levels:
                if level == baseline:
                    continue
                pairs = cells[cells[axis].astype(str) == level].merge(
                    baseline_cells, on=[*others, "seed"], suffixes=("_level", "_baseline"))
                yield _Contrast(dataset, axis, level, baseline, pairs, varying,
                                {other: orders[other] for other in varying})


def seed_differences(pairs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per seed (the index, ascending) from matched pairs of cells (`seed`, `<metric>_level`,
    `<metric>_baseline`): `level` and `baseline`, the means of that seed's paired cells, `difference`, d_s = the
    mean of its level - baseline differences, and `combinations`, how many pairs it averages. Pairs missing the
    metric (NaN on either side) are left out; a seed left without pairs has no row."""
    level, baseline = pairs[f"{metric}_level"].astype("float64"), pairs[f"{metric}_baseline"].astype("float64")
    both = level.notna() & baseline.notna()
    paired = pd.DataFrame({"seed": pairs.loc[both, "seed"], "level": level[both], "baseline": baseline[both],
                           "difference": (level - baseline)[both]})
    grouped = paired.groupby("seed", sort=True)
    per_seed = grouped[["level", "baseline", "difference"]].mean()
    per_seed["combinations"] = grouped.size()
    return per_seed


def _coverage_note(contrast: _Contrast, metric: str) -> str:
    """Which combinations of the other axes a main effect rests on, when some combination has cell pairs but none
    with the metric on both sides (a metric carried by some cells only, e.g. a further dataset evaluated for one
    model); "" when every combination with pairs contributes."""
    if not contrast.varying:
        return ""
    pairs = contrast.pairs
    both = pairs[f"{metric}_level"].notna() & pairs[f"{metric}_baseline"].notna()
    combinations = pairs[list(contrast.varying)].astype(str).drop_duplicates()
    carried = pairs.loc[both, list(contrast.varying)].astype(str).drop_duplicates()
    if len(carried) == len(combinations):
        return ""
    names = "; ".join(", ".join(f"{axis}={value}" for axis, value in zip(contrast.varying, row, strict=True))
                      for row in carried.itertuples(index=False))
    return f"only {len(carried)} of {len(combinations)} combinations of the other axes carry {metric}: {names}"


def _effect_row(contrast: _Contrast, scope: str, metric: str, per_seed: pd.DataFrame, alpha: float,
                higher: bool) -> dict:
    differences = per_seed["difference"].to_numpy(dtype=np.float64)
    n = int(differences.size)
    test = t_test(differences, 1.0 - alpha)
    notes = [test.note, _coverage_note(contrast, metric) if scope == ALL_SCOPE else ""]
    counts = per_seed["combinations"]
    if counts.nunique() > 1:
        notes.append(f"unbalanced: a seed's d_s averages {counts.min()} to {counts.max()} combinations")
    return {
        "dataset": contrast.dataset, "axis": contrast.axis, "level": contrast.level, "baseline": contrast.baseline,
        "scope": scope, "metric": metric, "n": n, "mean_level": float(per_seed["level"].mean()),
        "mean_baseline": float(per_seed["baseline"].mean()), "delta": float(differences.mean()),
        "ci_low": test.ci_low, "ci_high": test.ci_high, "p_value": test.p_value,
        "p_signflip": _pvalue_or_nan(n, sign_flip_p_value(differences)), "p_holm": math.nan,
        "prob_better": share_better(differences, higher), "verdict": "", "note": "; ".join(filter(None, notes)),
    }


def main_effects(frame: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS,
                 baselines: Mapping[str, str] | None = None, axis_order: Mapping[str, Sequence[str]] | None = None,
                 margin: float = DEFAULT_MARGIN, higher_is_better: Mapping[str, bool] | None = None,
                 alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """Each level of each axis against that axis's baseline level, over seeds (scope "all").

    Per dataset, every axis with two or more values is compared. The baseline level is `baselines[axis]`, else the
    first value of `axis_order[axis]` (the grid file's order) present in the dataset, else the first sorted value.
    Cells pair when dataset, the other two axes and seed agree; per seed the paired differences are averaged into
    one d_s (`seed_differences`), and the t-test, its (1 - alpha) interval, the sign-flip p and prob_better are
    computed on the d_s (n = seeds). A level with no pairs gives no row. p_holm adjusts over the rows of one dataset
    and metric. `margin` is in the metric's unit (0.01 = one mIoU point); `higher_is_better` maps a metric to its
    direction (True when absent). Metrics the frame lacks are skipped. A baseline on an unknown axis or with a value
    the axis does not have raises ConfigError.
    """
    metrics = _metrics_present(frame, metrics)
    baselines, higher_is_better = baselines or {}, higher_is_better or {}
    _check_baselines(frame, baselines)
    rows = []
    for contrast in _contrasts(frame, baselines, axis_order or {}):
        for metric in metrics:
            per_seed = seed_differences(contrast.pairs, metric)
            if not per_seed.empty:
                rows.append(_effect_row(contrast, ALL_SCOPE, metric, per_seed, alpha,
                                        higher_is_better.get(metric, True)))
    return _finish(rows, MAIN_FAMILY, margin, alpha, higher_is_better)


def conditional_effects(frame: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS,
                        baselines: Mapping[str, str] | None = None,
                        axis_order: Mapping[str, Sequence[str]] | None = None, margin: float = DEFAULT_MARGIN,
                        higher_is_better: Mapping[str, bool] | None = None,
                        alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """The main effects within each combination of the other axes: one cell pair per seed, n = seeds.

    `scope` names the combination by the other axes that vary on the dataset, e.g. "model=unet" or "model=fpn,
    encoder=resnet18"; an axis whose other axes do not vary has one combination, its main effect, and no rows here.
    Combinations come in grid order. p_holm adjusts over the rows of one dataset, metric and axis. Arguments as in
    `main_effects`.
    """
    metrics = _metrics_present(frame, metrics)
    baselines, higher_is_better = baselines or {}, higher_is_better or {}
    _check_baselines(frame, baselines)
    rows = []
    for contrast in _contrasts(frame, baselines, axis_order or {}):
        if not contrast.varying:
            continue
        keys = contrast.pairs[list(contrast.varying)].astype(str)
        for combination in itertools.product(*(contrast.orders[axis] for axis in contrast.varying)):
            inside = (keys == list(combination)).all(axis=1)
            if not inside.any():
                continue
            scope = ", ".join(f"{axis}={value}" for axis, value in zip(contrast.varying, combination, strict=True))
            for metric in metrics:
                per_seed = seed_differences(contrast.pairs[inside], metric)
                if not per_seed.empty:
                    rows.append(_effect_row(contrast, scope, metric, per_seed, alpha,
                                            higher_is_better.get(metric, True)))
    return _finish(rows, CONDITIONAL_FAMILY, margin, alpha, higher_is_better)


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


def _pair_row(dataset: str, level: str, baseline: str, metric: str, level_values: np.ndarray,
              baseline_values: np.ndarray, test: MeanTest, higher: bool) -> dict:
    # all (level seed, baseline seed) combinations, as two aligned arrays
    level_grid = np.repeat(level_values, baseline_values.size)
    baseline_grid = np.tile(baseline_values, level_values.size)
    return {
        "dataset": dataset, "axis": CONFIGURATION_AXIS, "level": level, "baseline": baseline, "scope": ALL_SCOPE,
        "metric": metric, "n": int(min(level_values.size, baseline_values.size)),
        "mean_level": float(level_values.mean()), "mean_baseline": float(baseline_values.mean()),
        "delta": float(level_values.mean() - baseline_values.mean()), "ci_low": test.ci_low,
        "ci_high": test.ci_high, "p_value": test.p_value, "p_signflip": math.nan, "p_holm": math.nan,
        "prob_better": (prob_better(level_grid, baseline_grid) if higher
                        else prob_better(baseline_grid, level_grid)),
        "verdict": "", "note": test.note,
    }


def configuration_pairs(frame: pd.DataFrame, top_configurations: Sequence[tuple],
                        metrics: Sequence[str] = DEFAULT_METRICS, margin: float = DEFAULT_MARGIN,
                        higher_is_better: Mapping[str, bool] | None = None,
                        alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """Every pair of the given configurations within one dataset, compared unpaired over their seeds.

    `top_configurations` are (dataset, model, encoder, loss) tuples in rank order; for a pair (i, j) with i ranked
    above j, the level is i and the baseline j, both written "model/encoder/loss", axis "configuration", scope
    "all". Per metric: Welch's t-test p and its (1 - alpha) interval of mean(level) - mean(baseline), no sign-flip
    p (nothing is paired), prob_better over all (level seed, baseline seed) combinations with ties one half, and
    n = min(seeds of level, seeds of baseline): the number that limits the comparison, and the one the verdict
    reads ("one run" when either side has one seed). Missing values (NaN) are left out; a side with no values gives
    no row. p_holm adjusts over all the pairs of one dataset and metric: K(K-1)/2 for K configurations.
    """
    metrics = _metrics_present(frame, metrics)
    higher_is_better = higher_is_better or {}
    cells = [_configuration_values(frame, tuple(configuration)) for configuration in top_configurations]
    rows = []
    for (i, level_config), (j, baseline_config) in itertools.combinations(enumerate(top_configurations), 2):
        if str(level_config[0]) != str(baseline_config[0]):
            continue
        for metric in metrics:
            level_values = cells[i][metric].dropna().to_numpy(dtype=np.float64)
            baseline_values = cells[j][metric].dropna().to_numpy(dtype=np.float64)
            if level_values.size == 0 or baseline_values.size == 0:
                continue
            rows.append(_pair_row(str(level_config[0]), "/".join(map(str, level_config[1:])),
                                  "/".join(map(str, baseline_config[1:])), metric, level_values, baseline_values,
                                  welch_test(level_values, baseline_values, 1.0 - alpha),
                                  higher_is_better.get(metric, True)))
    return _finish(rows, PAIRS_FAMILY, margin, alpha, higher_is_better)
