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


def _check_counts(intersections: np.ndarray, unions: np.ndarray) -> None:
    if intersections.ndim != 2 or intersections.shape != unions.shape:
        raise ValueError("intersections and unions must both have shape (n_images, n_classes), got "
                         f"{intersections.shape} and {unions.shape}.")


def _miou_from_pooled(pooled_intersections: np.ndarray, pooled_unions: np.ndarray) -> np.ndarray:
    """mIoU over the last axis, counting only classes whose pooled union is positive; NaN where there is none."""
    present = pooled_unions > 0
    iou = np.divide(pooled_intersections, pooled_unions, out=np.zeros(pooled_unions.shape), where=present)
    n_present = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, iou.sum(axis=-1) / n_present, np.nan)


def pooled_miou(intersections: np.ndarray, unions: np.ndarray) -> float:
    """mIoU (fraction) from per-image per-class pixel counts, shape (n_images, n_classes): sum the counts over the
    images, then average I / U over the classes whose pooled union is positive (absent classes are left out)."""
    intersections, unions = np.asarray(intersections), np.asarray(unions)
    _check_counts(intersections, unions)
    pooled = _miou_from_pooled(intersections.sum(axis=0, dtype=np.float64), unions.sum(axis=0, dtype=np.float64))
    return float(pooled)


def bootstrap_miou_interval(intersections: np.ndarray, unions: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                            confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled mIoU over validation images (evaluation noise of one model).

    `intersections` and `unions`: per-image per-class pixel counts, shape (n_images, n_classes). Each resample draws
    n_images images with replacement (numpy Generator seeded with `seed`, so the same seed gives the same interval),
    pools their counts and computes mIoU as `pooled_miou` does. Vectorised: a (n_resamples, n_images) matrix of
    how often each image was drawn times the count matrices. No images give (nan, nan).
    """
    intersections, unions = np.asarray(intersections), np.asarray(unions)
    _check_counts(intersections, unions)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    n_images = intersections.shape[0]
    if n_images == 0 or n_resamples < 1:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_images, size=(n_resamples, n_images))
    offsets = (np.arange(n_resamples) * n_images)[:, None]
    times_drawn = np.bincount((drawn + offsets).ravel(), minlength=n_resamples * n_images)
    times_drawn = times_drawn.reshape(n_resamples, n_images).astype(np.float64)
    # float64 holds pixel counts exactly up to 2**53, far beyond any validation set
    mious = _miou_from_pooled(times_drawn @ intersections.astype(np.float64), times_drawn @ unions.astype(np.float64))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(mious, [tail, 100.0 - tail])
    return (float(low), float(high))


def seed_summary(values: ArrayLike) -> dict:
    """n, mean and sample standard deviation (ddof=1; NaN for n < 2) of one configuration's values over seeds, in the
    metric's unit, plus the values themselves. Missing values (NaN) are left out and not counted."""
    finite = _as_1d(values)
    finite = finite[~np.isnan(finite)]
    n = int(finite.size)
    return {
        "n": n,
        "mean": float(finite.mean()) if n else math.nan,
        "sd": float(finite.std(ddof=1)) if n >= 2 else math.nan,
        "values": finite.tolist(),
    }
