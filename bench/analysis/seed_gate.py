"""The gate's test for a configuration with several seeds: has its mean moved in the regression direction by more
than noise?

A checked field of a configuration with two or more seeds on both sides fails when the change of its mean passes the
check's threshold AND a one-sided test in the regression direction gives p < ALPHA: a paired t-test on the per-seed
differences when both sides ran the same seeds (a seed fixes the initial weights and the data order, so seed s of the
baseline and seed s of the current run share them and their difference is the cleanest measure of the change), a
Welch t-test on the two sides' values otherwise. Where the differences (paired) or both sides (Welch) have no spread,
no test exists and the threshold alone decides (an unchanged rerun on one machine gives identical values per seed).
docs/report.md ("Seeds in the gate") gives the reasoning and the power measured by `simulated_power`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from segbench.analysis.statistics import no_spread

ALPHA = 0.05  # one-sided level of the gate's test


@dataclass(frozen=True)
class SeedTest:
    """The outcome of one configuration's test. p: one-sided p-value in the regression direction, None when no
    test exists (zero spread). method: "paired t-test" or "Welch t-test"."""

    method: str
    n_base: int
    n_current: int
    p: float | None

    @property
    def significant(self) -> bool:
        """Whether the test says the move is beyond noise; with no test (no spread) the threshold alone decides."""
        return self.p is None or self.p < ALPHA

    @property
    def text(self) -> str:
        if self.method == "paired t-test":
            seeds = f"over {self.n_base} seeds"
        else:
            seeds = f"over {self.n_base} baseline and {self.n_current} current seeds"
        if self.p is None:
            spread = "per-seed differences" if self.method == "paired t-test" else "values of either side"
            return f"no spread in the {spread} {seeds}, so the threshold alone decides"
        relation = "<" if self.p < ALPHA else ">="
        return f"one-sided {self.method} {seeds}: p = {self.p:.4f} {relation} {ALPHA:g}"


def seed_test(base: list[float], current: list[float], direction: int, paired: bool) -> SeedTest:
    """Test whether `current` moved from `base` in `direction` (+1: a rise is the regression, -1 a drop).

    paired: base[i] and current[i] come from the same seed (equal lengths). Needs two or more values a side.
    """
    old = np.asarray(base, dtype=np.float64) * direction  # towards the regression is upwards
    new = np.asarray(current, dtype=np.float64) * direction
    if paired:
        differences = new - old
        if no_spread(differences):
            return SeedTest("paired t-test", len(old), len(new), None)
        p = stats.ttest_1samp(differences, 0.0, alternative="greater").pvalue
        return SeedTest("paired t-test", len(old), len(new), float(p))
    if no_spread(old) and no_spread(new):
        return SeedTest("Welch t-test", len(old), len(new), None)
    p = stats.ttest_ind(new, old, equal_var=False, alternative="greater").pvalue
    return SeedTest("Welch t-test", len(old), len(new), float(p))


def simulated_power(drop_sd: float, threshold_sd: float, seeds: int = 3, correlation: float = 0.0,
                    paired: bool = True, draws: int = 4000, seed: int = 0) -> float:
    """The share of `draws` simulated comparisons the gate fails: `seeds` baseline values ~ N(0, 1) and as many
    current values ~ N(-drop_sd, 1), seed s of both sides correlated by `correlation`, checked for a drop beyond
    `threshold_sd` (all in seed standard deviations). drop_sd 0 gives the false-alarm rate.

    The t statistics of `seed_test` are computed for all draws at once (tests check they give its p-values).
    """
    base, current = simulated_seeds(drop_sd, seeds, correlation, draws, seed)
    beyond = (base.mean(axis=1) - current.mean(axis=1)) > threshold_sd
    return float(np.mean(beyond & (simulated_p_values(base, current, paired) < ALPHA)))


def simulated_seeds(drop_sd: float, seeds: int, correlation: float, draws: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(baseline, current) values, each of shape (draws, seeds), as `simulated_power` describes."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((draws, seeds))
    own = rng.standard_normal((draws, seeds))
    return base, correlation * base + np.sqrt(1 - correlation**2) * own - drop_sd


def simulated_p_values(base: np.ndarray, current: np.ndarray, paired: bool) -> np.ndarray:
    """`seed_test`'s one-sided p-values for a drop, row by row of (draws, seeds) arrays (continuous draws always
    have a spread)."""
    if paired:
        differences = base - current  # a drop is positive
        n = differences.shape[1]
        t = differences.mean(axis=1) / (differences.std(axis=1, ddof=1) / np.sqrt(n))
        return stats.t.sf(t, n - 1)
    n_base, n_current = base.shape[1], current.shape[1]
    var_base, var_current = base.var(axis=1, ddof=1) / n_base, current.var(axis=1, ddof=1) / n_current
    t = (base.mean(axis=1) - current.mean(axis=1)) / np.sqrt(var_base + var_current)
    df = (var_base + var_current) ** 2 / (var_base**2 / (n_base - 1) + var_current**2 / (n_current - 1))
    return stats.t.sf(t, df)
