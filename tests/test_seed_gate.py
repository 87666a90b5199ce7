"""The gate's seed test against scipy, and its measured size and power (docs/report.md, "Seeds in the gate")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from segbench.analysis.seed_gate import seed_test, simulated_p_values, simulated_power, simulated_seeds


def test_paired_and_welch_p_values_are_scipys_one_sided_ones():
    base, current = [0.50, 0.52, 0.51], [0.47, 0.48, 0.47]
    paired = seed_test(base, current, -1, paired=True)  # -1: a drop is the regression
    assert paired.p == pytest.approx(stats.ttest_rel(current, base, alternative="less").pvalue)
    assert paired.method == "paired t-test" and paired.significant
    welch = seed_test(base, [0.47, 0.46, 0.45, 0.47], -1, paired=False)
    expected = stats.ttest_ind([0.47, 0.46, 0.45, 0.47], base, equal_var=False, alternative="less").pvalue
    assert welch.p == pytest.approx(expected) and welch.n_current == 4
    rise = seed_test([1.0, 1.1, 0.9], [1.5, 1.4, 1.7], +1, paired=True)  # +1: a rise is the regression
    assert rise.p == pytest.approx(stats.ttest_rel([1.5, 1.4, 1.7], [1.0, 1.1, 0.9], alternative="greater").pvalue)
    improvement = seed_test(base, [0.55, 0.57, 0.55], -1, paired=True)
    assert improvement.p > 0.95 and not improvement.significant


def test_no_spread_means_no_test_and_the_threshold_decides():
    uniform = seed_test([0.50, 0.56, 0.44], [0.47, 0.53, 0.41], -1, paired=True)  # every seed exactly 0.03 lower
    assert uniform.p is None and uniform.significant
    assert uniform.text == "no spread in the per-seed differences over 3 seeds, so the threshold alone decides"
    constant = seed_test([0.5, 0.5], [0.4, 0.4, 0.4], -1, paired=False)
    assert constant.p is None and "values of either side" in constant.text


@pytest.mark.parametrize("paired", [True, False])
def test_the_simulation_computes_the_gates_own_p_values(paired: bool):
    base, current = simulated_seeds(1.5, 3, 0.3, draws=25, seed=7)
    vectorised = simulated_p_values(base, current, paired)
    one_by_one = [seed_test(list(old), list(new), -1, paired).p for old, new in zip(base, current, strict=True)]
    np.testing.assert_allclose(vectorised, one_by_one, rtol=1e-9)


def test_the_gates_size_and_power_with_three_seeds():
    """With 3 seeds a side, uncorrelated between the sides (the least favourable case for pairing) and a 1-sd
    threshold: false alarms stay under 5 %, and a drop of 3 or 4 seed-sds is caught most of the time."""
    assert simulated_power(0.0, 1.0) <= 0.05
    assert simulated_power(0.0, 0.0) == pytest.approx(0.05, abs=0.012)  # the t-test's own size, 4000 draws
    powers = [simulated_power(drop, 1.0) for drop in (1.0, 2.0, 3.0, 4.0)]
    assert powers == sorted(powers) and powers[2] >= 0.7 and powers[3] >= 0.85
    assert simulated_power(4.0, 1.0, correlation=0.8) >= 0.99  # a shared seed makes the pairing pay
