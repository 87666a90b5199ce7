"""Main effects over paired cells and pairs of top configurations, on small frames whose answer is known by
construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segbench.analysis.comparisons import (
    COLUMNS,
    METHOD_PARAGRAPH,
    configuration_pairs,
    main_effects,
    parse_baselines,
)
from segbench.errors import ConfigError

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


def test_columns_are_exactly_the_csv_columns() -> None:
    assert list(main_effects(make_frame()).columns) == COLUMNS
    assert list(main_effects(make_frame().iloc[0:0]).columns) == COLUMNS
    assert COLUMNS == ["dataset", "axis", "level", "baseline", "metric", "n", "mean_level", "mean_baseline", "delta",
                       "ci_low", "ci_high", "p_value", "p_holm", "prob_better", "verdict"]


def test_clearly_better_loss_is_better() -> None:
    table = main_effects(make_frame(focal_effect=0.05))
    row = only(table, axis="loss", level="focal", metric="miou")
    assert row["baseline"] == "ce"
    assert row["n"] == 6
    assert row["delta"] == pytest.approx(0.05 + np.mean(list(JITTER.values())))
    assert row["ci_low"] > 0.04 and row["ci_high"] < 0.06
    assert row["p_value"] == pytest.approx(2 / 2**6)  # every pair favours focal: the exact floor with 6 pairs
    assert row["prob_better"] == 1.0
    assert row["verdict"] == "better"
    assert set(table["axis"]) == {"model", "loss"}  # one encoder: nothing to compare on that axis
    assert set(table["metric"]) == {"miou", "pixel_accuracy", "mdice"}


def test_tiny_differences_are_within_noise() -> None:
    row = only(main_effects(make_frame(focal_effect=0.001, jitter_scale=0.2)), axis="loss", metric="miou")
    assert abs(row["delta"]) < 0.002
    assert row["verdict"] == "within noise"


def test_large_noise_is_inconclusive_and_lower_is_better_metric_flips() -> None:
    frame = make_frame(focal_effect=0.01, jitter_scale=20.0)
    frame["latency_ms"] = np.where(frame["loss"] == "focal", 12.0, 10.0) + frame["seed"] * 0.1
    table = main_effects(frame, metrics=("miou", "latency_ms"), higher_is_better={"latency_ms": False})
    assert only(table, axis="loss", metric="miou")["verdict"] == "inconclusive"
    latency = only(table, axis="loss", metric="latency_ms")
    assert latency["delta"] == pytest.approx(2.0)
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
    assert miou["n"] == 5
    focal = frame[(frame["loss"] == "focal") & (frame["seed"] < 3)]
    assert miou["mean_level"] == pytest.approx(focal["miou"].mean())
    assert only(table, axis="loss", metric="mdice")["n"] == 4


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
    assert row["n"] == 3
    assert row["prob_better"] == 1.0
    assert row["verdict"] == "better"

    close = only(table, level="unet/resnet18/focal", baseline="fpn/resnet18/focal")
    # unet/focal 0.651, 0.654, 0.6475 against fpn/focal 0.646, 0.655, 0.643: 6 of the 9 seed combinations
    assert close["prob_better"] == pytest.approx(6 / 9)
    assert close["verdict"] == "inconclusive"

    # Holm over the three rows of one dataset and metric, by hand
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


def test_method_paragraph_names_the_method() -> None:
    for phrase in ("paired t interval", "sign-flip", "Holm", "one half", "margin", "0.25", "0.03", "Welch"):
        assert phrase in METHOD_PARAGRAPH
