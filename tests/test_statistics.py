"""Statistics for comparisons over seeds, each checked against scipy or a hand computation on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from segbench.analysis.statistics import (
    IDENTICAL_NOTE,
    ONE_RUN_NOTE,
    ZERO_SPREAD_NOTE,
    holm_adjust,
    prob_better,
    seed_summary,
    share_better,
    sign_flip_p_value,
    t_interval,
    t_test,
    verdict,
    welch_interval,
    welch_test,
)
from segbench.metrics.bootstrap import bootstrap_miou_interval, pooled_miou

DIFFERENCES = [
    [0.012, -0.004, 0.021],
    [0.012, -0.004, 0.021, 0.008, 0.015, -0.001],
    [0.031, 0.027, 0.035, 0.029, 0.040],
    [0.1, 0.01, 0.08, -0.15, 0.06],  # float ties: without a tolerance p would be 0.625, not 0.6875
    [-0.02, 0.003, -0.011, 0.0, -0.007, 0.001, -0.013, 0.002, -0.004, 0.006],
]


def scipy_sign_flip_p(d: list[float], n_resamples: float = np.inf) -> float:
    return stats.permutation_test((np.asarray(d),), np.mean, permutation_type="samples", n_resamples=n_resamples,
                                  alternative="two-sided", random_state=1).pvalue


@pytest.mark.parametrize("d", DIFFERENCES)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_t_interval_and_t_test_match_scipy(d: list[float], confidence: float) -> None:
    expected = stats.ttest_1samp(d, 0)
    interval = expected.confidence_interval(confidence)
    assert t_interval(d, confidence) == pytest.approx((interval.low, interval.high), rel=1e-9, abs=1e-12)
    test = t_test(d, confidence)
    assert (test.ci_low, test.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9, abs=1e-12)
    assert test.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert test.note == ""
    # the verdict's test and the shown interval agree: p < 1 - confidence exactly when the interval excludes 0
    assert (test.p_value < 1 - confidence) == (test.ci_low > 0 or test.ci_high < 0)


def test_t_interval_degenerate_cases() -> None:
    assert all(math.isnan(x) for x in t_interval([0.02]))
    assert all(math.isnan(x) for x in t_interval([]))
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)  # seeds of a deterministic quantity: its mean is exact


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on zero-spread data
def test_t_test_refuses_a_zero_spread_that_scipy_calls_certain() -> None:
    constant = [0.02, 0.02]
    assert stats.ttest_1samp(constant, 0).pvalue == 0.0  # what the old verdict effectively read as "better"
    test = t_test(constant)
    assert math.isnan(test.ci_low) and math.isnan(test.ci_high) and math.isnan(test.p_value)
    assert test.note == ZERO_SPREAD_NOTE
    identical = t_test([0.0, 0.0, 0.0])
    assert (identical.ci_low, identical.ci_high, identical.note) == (0.0, 0.0, IDENTICAL_NOTE)
    assert math.isnan(identical.p_value)  # scipy: nan too
    one = t_test([0.03])
    assert math.isnan(one.p_value) and one.note == ONE_RUN_NOTE
    assert math.isnan(t_test([0.01, math.nan, 0.02]).p_value)
    # the same drop of 3 points per seed differs in its last bits: still no spread, not a p of 1e-14
    rounded = [0.73 - 0.70, 0.13 - 0.10, 0.38 - 0.35]
    assert len(set(rounded)) > 1
    assert t_test(rounded).note == ZERO_SPREAD_NOTE and math.isnan(t_test(rounded).p_value)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the zero-variance side
@pytest.mark.parametrize(("a", "b"), [
    ([0.61, 0.63, 0.60], [0.58, 0.59, 0.62, 0.57]),
    ([0.70, 0.71, 0.69, 0.72, 0.70], [0.55, 0.65]),
    ([0.5, 0.5, 0.5], [0.40, 0.45, 0.43]),  # zero variance on one side only
])
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_welch_interval_matches_scipy(a: list[float], b: list[float], confidence: float) -> None:
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    assert welch_interval(a, b, confidence) == pytest.approx((expected.low, expected.high), rel=1e-9, abs=1e-12)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
@pytest.mark.parametrize(("a", "b"), [
    ([0.61, 0.63, 0.60], [0.58, 0.59, 0.62, 0.57]),
    ([0.70, 0.71, 0.69, 0.72, 0.70], [0.55, 0.65]),
    ([0.5, 0.5, 0.5], [0.40, 0.45, 0.43]),
])
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_welch_test_matches_scipy(a: list[float], b: list[float], confidence: float) -> None:
    expected = stats.ttest_ind(a, b, equal_var=False)
    interval = expected.confidence_interval(confidence)
    test = welch_test(a, b, confidence)
    assert (test.ci_low, test.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9, abs=1e-12)
    assert test.p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_welch_interval_degenerate_cases() -> None:
    assert all(math.isnan(x) for x in welch_interval([0.5], [0.4, 0.45]))
    assert all(math.isnan(x) for x in welch_interval([0.5, 0.6], []))
    low, high = welch_interval([0.5, 0.5], [0.25, 0.25, 0.25])
    assert (low, high) == (0.25, 0.25)
    constant = welch_test([0.5, 0.5], [0.25, 0.25, 0.25])  # scipy: p = 0; no spread can support that
    assert math.isnan(constant.p_value) and math.isnan(constant.ci_low) and constant.note == ZERO_SPREAD_NOTE
    same = welch_test([0.1, 0.1, 0.1], [0.1, 0.1])
    assert (same.ci_low, same.ci_high, same.note) == (0.0, 0.0, IDENTICAL_NOTE)
    assert welch_test([0.5], [0.4, 0.45]).note == ONE_RUN_NOTE


@pytest.mark.parametrize("d", DIFFERENCES)
def test_sign_flip_p_matches_scipy_exact_permutation_test(d: list[float]) -> None:
    assert sign_flip_p_value(d) == pytest.approx(scipy_sign_flip_p(d), abs=1e-12)


def test_sign_flip_p_small_samples_have_a_floor() -> None:
    assert sign_flip_p_value([0.01, 0.02, 0.03]) == pytest.approx(0.25)
    assert sign_flip_p_value([0.01, 0.02, 0.03, 0.015, 0.025, 0.012]) == pytest.approx(2 / 64)


def test_sign_flip_p_edge_cases() -> None:
    assert math.isnan(sign_flip_p_value([]))
    assert math.isnan(sign_flip_p_value([0.01, math.nan, 0.02]))
    assert sign_flip_p_value([0.0, 0.0, 0.0, 0.0]) == 1.0
    assert sign_flip_p_value([0.01]) == 1.0  # one pair: both signs reach |mean|


def test_sign_flip_p_monte_carlo_above_16_is_seeded_and_close_to_exact() -> None:
    d = np.random.default_rng(3).normal(0.004, 0.01, size=17)
    exact = scipy_sign_flip_p(d.tolist())  # 2**17 assignments: scipy still enumerates them all
    estimate = sign_flip_p_value(d)
    assert estimate == sign_flip_p_value(d)
    assert 0.0 < estimate < 1.0
    assert estimate == pytest.approx(exact, abs=0.015)


def test_holm_adjust_by_hand() -> None:
    # m = 4 valid values; sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, previous)
    adjusted = holm_adjust([0.01, 0.04, 0.03, math.nan, 0.005])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert adjusted[4] == pytest.approx(0.02)


def test_holm_adjust_caps_at_one_and_handles_empty() -> None:
    assert holm_adjust([0.6, 0.7]) == [1.0, 1.0]
    assert holm_adjust([0.2]) == [0.2]
    assert holm_adjust([]) == []
    assert all(math.isnan(x) for x in holm_adjust([math.nan, math.nan]))


def test_prob_better_counts_ties_one_half() -> None:
    assert prob_better([1, 2, 3, 4], [0, 2, 5, 4]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert prob_better([0.5, 0.6, 0.7], [0.5, 0.5, 0.5]) == pytest.approx(2.5 / 3)
    assert math.isnan(prob_better([], []))
    with pytest.raises(ValueError):
        prob_better([1, 2], [1])


def test_share_better_follows_the_metric_direction() -> None:
    d = [0.02, -0.01, 0.0, 0.03]
    assert share_better(d) == pytest.approx(2.5 / 4)
    assert share_better(d, higher_is_better=False) == pytest.approx(1.5 / 4)  # a loss: lower is better
    assert math.isnan(share_better([]))


@pytest.mark.parametrize(("delta", "ci_low", "ci_high", "p_holm", "n", "higher_is_better", "expected"), [
    (0.03, 0.02, 0.04, 0.01, 3, True, "better"),
    (-0.03, -0.04, -0.02, 0.01, 3, True, "worse"),
    (0.01, 0.005, 0.015, 0.04, 3, True, "better"),  # |delta| exactly the margin counts
    (-0.03, -0.04, -0.02, 0.01, 3, False, "better"),  # lower is better, e.g. a loss or a calibration error
    (0.03, 0.02, 0.04, 0.01, 3, False, "worse"),
    # the real row of issue 19: the unadjusted interval excludes 0 but p_holm does not pass alpha
    (-0.0248, -0.0414, -0.0081, 0.125, 3, True, "inconclusive"),
    (0.03, 0.02, 0.04, 0.05, 3, True, "inconclusive"),  # p_holm must be below alpha, not equal
    (0.005, 0.001, 0.009, 0.001, 5, True, "within margin"),  # real but smaller than the margin
    (0.001, -0.005, 0.008, 0.6, 3, True, "within margin"),
    (0.0, 0.0, 0.0, math.nan, 3, True, "within margin"),  # identical results: every d_s exactly 0
    (0.02, math.nan, math.nan, math.nan, 3, True, "inconclusive"),  # zero spread, non-zero delta: no interval
    (0.015, -0.02, 0.05, 0.4, 3, True, "inconclusive"),
    (0.009, 0.002, 0.016, 0.01, 3, True, "inconclusive"),  # significant, |delta| < margin, reaches past it
    (0.03, math.nan, math.nan, math.nan, 1, True, "one run"),
    (0.03, 0.02, 0.04, 0.01, 1, True, "one run"),
])
def test_verdict_rule(delta: float, ci_low: float, ci_high: float, p_holm: float, n: int, higher_is_better: bool,
                      expected: str) -> None:
    assert verdict(delta, ci_low, ci_high, p_holm, n, margin=0.01, alpha=0.05,
                   higher_is_better=higher_is_better) == expected


def test_verdict_alpha_moves_the_threshold() -> None:
    assert verdict(0.03, 0.02, 0.04, 0.03, 3, margin=0.01, alpha=0.05) == "better"
    assert verdict(0.03, 0.005, 0.055, 0.03, 3, margin=0.01, alpha=0.01) == "inconclusive"


def realistic_counts(n_images: int = 300, n_classes: int = 19, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image per-class pixel counts like a street-scene validation set: some classes absent from most images."""
    rng = np.random.default_rng(seed)
    present = rng.random((n_images, n_classes)) < np.linspace(0.95, 0.1, n_classes)
    unions = np.where(present, rng.integers(200, 50_000, size=(n_images, n_classes)), 0)
    quality = np.clip(rng.normal(np.linspace(0.9, 0.3, n_classes), 0.1, size=(n_images, n_classes)), 0, 1)
    intersections = np.floor(unions * quality).astype(np.int64)
    return intersections, unions


def test_pooled_miou_ignores_classes_with_zero_union() -> None:
    intersections = np.array([[5, 0, 0], [3, 0, 1]])
    unions = np.array([[10, 0, 0], [6, 0, 4]])
    assert pooled_miou(intersections, unions) == pytest.approx((8 / 16 + 1 / 4) / 2)
    assert math.isnan(pooled_miou(np.zeros((2, 3)), np.zeros((2, 3))))
    with pytest.raises(ValueError):
        pooled_miou(intersections, unions[:, :2])


def test_bootstrap_miou_interval_matches_a_loop_over_resamples() -> None:
    intersections, unions = realistic_counts(n_images=40, n_classes=5)
    drawn = np.random.default_rng(7).integers(0, 40, size=(200, 40))
    loop = [pooled_miou(intersections[rows], unions[rows]) for rows in drawn]
    expected = np.percentile(loop, [2.5, 97.5])
    assert bootstrap_miou_interval(intersections, unions, n_resamples=200, seed=7) == pytest.approx(tuple(expected))


def test_bootstrap_miou_interval_is_reproducible_and_contains_the_estimate() -> None:
    intersections, unions = realistic_counts()
    low, high = bootstrap_miou_interval(intersections, unions, n_resamples=1000, seed=0)
    assert (low, high) == bootstrap_miou_interval(intersections, unions, n_resamples=1000, seed=0)
    assert (low, high) != bootstrap_miou_interval(intersections, unions, n_resamples=1000, seed=1)
    assert low < pooled_miou(intersections, unions) < high
    assert 0.0 < high - low < 0.1
    narrower = bootstrap_miou_interval(intersections, unions, n_resamples=1000, seed=0, confidence=0.5)
    assert low < narrower[0] < narrower[1] < high


def test_bootstrap_miou_interval_without_images_is_nan() -> None:
    empty = np.zeros((0, 19), dtype=np.int64)
    assert all(math.isnan(x) for x in bootstrap_miou_interval(empty, empty))


def test_seed_summary() -> None:
    summary = seed_summary([0.50, 0.52, math.nan, 0.54])
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(0.52)
    assert summary["sd"] == pytest.approx(0.02)
    assert summary["values"] == pytest.approx([0.50, 0.52, 0.54])
    interval = stats.ttest_1samp([0.50, 0.52, 0.54], 0.0).confidence_interval(0.95)
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((interval.low, interval.high))
    single = seed_summary([0.5])
    assert (single["n"], single["mean"], math.isnan(single["sd"])) == (1, 0.5, True)
    assert math.isnan(single["ci_low"]) and math.isnan(single["ci_high"])
