"""Small statistics for comparing benchmark cells over seeds and for the evaluation noise of one model.

All metric values are fractions (mIoU 0.5 = 50 %); differences and intervals are in the metric's raw unit. With 3-5
seeds a bootstrap over seeds is unreliable (3 values have only 10 distinct resamples), so comparisons use paired
differences: a t interval of their mean and an exact sign-flip permutation p-value, which needs no normality. The
image bootstrap (`bootstrap_miou_interval`) measures something else: how much one trained model's mIoU moves when
the validation images are resampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

VERDICTS = ("better", "worse", "within noise", "inconclusive", "one run")
EXACT_SIGN_FLIP_MAX_N = 16  # 2**16 = 65536 sign assignments: exact enumeration stays in the milliseconds
MONTE_CARLO_DRAWS = 20_000
MONTE_CARLO_SEED = 0

ArrayLike = Sequence[float] | np.ndarray


def _as_1d(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _two_sided_quantile(confidence: float, df: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    return float(stats.t.ppf(0.5 + confidence / 2.0, df))


def paired_t_interval(differences: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Student t interval of the mean of paired differences (level - baseline, in the metric's unit).

    Equals `scipy.stats.ttest_1samp(differences, 0).confidence_interval(confidence)`. Fewer than two differences give
    (nan, nan); identical differences (sample sd 0) give the degenerate interval (d, d).
    """
    d = _as_1d(differences)
    n = d.size
    if n < 2:
        return (math.nan, math.nan)
    mean = float(d.mean())
    if np.ptp(d) == 0:
        return (mean, mean)
    half_width = _two_sided_quantile(confidence, n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return (mean - half_width, mean + half_width)


def welch_interval(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Welch interval of mean(a) - mean(b) for two unpaired samples (unequal variances), in the metric's unit.

    Equals `scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)`. Fewer than two values on
    either side give (nan, nan); zero variance on both sides collapses the interval to the difference of the means.
    """
    a, b = _as_1d(a), _as_1d(b)
    if a.size < 2 or b.size < 2:
        return (math.nan, math.nan)
    difference = float(a.mean() - b.mean())
    var_a, var_b = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    if var_a + var_b == 0:
        return (difference, difference)
    # Welch-Satterthwaite degrees of freedom
    df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    half_width = _two_sided_quantile(confidence, df) * math.sqrt(var_a + var_b)
    return (difference - half_width, difference + half_width)


def sign_flip_p_value(differences: ArrayLike) -> float:
    """Two-sided sign-flip permutation p-value for "the mean paired difference is 0".

    Under the null each difference is as likely to have either sign. For n <= 16 all 2**n sign assignments are
    enumerated and p is the fraction whose |mean| reaches the observed |mean| (ties within 100 machine epsilons,
    as scipy does); this equals `scipy.stats.permutation_test((d,), np.mean, permutation_type='samples',
    n_resamples=np.inf).pvalue`. For n > 16 it is a Monte-Carlo estimate from 20000 random sign assignments drawn
    with a fixed seed (0), p = (hits + 1) / (draws + 1). With n pairs the smallest exact p is 2 / 2**n: 0.25 for 3
    pairs, 0.03 for 6. No differences (or a NaN among them) give nan; all-zero differences give 1.0.
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


def verdict(ci_low: float, ci_high: float, mean_difference: float, n_pairs: int, margin: float,
            higher_is_better: bool = True) -> str:
    """One word for a comparison, from the interval of level - baseline and a margin in the metric's unit.

    - "one run": fewer than two pairs (seeds), or the interval is undefined;
    - "better" / "worse": the interval excludes 0 and |mean difference| >= margin; better when the difference points
      in the good direction (up when higher is better, down otherwise);
    - "within noise": the whole interval lies inside [-margin, +margin];
    - "inconclusive": anything else (the interval is too wide to tell, or straddles the margin).
    """
    if n_pairs < 2 or any(math.isnan(x) for x in (ci_low, ci_high, mean_difference)):
        return "one run"
    if (ci_low > 0 or ci_high < 0) and abs(mean_difference) >= margin:
        return "better" if (mean_difference > 0) == higher_is_better else "worse"
    if -margin <= ci_low and ci_high <= margin:
        return "within noise"
    return "inconclusive"


def seed_summary(values: ArrayLike, confidence: float = 0.95) -> dict:
    """n, mean, sample standard deviation (ddof=1; NaN for n < 2) and the t interval of the mean (`ci_low`,
    `ci_high`: mean +- t(n-1) x sd / sqrt(n), NaN for n < 2) of one configuration's values over seeds, in the
    metric's unit, plus the values themselves. Missing values (NaN) are left out and not counted."""
    finite = _as_1d(values)
    finite = finite[~np.isnan(finite)]
    n = int(finite.size)
    # the paired t interval of a sample of differences is the one-sample t interval of its mean: the same formula
    ci_low, ci_high = paired_t_interval(finite, confidence)
    return {
        "n": n,
        "mean": float(finite.mean()) if n else math.nan,
        "sd": float(finite.std(ddof=1)) if n >= 2 else math.nan,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "values": finite.tolist(),
    }


def prediction_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Where one more seed of the same configuration would fall: mean +- t(n-1) x sd x sqrt(1 + 1/n), in the
    metric's unit (the Student t prediction interval for a new observation from the same normal population).

    Wider than the interval of the mean by sqrt(n + 1): it holds the seed-to-seed spread itself, not only the
    uncertainty of the mean. Fewer than two values give (nan, nan); identical values give (v, v).
    """
    v = _as_1d(values)
    n = v.size
    if n < 2 or np.isnan(v).any():
        return (math.nan, math.nan)
    mean = float(v.mean())
    half_width = _two_sided_quantile(confidence, n - 1) * float(v.std(ddof=1)) * math.sqrt(1.0 + 1.0 / n)
    return (mean - half_width, mean + half_width)
