"""Main effects over seeds, conditional effects, and pairs of top configurations, on small frames whose answer is
known by construction or recomputed with scipy; and a coverage simulation of the main-effect interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segbench.analysis.effects import (
    CELL_KEY,
    COLUMNS,
    METHOD_PARAGRAPH,
    conditional_effects,
    configuration_pairs,
    main_effects,
    pairs_paragraph,
    parse_baselines,
    verdict_rule,
)
from segbench.analysis.effects_section import comparison_cells, comparison_metric
from segbench.analysis.statistics import ZERO_SPREAD_NOTE, holm_adjust, t_test
from segbench.errors import ConfigError
from segbench.records.schema import Record

from support import records

MODEL_BASE = {"unet": 0.60, "fpn": 0.58}
SEED_OFFSET = {0: 0.0, 1: 0.006, 2: -0.004}  # shared by cells of one seed: pairing removes it
JITTER = {("unet", 0): 0.001, ("unet", 1): -0.002, ("unet", 2): 0.0015,
          ("fpn", 0): -0.001, ("fpn", 1): 0.002, ("fpn", 2): 0.0}


def make_frame(focal_effect: float = 0.05, jitter_scale: float = 1.0, datasets: tuple[str, ...] = ("synthetic",)
               ) -> pd.DataFrame:
    """2 models x 2 losses x 3 seeds per dataset, one encoder; focal adds `focal_effect` mIoU plus a little jitter."""
    rows = []
    for dataset in datasets:
        for model, base in MODEL_BASE.items():
            for loss in ("ce", "focal"):
                for seed, offset in SEED_OFFSET.items():
                    effect = focal_effect + jitter_scale * JITTER[model, seed] if loss == "focal" else 0.0
                    miou = base + offset + effect
                    rows.append({"dataset": dataset, "model": model, "encoder": "resnet18", "loss": loss,
                                 "seed": seed, "miou": miou, "pixel_accuracy": miou + 0.3, "mdice": miou + 0.1})
    return pd.DataFrame(rows)


def only(table: pd.DataFrame, **where: object) -> pd.Series:
    selected = table
    for column, value in where.items():
        selected = selected[selected[column] == value]
    assert len(selected) == 1, f"expected one row for {where}, got {len(selected)}"
    return selected.iloc[0]


def scipy_sign_flip_p(d: np.ndarray) -> float:
    return stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                  alternative="two-sided").pvalue


def test_columns_are_exactly_the_csv_columns() -> None:
    assert COLUMNS == ["dataset", "axis", "level", "baseline", "scope", "metric", "n", "mean_level",
                       "mean_baseline", "delta", "ci_low", "ci_high", "p_value", "p_signflip", "p_holm",
                       "prob_better", "verdict", "note"]
    for table in (main_effects(make_frame()), main_effects(make_frame().iloc[0:0]),
                  conditional_effects(make_frame()), conditional_effects(make_frame().iloc[0:0])):
        assert list(table.columns) == COLUMNS


# 2 combinations of the other axes (unet, fpn) x 3 seeds x 2 losses; fpn/focal at seed 2 did not finish
HAND = {("unet", "ce"): [0.610, 0.622, 0.605], ("unet", "focal"): [0.631, 0.629, 0.641],
        ("fpn", "ce"): [0.580, 0.575, 0.592], ("fpn", "focal"): [0.602, 0.611, None]}


def hand_frame() -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "synthetic", "model": model, "encoder": "resnet18", "loss": loss, "seed": seed,
                          "miou": value} for (model, loss), values in HAND.items()
                         for seed, value in enumerate(values) if value is not None])


def test_main_effect_averages_differences_within_each_seed_and_matches_scipy() -> None:
    row = only(main_effects(hand_frame(), metrics=("miou",)), axis="loss", metric="miou")
    d_unet = np.subtract(HAND["unet", "focal"], HAND["unet", "ce"])
    d_fpn = np.subtract(HAND["fpn", "focal"][:2], HAND["fpn", "ce"][:2])
    d = np.array([(d_unet[0] + d_fpn[0]) / 2, (d_unet[1] + d_fpn[1]) / 2, d_unet[2]])  # seed 2: unet alone
    expected = stats.ttest_1samp(d, 0)
    interval = expected.confidence_interval(0.95)
    assert (row["level"], row["baseline"], row["scope"], row["n"]) == ("focal", "ce", "all", 3)
    assert row["delta"] == pytest.approx(d.mean(), abs=1e-15)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert row["p_signflip"] == pytest.approx(scipy_sign_flip_p(d), abs=1e-12)
    assert row["prob_better"] == 1.0  # every seed's d_s favours focal
    assert row["mean_level"] - row["mean_baseline"] == pytest.approx(row["delta"], abs=1e-12)
    assert "unbalanced" in row["note"]
    # the unadjusted interval excludes 0 (p 0.032), but Holm over this family (loss and model) gives 0.064: the
    # verdict follows the adjusted test, not the interval
    assert row["ci_low"] > 0 and row["p_holm"] == pytest.approx(2 * row["p_value"]) and row["p_holm"] > 0.05
    assert row["verdict"] == "inconclusive"


def test_clearly_better_loss_is_better() -> None:
    table = main_effects(make_frame(focal_effect=0.05))
    row = only(table, axis="loss", level="focal", metric="miou")
    assert row["baseline"] == "ce"
    assert row["n"] == 3  # seeds, not pairs of cells
    assert row["delta"] == pytest.approx(0.05 + np.mean(list(JITTER.values())))
    assert row["ci_low"] > 0.04 and row["ci_high"] < 0.06
    assert row["p_signflip"] == pytest.approx(0.25)  # every seed favours focal: the exact floor with 3 seeds
    assert row["p_value"] < 0.001 and row["p_holm"] < 0.05
    assert row["prob_better"] == 1.0
    assert row["verdict"] == "better"
    assert set(table["axis"]) == {"model", "loss"}  # one encoder: nothing to compare on that axis
    assert set(table["metric"]) == {"miou", "pixel_accuracy", "mdice"}
    assert set(table["scope"]) == {"all"}


def test_tiny_differences_are_within_margin() -> None:
    row = only(main_effects(make_frame(focal_effect=0.001, jitter_scale=0.2)), axis="loss", metric="miou")
    assert abs(row["delta"]) < 0.002
    assert row["verdict"] == "within margin"


def test_identical_results_are_within_margin_and_zero_spread_is_inconclusive() -> None:
    frame = make_frame(focal_effect=0.05)
    frame["params"] = np.where(frame["model"] == "fpn", 2.0e6, 1.0e6)  # the loss changes no parameter
    frame["gap"] = np.where(frame["loss"] == "focal", 0.02, 0.0)  # the same +0.02 at every seed: zero spread
    table = main_effects(frame, metrics=("params", "gap"), higher_is_better={"params": False})
    identical = only(table, axis="loss", metric="params")
    assert (identical["delta"], identical["ci_low"], identical["ci_high"]) == (0.0, 0.0, 0.0)
    assert identical["verdict"] == "within margin" and math.isnan(identical["p_value"])
    constant = only(table, axis="loss", metric="gap")
    assert constant["delta"] == pytest.approx(0.02) and math.isnan(constant["ci_low"])
    assert (constant["verdict"], constant["note"]) == ("inconclusive", ZERO_SPREAD_NOTE)
    assert constant["p_signflip"] == pytest.approx(0.25)


def test_large_noise_is_inconclusive_and_lower_is_better_metric_flips() -> None:
    frame = make_frame(focal_effect=0.01, jitter_scale=20.0)
    frame["latency_ms"] = np.where(frame["loss"] == "focal", 12.0, 10.0) + frame["seed"] * 0.1
    frame.loc[frame["loss"] == "focal", "latency_ms"] += frame["miou"] - 0.6  # a little noise around +2 ms
    table = main_effects(frame, metrics=("miou", "latency_ms"), higher_is_better={"latency_ms": False})
    assert only(table, axis="loss", metric="miou")["verdict"] == "inconclusive"
    latency = only(table, axis="loss", metric="latency_ms")
    assert latency["delta"] == pytest.approx(2.0, abs=0.1)
    assert latency["verdict"] == "worse"
    assert latency["prob_better"] == 0.0


def test_unpaired_and_missing_cells_are_not_paired() -> None:
    frame = make_frame()
    frame = frame[~((frame["model"] == "unet") & (frame["loss"] == "focal") & (frame["seed"] == 2))]
    extra = {"dataset": "synthetic", "model": "unet", "encoder": "resnet18", "loss": "focal", "seed": 3,
             "miou": 0.99, "pixel_accuracy": 0.99, "mdice": 0.99}  # no ce cell with seed 3: no partner
    frame = pd.concat([frame, pd.DataFrame([extra])], ignore_index=True)
    frame.loc[(frame["model"] == "fpn") & (frame["loss"] == "ce") & (frame["seed"] == 0), "mdice"] = math.nan
    table = main_effects(frame)
    miou = only(table, axis="loss", metric="miou")
    assert miou["n"] == 3  # seeds 0-2 each keep a pair; seed 3 has none
    focal = frame[(frame["loss"] == "focal") & (frame["seed"] < 3)]
    per_seed = focal.groupby("seed")["miou"].mean()  # averaged within each seed first
    assert miou["mean_level"] == pytest.approx(per_seed.mean())
    one_seed = frame[frame["seed"] == 0].copy()
    one_seed.loc[one_seed["model"] == "fpn", "miou"] = math.nan
    one = only(main_effects(one_seed, metrics=("miou",)), axis="loss", metric="miou")
    assert (one["n"], one["verdict"]) == (1, "one run")
    assert math.isnan(one["p_value"]) and math.isnan(one["p_signflip"]) and math.isnan(one["p_holm"])


def test_a_one_run_row_does_not_count_in_the_holm_family() -> None:
    frame = make_frame()
    without = main_effects(frame, metrics=("miou",))
    dice = {"dataset": "synthetic", "model": "unet", "encoder": "resnet18", "loss": "dice", "seed": 0,
            "miou": 0.7}  # one cell: the loss level dice has one pair, at one seed
    with_one_run = main_effects(pd.concat([frame, pd.DataFrame([dice])], ignore_index=True), metrics=("miou",),
                                axis_order={"loss": ["ce", "focal", "dice"]})
    one_run = only(with_one_run, level="dice")
    assert (one_run["n"], one_run["verdict"]) == (1, "one run") and math.isnan(one_run["p_holm"])
    others = with_one_run[with_one_run["level"] != "dice"].reset_index(drop=True)
    assert others["p_holm"].tolist() == without["p_holm"].tolist()
    assert without["p_holm"].tolist() == pytest.approx(holm_adjust(without["p_value"].tolist()))


# focal helps fpn by 5 points at every seed and unet by nothing; seed effects shared by the cells of a seed
INTERACTION = {("unet", 0): 0.001, ("unet", 1): -0.002, ("unet", 2): 0.0015,
               ("fpn", 0): 0.048, ("fpn", 1): 0.053, ("fpn", 2): 0.050}


def interaction_frame() -> pd.DataFrame:
    rows = []
    for (model, seed), effect in INTERACTION.items():
        for loss in ("ce", "focal"):
            miou = MODEL_BASE[model] + SEED_OFFSET[seed] + (effect if loss == "focal" else 0.0)
            rows.append({"dataset": "synthetic", "model": model, "encoder": "resnet18", "loss": loss, "seed": seed,
                         "miou": miou})
    return pd.DataFrame(rows)


def test_conditional_effects_show_an_interaction() -> None:
    frame = interaction_frame()
    table = conditional_effects(frame, metrics=("miou",), axis_order={"model": ["unet", "fpn"]})
    loss = table[table["axis"] == "loss"]
    assert loss["scope"].tolist() == ["model=unet", "model=fpn"]  # grid order; the lone encoder is not named
    for model in ("unet", "fpn"):
        row = only(loss, scope=f"model={model}")
        d = np.array([INTERACTION[model, seed] for seed in (0, 1, 2)])
        expected = stats.ttest_1samp(d, 0)
        assert row["n"] == 3
        assert row["delta"] == pytest.approx(d.mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(expected.confidence_interval(0.95)))
        assert row["p_value"] == pytest.approx(expected.pvalue)
        assert row["p_signflip"] == pytest.approx(scipy_sign_flip_p(d))
    assert only(loss, scope="model=fpn")["verdict"] == "better"
    assert only(loss, scope="model=unet")["verdict"] == "within margin"
    # Holm per dataset, metric and axis: the two loss rows together, the two model rows together
    for axis in ("loss", "model"):
        family = table[table["axis"] == axis]
        assert len(family) == 2
        assert family["p_holm"].tolist() == pytest.approx(holm_adjust(family["p_value"].tolist()), nan_ok=True)
    # fpn - unet is -0.02 at every seed with cross-entropy: no spread, no test, and no place in the family
    assert only(table, axis="model", scope="loss=ce")["note"] == ZERO_SPREAD_NOTE
    main = only(main_effects(frame, metrics=("miou",)), axis="loss")
    assert main["delta"] == pytest.approx(np.mean(list(INTERACTION.values())))  # the average of the two scopes


def test_a_metric_some_combinations_lack_rests_on_the_others_and_says_so() -> None:
    """ECE (lower is better) carried by U-Net's cells only: the loss's main effect is U-Net's, named in the note; the
    model axis has no ECE pair, so no row; nothing stands in for the missing values."""
    frame = make_frame(focal_effect=0.0)
    ece = 0.10 + frame["seed"].map(SEED_OFFSET) - 0.03 * (frame["loss"] == "focal")
    ece += [JITTER[model, seed] if loss == "focal" else 0.0
            for model, loss, seed in zip(frame["model"], frame["loss"], frame["seed"], strict=True)]
    frame["ece"] = ece.where(frame["model"] == "unet")
    higher = {"ece": comparison_metric("ece").better > 0}
    table = main_effects(frame, metrics=("ece",), higher_is_better=higher)
    assert set(table["axis"]) == {"loss"}
    row = only(table, axis="loss", metric="ece")
    d = np.array([-0.03 + JITTER["unet", seed] for seed in SEED_OFFSET])
    expected = stats.ttest_1samp(d, 0)
    assert row["n"] == 3 and row["delta"] == pytest.approx(d.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert row["p_value"] == pytest.approx(expected.pvalue)
    assert (row["prob_better"], row["verdict"]) == (1.0, "better")  # lower ECE at every seed
    assert row["note"] == "only 1 of 2 combinations of the other axes carry ece: model=unet"
    conditional = conditional_effects(frame, metrics=("ece",), higher_is_better=higher)
    assert conditional["scope"].tolist() == ["model=unet"] and conditional["note"].tolist() == [""]
    assert only(main_effects(frame, metrics=("miou",)), axis="loss")["note"] == ""  # every cell carries mIoU


CLASSES = ["road", "car", "sky"]


def test_comparison_cells_hold_the_metrics_some_record_carries() -> None:
    plain = records.record("unet__resnet18__ce__synthetic__s0", miou=0.6, classes=CLASSES)
    measured = records.record("unet__resnet18__focal__synthetic__s0", miou=0.62, classes=CLASSES, quality=True)
    measured["domains"] = [{"dataset": "fog", "name": "synthetic", "split": "val", "metrics": {"miou": 0.3}},
                           {"dataset": "fog", "name": "synthetic", "split": "test", "metrics": None}]
    cells = comparison_cells([Record.model_validate(plain), Record.model_validate(measured)])
    # no record was evaluated under corruptions, and none has an mIoU on fog/test: no column, so no comparison
    assert list(cells.columns) == [*CELL_KEY, "miou", "pixel_accuracy", "mdice", "ece", "boundary_miou",
                                   "miou@fog/val"]
    assert cells["ece"].isna().tolist() == [True, False]  # missing stays missing, never 0
    assert cells["miou@fog/val"].tolist() == pytest.approx([math.nan, 0.3], nan_ok=True)
    assert cells.loc[1, "ece"] == measured["calibration"]["ece"]
    assert list(comparison_cells([Record.model_validate(plain)]).columns) == [*CELL_KEY, "miou", "pixel_accuracy",
                                                                              "mdice"]


@pytest.mark.parametrize(("key", "label", "better"), [
    ("ece", "ECE %", -1), ("boundary_miou", "boundary mIoU %", +1),
    ("mean_corrupted_miou", "mean corrupted mIoU %", +1), ("relative_robustness", "relative robustness %", +1),
    ("miou@fog/val", "mIoU % on fog/val", +1)])
def test_each_compared_metric_has_a_label_a_direction_and_is_a_fraction(key: str, label: str, better: int) -> None:
    metric = comparison_metric(key)
    assert (metric.key, metric.label, metric.better, metric.unit) == (key, label, better, "fraction")


def test_conditional_effects_need_another_axis_that_varies() -> None:
    frame = make_frame()
    assert conditional_effects(frame[frame["model"] == "unet"]).empty  # loss alone varies: main effect only


def test_cells_of_other_datasets_are_not_paired_and_holm_stays_within_a_dataset() -> None:
    single = main_effects(make_frame())
    frame = make_frame(datasets=("synthetic", "streets"))
    frame.loc[frame["dataset"] == "streets", "miou"] -= 0.2
    double = main_effects(frame)
    assert sorted(set(double["dataset"])) == ["streets", "synthetic"]
    mine = double[double["dataset"] == "synthetic"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, single)
    miou = single[single["metric"] == "miou"].sort_values("p_value")
    smaller, larger = miou["p_value"].tolist()  # two rows per dataset and metric: loss and model
    assert miou["p_holm"].tolist() == pytest.approx([min(1.0, 2 * smaller), max(min(1.0, 2 * smaller), larger)])


def test_baseline_by_argument_by_axis_order_and_by_sorted_order() -> None:
    frame = make_frame()
    by_sorting = only(main_effects(frame), axis="model", metric="miou")
    assert (by_sorting["level"], by_sorting["baseline"]) == ("unet", "fpn")
    assert by_sorting["delta"] == pytest.approx(0.02 + (0.001 - 0.002 + 0.0015 - (-0.001 + 0.002 + 0.0)) / 6)
    by_order = only(main_effects(frame, axis_order={"model": ["unet", "fpn"]}), axis="model", metric="miou")
    assert (by_order["level"], by_order["baseline"]) == ("fpn", "unet")
    assert by_order["delta"] == pytest.approx(-by_sorting["delta"])
    by_argument = main_effects(frame, baselines={"loss": "focal"}, axis_order={"loss": ["ce", "focal"]})
    loss = only(by_argument, axis="loss", metric="miou")
    assert (loss["level"], loss["baseline"], loss["verdict"]) == ("ce", "focal", "worse")


def test_bad_baseline_is_a_one_sentence_config_error() -> None:
    frame = make_frame()
    with pytest.raises(ConfigError) as error:
        main_effects(frame, baselines={"loss": "xyz"})
    assert str(error.value) == "--baseline loss=xyz: 'xyz' is not a value of axis loss (values: ce, focal)."
    with pytest.raises(ConfigError, match="'optimizer' is not an axis"):
        main_effects(frame, baselines={"optimizer": "adam"})


def test_parse_baselines() -> None:
    assert parse_baselines(["loss=ce", " model = unet "]) == {"loss": "ce", "model": "unet"}
    assert parse_baselines([]) == {}
    with pytest.raises(ConfigError, match="is not AXIS=VALUE"):
        parse_baselines(["loss"])
    with pytest.raises(ConfigError, match="is not AXIS=VALUE"):
        parse_baselines(["loss="])
    with pytest.raises(ConfigError, match="unknown axis 'los'.*did you mean 'loss'"):
        parse_baselines(["los=ce"])
    with pytest.raises(ConfigError, match="twice"):
        parse_baselines(["loss=ce", "loss=focal"])


def test_configuration_pairs() -> None:
    frame = make_frame()
    frame.loc[frame["model"] == "fpn", "miou"] += 0.017  # fpn/focal now overlaps unet/focal seed by seed
    top = [("synthetic", "unet", "resnet18", "focal"), ("synthetic", "fpn", "resnet18", "focal"),
           ("synthetic", "unet", "resnet18", "ce")]
    table = configuration_pairs(frame, top, metrics=("miou",))
    assert list(table.columns) == COLUMNS
    assert set(table["axis"]) == {"configuration"}
    assert list(zip(table["level"], table["baseline"], strict=True)) == [
        ("unet/resnet18/focal", "fpn/resnet18/focal"), ("unet/resnet18/focal", "unet/resnet18/ce"),
        ("fpn/resnet18/focal", "unet/resnet18/ce")]

    def seeds(model: str, loss: str) -> np.ndarray:
        return frame[(frame["model"] == model) & (frame["loss"] == loss)]["miou"].to_numpy()

    row = only(table, level="unet/resnet18/focal", baseline="unet/resnet18/ce")
    welch = stats.ttest_ind(seeds("unet", "focal"), seeds("unet", "ce"), equal_var=False)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(welch.confidence_interval()))
    assert row["p_value"] == pytest.approx(welch.pvalue)
    assert math.isnan(row["p_signflip"]) and row["scope"] == "all"
    assert row["n"] == 3
    assert row["prob_better"] == 1.0
    assert row["verdict"] == "better"

    close = only(table, level="unet/resnet18/focal", baseline="fpn/resnet18/focal")
    # unet/focal 0.651, 0.654, 0.6475 against fpn/focal 0.646, 0.655, 0.643: 6 of the 9 seed combinations
    assert close["prob_better"] == pytest.approx(6 / 9)
    assert close["verdict"] == "inconclusive"

    # Holm over the three rows (K = 3: K(K-1)/2 pairs) of one dataset and metric, by hand
    p_sorted = sorted(table["p_value"])
    steps = [min(1.0, factor * p) for factor, p in zip((3, 2, 1), p_sorted, strict=True)]
    expected = dict(zip(p_sorted, np.maximum.accumulate(steps), strict=True))
    assert table["p_holm"].tolist() == pytest.approx([expected[p] for p in table["p_value"]])


def test_configuration_pairs_one_seed_other_datasets_and_unknown_configurations() -> None:
    frame = make_frame(datasets=("synthetic", "streets"))
    frame = frame[~((frame["dataset"] == "synthetic") & (frame["model"] == "fpn") & (frame["seed"] > 0))]
    top = [("synthetic", "unet", "resnet18", "focal"), ("streets", "unet", "resnet18", "ce"),
           ("synthetic", "fpn", "resnet18", "ce")]
    table = configuration_pairs(frame, top, metrics=("miou",))
    assert len(table) == 1  # the streets configuration has no partner in its dataset
    row = table.iloc[0]
    assert (row["n"], row["verdict"]) == (1, "one run")
    assert math.isnan(row["ci_low"]) and math.isnan(row["p_value"])
    with pytest.raises(ConfigError, match="synthetic/segformer/resnet18/ce has no finished cells"):
        configuration_pairs(frame, [("synthetic", "segformer", "resnet18", "ce")])


def test_configuration_pairs_verdict_follows_holm() -> None:
    frame = make_frame()
    top = [("synthetic", "unet", "resnet18", "focal"), ("synthetic", "unet", "resnet18", "ce")]
    alone = only(configuration_pairs(frame, top, metrics=("miou",)), metric="miou")
    assert alone["verdict"] == "better"
    strict = only(configuration_pairs(frame, top, metrics=("miou",), alpha=alone["p_holm"] / 2), metric="miou")
    assert strict["verdict"] == "inconclusive"  # the same interval, a stricter alpha: the test decides


def test_method_texts_name_the_method() -> None:
    for phrase in ("unit of replication is the seed", "initial weights and data order", "d_s", "t interval",
                   "t-test", "sign-flip", "0.25", "Holm", "one half", "scope", "p_value held that sign-flip p"):
        assert phrase in METHOD_PARAGRAPH
    rule = verdict_rule(0.01, 0.05)
    for phrase in ("p_holm < 0.05", "|delta| >= 0.01", "within margin", "[-0.01, +0.01]", "one run",
                   "inconclusive", "zero spread", "95 % intervals"):
        assert phrase in rule
    assert "90 % intervals" in verdict_rule(0.02, 0.1)
    text = pairs_paragraph(3, 4)
    assert "K = 3 of 4" in text and "K(K-1)/2 = 3 pairs" in text and "Post hoc" in text and "Welch" in text


def test_main_effect_interval_keeps_its_coverage_when_seeds_correlate_the_cells() -> None:
    """No true effect; the differences of cells sharing a seed correlate at 0.8 (shared initialisation and data
    order). The interval of the mean of the per-seed differences covers 0 about 95 % of the time; one built from
    every cell pair as independent would not (about 83 %)."""
    rng = np.random.default_rng(19)
    draws, combinations, seeds, rho = 4000, 2, 3, 0.8
    shared = rng.standard_normal((draws, 1, seeds))
    own = rng.standard_normal((draws, combinations, seeds))
    differences = 0.01 * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * own)  # level - baseline, per cell pair
    per_seed = differences.mean(axis=1)
    covered = [test.ci_low <= 0 <= test.ci_high for test in map(t_test, per_seed)]
    assert np.mean(covered) >= 0.93
    as_if_independent = [test.ci_low <= 0 <= test.ci_high for test in map(t_test, differences.reshape(draws, -1))]
    assert np.mean(as_if_independent) < 0.88
    # main_effects computes exactly these per-seed intervals from cells: check it on the first draws
    for draw in range(5):
        rows = []
        for c, model in enumerate(("unet", "fpn")):
            for seed in range(seeds):
                base = 0.6 + 0.01 * rng.standard_normal()
                for loss, value in (("ce", base), ("focal", base + differences[draw, c, seed])):
                    rows.append({"dataset": "synthetic", "model": model, "encoder": "resnet18", "loss": loss,
                                 "seed": seed, "miou": value})
        row = only(main_effects(pd.DataFrame(rows), metrics=("miou",)), axis="loss")
        expected = t_test(per_seed[draw])
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), abs=1e-12)
