"""Small statistics for comparing benchmark cells over seeds.

All metric values are fractions (mIoU 0.5 = 50 %); differences and intervals are in the metric's raw unit. With 3-5
seeds a bootstrap over seeds is unreliable (3 values have only 10 distinct resamples), so comparisons test the mean
of per-seed differences: a one-sample t-test and its t interval (`t_test`), with an exact sign-flip permutation p as
a second opinion that needs no normality (`sign_flip_p_value`); unpaired configurations get Welch's test
(`welch_test`). Holm's method adjusts a family of p-values, and `verdict` turns one test into one word. The image
bootstrap of one model's mIoU is elsewhere (`segbench.metrics.bootstrap`): it measures evaluation noise, not seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import special

VERDICTS = ("better", "worse", "within margin", "inconclusive", "one run")
EXACT_SIGN_FLIP_MAX_N = 16  # 2**16 = 65536 sign assignments: exact enumeration stays in the milliseconds
MONTE_CARLO_DRAWS = 20_000
MONTE_CARLO_SEED = 0
ROUNDING = 1e-12  # differences this small (relative to values of about 1) are float rounding, not spread
ZERO_SPREAD_NOTE = "zero spread: every seed gives the same non-zero difference, so no interval and no t-test exist"
IDENTICAL_NOTE = "identical results: every difference is exactly 0"
ONE_RUN_NOTE = "one seed: no spread, no test"

ArrayLike = Sequence[float] | np.ndarray


class MeanTest(NamedTuple):
    """A test of "the mean difference is 0" and the matching interval of that difference, in the metric's unit.

    p_value is NaN where the test does not exist (fewer than two values, or zero spread); `note` says why.
    """

    ci_low: float
    ci_high: float
    p_value: float
    note: str = ""


def _as_1d(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _two_sided_quantile(confidence: float, df: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    # special.stdtrit is the Student t quantile behind scipy.stats.t.ppf, without its per-call overhead
    return float(special.stdtrit(df, 0.5 + confidence / 2.0))


def _two_sided_p(statistic: float, df: float) -> float:
    """P(|T| >= |statistic|) for Student's t with df degrees of freedom (scipy.stats.t.sf, as a ufunc)."""
    return float(2.0 * special.stdtr(df, -abs(statistic)))


def t_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Student t interval of the mean of `values` (e.g. one configuration's seeds, or per-seed differences).

    Equals `scipy.stats.ttest_1samp(values, 0).confidence_interval(confidence)`. Fewer than two values give
    (nan, nan); identical values (sample sd 0) give the degenerate interval (v, v), as scipy does.
    """
    v = _as_1d(values)
    n = v.size
    if n < 2:
        return (math.nan, math.nan)
    mean = float(v.mean())
    if no_spread(v):
        return (mean, mean)
    half_width = _two_sided_quantile(confidence, n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
    return (mean - half_width, mean + half_width)


def no_spread(values: ArrayLike) -> bool:
    """All values equal up to float rounding: 0.47 - 0.50 and 0.53 - 0.56 differ in their last bits, and a t
    statistic on that 'spread' would be astronomically large. The seed-aware gate asks the same question."""
    v = _as_1d(values)
    return bool(np.ptp(v) <= ROUNDING * max(1.0, float(np.abs(v).max())))


def _zero_spread(difference: float) -> MeanTest:
    """No spread: identical results (difference 0) give the interval (0, 0); otherwise no interval exists (t would
    be infinite and p 0, a certainty that nothing in the data supports)."""
    if abs(difference) <= ROUNDING:
        return MeanTest(0.0, 0.0, math.nan, IDENTICAL_NOTE)
    return MeanTest(math.nan, math.nan, math.nan, ZERO_SPREAD_NOTE)


def t_test(differences: ArrayLike, confidence: float = 0.95) -> MeanTest:
    """One-sample t-test of "mean difference = 0" and the t interval of the mean, from one value per seed.

    Equals `scipy.stats.ttest_1samp(differences, 0)` (two-sided p) and its `confidence_interval(confidence)`, so
    p < 1 - confidence exactly when the interval excludes 0. Fewer than two values (or a NaN among them) give no
    test; zero spread gives no test and no interval unless every difference is 0 (then the interval (0, 0)): scipy
    would return p = 0 for a constant non-zero difference, which two identical seeds cannot support.
    """
    d = _as_1d(differences)
    if d.size < 2 or np.isnan(d).any():
        return MeanTest(math.nan, math.nan, math.nan, ONE_RUN_NOTE if d.size == 1 else "")
    if no_spread(d):
        return _zero_spread(float(d.mean()))
    low, high = t_interval(d, confidence)
    statistic = float(d.mean()) / (float(d.std(ddof=1)) / math.sqrt(d.size))
    return MeanTest(low, high, _two_sided_p(statistic, d.size - 1))


def _welch_parts(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) - mean(b), its standard error and the Welch-Satterthwaite degrees of freedom (NaN when se is 0)."""
    difference = float(a.mean() - b.mean())
    var_a, var_b = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    if var_a + var_b == 0:
        return difference, 0.0, math.nan
    df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    return difference, math.sqrt(var_a + var_b), df


def welch_interval(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Welch interval of mean(a) - mean(b) for two unpaired samples (unequal variances), in the metric's unit.

    Equals `scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)`. Fewer than two values on
    either side give (nan, nan); zero variance on both sides collapses the interval to the difference of the means.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.size < 2 or b.size < 2:
        return (math.nan, math.nan)
    difference, standard_error, df = _welch_parts(a, b)
    if standard_error == 0:
        return (difference, difference)
    half_width = _two_sided_quantile(confidence, df) * standard_error
    return (difference - half_width, difference + half_width)


def welch_test(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> MeanTest:
    """Welch's t-test of "mean(a) = mean(b)" for two unpaired samples and the matching Welch interval.

    Equals `scipy.stats.ttest_ind(a, b, equal_var=False)` (two-sided p) and its `confidence_interval(confidence)`.
    Fewer than two values on a side (or a NaN) give no test; zero spread on both sides gives no test and no
    interval unless both sides hold the same single value (then the interval (0, 0)), as in `t_test`.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.size < 2 or b.size < 2 or np.isnan(a).any() or np.isnan(b).any():
        return MeanTest(math.nan, math.nan, math.nan, ONE_RUN_NOTE if min(a.size, b.size) == 1 else "")
    if no_spread(a) and no_spread(b):
        return _zero_spread(float(a.mean() - b.mean()))
    low, high = welch_interval(a, b, confidence)
    difference, standard_error, df = _welch_parts(a, b)
    return MeanTest(low, high, _two_sided_p(difference / standard_error, df))


def sign_flip_p_value(differences: ArrayLike) -> float:
    """Two-sided sign-flip permutation p-value for "the mean difference is 0" (one difference per seed).

    Under the null each difference is as likely to have either sign. For n <= 16 all 2**n sign assignments are
    enumerated and p is the fraction whose |mean| reaches the observed |mean| (ties within 100 machine epsilons,
    as scipy does); this equals `scipy.stats.permutation_test((d,), np.mean, permutation_type='samples',
    n_resamples=np.inf).pvalue`. For n > 16 it is a Monte-Carlo estimate from 20000 random sign assignments drawn
    with a fixed seed (0), p = (hits + 1) / (draws + 1). With n values the smallest exact p is 2 / 2**n: 0.25 for 3
    seeds, 0.125 for 4, 0.0625 for 5, 0.03 for 6. No differences (or a NaN among them) give nan; all-zero
    differences give 1.0.
    """
    d = _as_1d(differences)
    n = d.size
    if n == 0 or np.isnan(d).any():
        return math.nan
    observed = abs(float(d.mean()))
    tolerance = observed * np.finfo(np.float64).eps * 100
    if n <= EXACT_SIGN_FLIP_MAX_N:
        assignment = np.arange(2**n, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((assignment >> np.arange(n)) & 1)
        null_means = np.abs(signs @ d / n)
        return float(np.mean(null_means >= observed - tolerance))
    rng = np.random.default_rng(MONTE_CARLO_SEED)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(MONTE_CARLO_DRAWS, n))
    hits = int(np.sum(np.abs(signs @ d / n) >= observed - tolerance))
    return (hits + 1) / (MONTE_CARLO_DRAWS + 1)


def holm_adjust(p_values: ArrayLike) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    The k-th smallest of m p-values becomes max over j <= k of min(1, (m - j + 1) * p_(j)), so adjusted values keep
    the order of the raw ones and never exceed 1. NaN entries stay NaN and do not count towards m.
    """
    p = _as_1d(p_values)
    adjusted = np.full(p.size, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return adjusted.tolist()
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def prob_better(level_values: ArrayLike, baseline_values: ArrayLike) -> float:
    """Fraction of pairs (same position in both arrays) where the level's value exceeds the baseline's; ties count
    one half. NaN for no pairs. Raises ValueError when the arrays differ in length."""
    level, baseline = _as_1d(level_values), _as_1d(baseline_values)
    if level.size != baseline.size:
        raise ValueError(f"prob_better needs paired arrays, got {level.size} and {baseline.size} values.")
    if level.size == 0:
        return math.nan
    return float(np.mean((level > baseline) + 0.5 * (level == baseline)))


def share_better(differences: ArrayLike, higher_is_better: bool = True) -> float:
    """Fraction of differences (level - baseline, e.g. one per seed) that favour the level in the metric's direction
    (positive when higher is better, negative otherwise); a zero counts one half. NaN for none."""
    d = _as_1d(differences)
    return prob_better(d, np.zeros_like(d)) if higher_is_better else prob_better(np.zeros_like(d), d)


def verdict(delta: float, ci_low: float, ci_high: float, p_holm: float, n: int, margin: float,
            alpha: float = 0.05, higher_is_better: bool = True) -> str:
    """One word for a comparison, from one test: its Holm-adjusted p, its (1 - alpha) interval of level - baseline,
    and a practical margin, all differences in the metric's unit.

    - "one run": n < 2 (seeds; for unpaired configurations, the smaller side);
    - "better" / "worse": p_holm < alpha and |delta| >= margin (the interval then excludes 0 as well); better when
      delta points in the metric's good direction (up when higher is better, down otherwise);
    - "within margin": the whole interval lies inside [-margin, +margin] (identical results: the interval (0, 0));
    - "inconclusive": anything else, including no interval (zero spread with a non-zero delta).
    """
    if n < 2:
        return "one run"
    if p_holm < alpha and abs(delta) >= margin:  # False for a NaN p_holm
        return "better" if (delta > 0) == higher_is_better else "worse"
    if -margin <= ci_low and ci_high <= margin:  # False for a NaN bound
        return "within margin"
    return "inconclusive"


def seed_summary(values: ArrayLike, confidence: float = 0.95) -> dict:
    """n, mean, sample standard deviation (ddof=1; NaN for n < 2) and the t interval of the mean (`ci_low`,
    `ci_high`: mean +- t(n-1) x sd / sqrt(n), NaN for n < 2) of one configuration's values over seeds, in the
    metric's unit, plus the values themselves. Missing values (NaN) are left out and not counted."""
    finite = _as_1d(values)
    finite = finite[~np.isnan(finite)]
    n = int(finite.size)
    ci_low, ci_high = t_interval(finite, confidence)
    return {
        "n": n,
        "mean": float(finite.mean()) if n else math.nan,
        "sd": float(finite.std(ddof=1)) if n >= 2 else math.nan,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "values": finite.tolist(),
    }
