"""`segbench report` on hand-made records whose answer is known: 2 models x 2 losses x 3 seeds, focal clearly better
than cross-entropy, FPN and U-Net equal within the margin. Seed statistics and their figure, the main-effects and
conditional-effects tables with verdicts, the top-configuration pairs, comparisons.csv, baselines from the saved grid
or --baseline, --alpha, the mIoU interval in the leaderboard, time to accuracy in the cost table, and bad options as
one-line errors. Then the same cells with the evaluation under conditions (ECE, boundary mIoU, corruptions, further
datasets), carried by all or some cells: their comparisons, in each metric's direction."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from segbench.analysis.effects import COLUMNS, METHOD_PARAGRAPH, pairs_paragraph, verdict_rule
from segbench.analysis.effects_section import metrics_paragraph
from segbench.cli import app
from segbench.records.grids import grid_axis_order
from segbench.records.paths import grids_dir
from segbench.records.store import write_record

from support import records

MODEL_BASE = {"unet": 0.600, "fpn": 0.598}
SEED_OFFSET = {0: 0.0, 1: 0.006, 2: -0.004}  # shared by the cells of one seed: pairing removes it
JITTER = {("unet", 0): 0.001, ("unet", 1): -0.002, ("unet", 2): 0.0015,
          ("fpn", 0): -0.001, ("fpn", 1): 0.002, ("fpn", 2): 0.0}
FOCAL_EFFECT = 0.05
CLASSES = ["road", "car", "sky"]


def record(model: str, loss: str, seed: int, miou: float, interval: bool = True) -> dict:
    """A finished cell over CLASSES whose val mIoU reached 50 %, 95 % and 100 % of `miou` after epochs of 2 s and 10
    iterations each."""
    return records.record(f"{model}__resnet18__{loss}__synthetic__s{seed}", miou=miou, classes=CLASSES,
                          history_shares=(0.5, 0.95, 1.0), epoch_time_s=2.0, iterations_per_epoch=10,
                          intervals=interval)


def cell_miou(model: str, loss: str, seed: int) -> float:
    effect = FOCAL_EFFECT + JITTER[model, seed] if loss == "focal" else 0.0
    return MODEL_BASE[model] + SEED_OFFSET[seed] + effect


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("comparisons") / "results"
    for model in MODEL_BASE:
        for loss in ("ce", "focal"):
            for seed in SEED_OFFSET:
                write_record(folder, record(model, loss, seed, cell_miou(model, loss, seed),
                                            interval=(model, loss, seed) != ("fpn", "ce", 2)))
    # The resolved grid a run saves: its first loss (focal) is the default baseline of the loss axis.
    grids_dir(folder).mkdir(parents=True)
    grid = {"name": "tiny", "models": ["unet", "fpn"], "encoders": ["resnet18"],
            "losses": [{"name": "focal", "gamma": 2.0, "class_weights": None, "id": None},
                       {"name": "ce", "gamma": 2.0, "class_weights": None, "id": None}]}
    (grids_dir(folder) / "tiny-0123456789.yaml").write_text(yaml.safe_dump(grid))
    return folder


def run_report(results: Path, out: Path, *options: str) -> tuple[str, Path]:
    outcome = CliRunner().invoke(app, ["report", str(results), "--out", str(out), *options])
    return outcome.output, out / "report.md"


@pytest.fixture(scope="module")
def default_report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output, report = run_report(results, tmp_path_factory.mktemp("default") / "report")
    assert report.is_file(), output
    return report


@pytest.fixture(scope="module")
def ce_report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output, report = run_report(results, tmp_path_factory.mktemp("ce") / "report", "--baseline", "loss=ce",
                                "--baseline", "model=unet", "--margin", "0.01")
    assert report.is_file(), output
    return report


def row(table: pd.DataFrame, **where: object) -> pd.Series:
    for column, value in where.items():
        table = table[table[column] == value]
    assert len(table) == 1, where
    return table.iloc[0]


def test_comparisons_csv_has_the_columns_and_the_verdicts(ce_report: Path):
    table = pd.read_csv(ce_report.parent / "comparisons.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == COLUMNS
    focal = row(table, axis="loss", level="focal", baseline="ce", scope="all", metric="miou")
    assert focal["verdict"] == "better" and focal["n"] == 3 and focal["prob_better"] == 1.0
    assert focal["delta"] == pytest.approx(FOCAL_EFFECT + statistics.mean(JITTER.values()))
    d = [statistics.mean(cell_miou(model, "focal", seed) - cell_miou(model, "ce", seed) for model in MODEL_BASE)
         for seed in SEED_OFFSET]  # one difference per seed, averaged over the models
    assert focal["p_value"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert focal["p_signflip"] == pytest.approx(0.25) and focal["p_holm"] < 0.05
    model = row(table, axis="model", level="fpn", baseline="unet", scope="all", metric="miou")
    assert model["verdict"] == "within margin"
    assert set(table["metric"]) == {"miou", "pixel_accuracy", "mdice"}  # no record carries any other metric
    conditional = table[(table["scope"] != "all") & (table["metric"] == "miou")]
    assert sorted(zip(conditional["axis"], conditional["scope"], strict=True)) == [
        ("loss", "model=fpn"), ("loss", "model=unet"), ("model", "loss=ce"), ("model", "loss=focal")]
    within_unet = row(conditional, axis="loss", scope="model=unet")
    d_unet = [cell_miou("unet", "focal", seed) - cell_miou("unet", "ce", seed) for seed in SEED_OFFSET]
    assert within_unet["n"] == 3 and within_unet["delta"] == pytest.approx(statistics.mean(d_unet))
    assert within_unet["verdict"] == "better"
    pairs = table[table["axis"] == "configuration"]
    assert len(pairs) == 3 * 3  # the top 3 configurations: 3 pairs, 3 metrics each
    assert set(pairs["level"]) | set(pairs["baseline"]) == {"unet/resnet18/focal", "fpn/resnet18/focal",
                                                              "unet/resnet18/ce"}
    assert (pairs["n"] == 3).all() and pairs["p_signflip"].isna().all() and (pairs["scope"] == "all").all()


def test_the_default_baseline_is_the_first_value_in_the_saved_grid(default_report: Path):
    table = pd.read_csv(default_report.parent / "comparisons.csv")
    loss = row(table, axis="loss", scope="all", metric="miou")
    assert (loss["level"], loss["baseline"], loss["verdict"]) == ("ce", "focal", "worse")
    text = default_report.read_text()
    assert "Baselines: model=unet, loss=focal (first values in `grids/tiny-0123456789.yaml`)." in text


def test_the_report_shows_the_method_the_rule_the_tables_and_n_seeds(ce_report: Path):
    text = ce_report.read_text()
    comparisons = text.split("\n## Comparisons")[1]
    assert METHOD_PARAGRAPH in comparisons and verdict_rule(0.01, 0.05) in comparisons
    assert "Metrics compared: mIoU; pixel acc; mDice. Each is a fraction in the CSV" in comparisons
    assert pairs_paragraph(3, 4) in comparisons  # K = 3 of 4 configurations, 3 pairs in the Holm family
    main = comparisons.split("#### Main effects")[1].split("#### Conditional effects")[0]
    conditional = comparisons.split("#### Conditional effects")[1].split("#### Top 3 configurations, pairwise")[0]
    for header in ("n seeds", "p (t-test)", "p (sign-flip)", "p (Holm)", "95 % CI of delta", "P(better)",
                   "verdict", "note"):
        assert header in main and header in conditional, header
    assert "| within |" in conditional and "| model=unet |" in conditional and "| within |" not in main
    assert "**better**" in main and "within margin" in main
    assert "Baselines: model=unet, loss=ce (--baseline)." in main
    assert "[comparisons.csv](comparisons.csv)" in comparisons


@pytest.mark.slow  # two reports (5 s)
def test_alpha_sets_the_interval_and_the_rule(results: Path, tmp_path: Path):
    output, report = run_report(results, tmp_path / "report", "--alpha", "0.1")
    assert report.is_file(), output
    comparisons = report.read_text().split("\n## Comparisons")[1]
    assert "90 % CI of delta" in comparisons and verdict_rule(0.01, 0.1) in comparisons
    table = pd.read_csv(report.parent / "comparisons.csv")
    loss = row(table, axis="loss", scope="all", metric="miou")  # default baseline: focal, from the saved grid
    d = [statistics.mean(cell_miou(model, "ce", seed) - cell_miou(model, "focal", seed) for model in MODEL_BASE)
         for seed in SEED_OFFSET]
    interval = stats.ttest_1samp(d, 0).confidence_interval(0.9)
    assert (loss["ci_low"], loss["ci_high"]) == pytest.approx((interval.low, interval.high))


def test_seed_statistics_and_their_figure(ce_report: Path):
    frame = pd.read_csv(ce_report.parent / "seed-statistics.csv")
    assert len(frame) == 4 and list(frame["n"]) == [3, 3, 3, 3]
    best = frame.iloc[0]
    assert best["configuration"] == "unet/resnet18/focal" and best["seeds"] == "0,1,2"
    values = [cell_miou("unet", "focal", seed) for seed in (0, 1, 2)]
    interval = stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
    assert best["miou_mean"] == pytest.approx(statistics.mean(values))
    assert best["miou_sd"] == pytest.approx(statistics.stdev(values))
    assert (best["miou_ci_low"], best["miou_ci_high"]) == pytest.approx((interval.low, interval.high))
    assert [float(v) for v in best["miou_values"].split(";")] == pytest.approx(values)
    seeds = ce_report.read_text().split("\n## Seeds")[1].split("\n## Comparisons")[0]
    assert f"{values[0] * 100:.2f} / {values[1] * 100:.2f} / {values[2] * 100:.2f}" in seeds
    assert "n seeds" in seeds and "(figures/synthetic-seeds.png)" in seeds
    figure = ce_report.parent / "figures" / "synthetic-seeds.png"
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 5_000


def test_leaderboard_and_cost_show_the_interval_and_time_to_accuracy(ce_report: Path):
    leaderboard = pd.read_csv(ce_report.parent / "leaderboard-synthetic.csv")
    top = leaderboard.iloc[0]
    assert top["cell"] == "fpn/resnet18/focal/s1"
    interval = record("fpn", "focal", 1, cell_miou("fpn", "focal", 1))["intervals"]["miou"]
    assert (top["miou_ci_low"], top["miou_ci_high"]) == pytest.approx((interval["low"], interval["high"]))
    assert leaderboard.set_index("cell").loc["fpn/resnet18/ce/s2", ["miou_ci_low", "miou_ci_high"]].isna().all()
    # 90 % of the final mIoU is first reached at epoch 2 (95 %): 2 epochs of 2 s, 20 iterations
    assert (leaderboard["time_to_90pct_s"] == 4.0).all() and (leaderboard["iterations_to_90pct"] == 20).all()
    cost = pd.read_csv(ce_report.parent / "cost-synthetic.csv")
    assert (cost["time_to_90pct_s"] == 4.0).all() and (cost["iterations_to_90pct"] == 20).all()
    text = ce_report.read_text()
    low, high = (top["miou_ci_low"] * 100, top["miou_ci_high"] * 100)
    assert f"[{low:.2f}, {high:.2f}]" in text and "percentile bootstrap over val images" in text
    assert "Reported weights: the final model (last iteration), epoch 3." in text


@pytest.mark.parametrize(("options", "message"), [
    (["--baseline", "loss=dice"], "'dice' is not a value of axis loss (values: ce, focal)"),
    (["--baseline", "los=ce"], "unknown axis 'los'"),
    (["--baseline", "lossce"], "is not AXIS=VALUE"),
    (["--baseline", "loss=ce", "--baseline", "loss=focal"], "gives axis loss twice"),
    (["--margin", "-0.1"], "must be zero or positive"),
    (["--alpha", "1.5"], "--alpha 1.5 must lie strictly between 0 and 1"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(results: Path, tmp_path: Path, options: list[str],
                                                           message: str):
    output, report = run_report(results, tmp_path / "report", *options)
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], output
    assert not report.exists()


def test_grid_axis_order_names_losses_as_cells_do(tmp_path: Path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"models": ["fpn", "unet"], "encoders": ["resnet18"],
                                    "losses": [{"name": "focal", "gamma": 1.0}, "ce", {"name": "ce", "id": "ce-b"}]}))
    assert grid_axis_order(grid) == {"model": ["fpn", "unet"], "encoder": ["resnet18"],
                                     "loss": ["focal-g1", "ce", "ce-b"]}
    grid.write_text("models: [unclosed")
    assert grid_axis_order(grid) == {} and grid_axis_order(None) == {}


# ---- the evaluation under conditions -------------------------------------------------------------------------------

ECE_EFFECT = -0.04  # focal lowers the calibration error by 4 points (lower is better)
ECE_JITTER = {("unet", 0): 0.002, ("unet", 1): -0.001, ("unet", 2): 0.003,
              ("fpn", 0): -0.002, ("fpn", 1): 0.001, ("fpn", 2): 0.0}
NO_ECE = ("fpn", "ce", 2)  # a cell without calibration: at seed 2 the loss's ECE difference is U-Net's alone
CORRUPTED_SHARE = 0.6  # mean corrupted mIoU = 60 % of the clean mIoU, relative robustness then 0.6 everywhere
DOMAIN_SHARE = {"fog": 0.5, "night": 0.3}  # mIoU on the further datasets, as a share of the own split's


def cell_ece(model: str, loss: str, seed: int) -> float:
    return 0.10 + SEED_OFFSET[seed] + (ECE_EFFECT + ECE_JITTER[model, seed] if loss == "focal" else 0.0)


def conditions_record(model: str, loss: str, seed: int) -> dict:
    """`record` with calibration and boundaries (not calibration for NO_ECE), one corruption at two severities, the
    fog scenes as a further dataset on every cell, and the night scenes on U-Net's cells only."""
    miou = cell_miou(model, loss, seed)
    item = records.record(f"{model}__resnet18__{loss}__synthetic__s{seed}", miou=miou, classes=CLASSES,
                          history_shares=(0.5, 0.95, 1.0), quality=True)
    item["calibration"]["ece"] = cell_ece(model, loss, seed)
    if (model, loss, seed) == NO_ECE:
        del item["calibration"]
    item["boundary"]["boundary_miou"] = miou - 0.2
    corrupted = CORRUPTED_SHARE * miou
    item["corruptions"] = {
        "names": ["fog"], "severities": [1, 3], "images": 4, "clean_miou": miou,
        "results": [{"name": "fog", "severity": 1, "miou": corrupted + 0.01, "pixel_accuracy": 0.9},
                    {"name": "fog", "severity": 3, "miou": corrupted - 0.01, "pixel_accuracy": 0.8}],
        "per_corruption": {"fog": corrupted}, "mean_corrupted_miou": corrupted, "worst": "fog",
        "relative_robustness": corrupted / miou, "seconds": 1.0, "method": "test"}
    item["domains"] = [
        {"dataset": key, "name": "synthetic", "params": {"domain": key}, "split": "val", "images": 4,
         "classes_mapped": 3, "unmapped_classes": [], "seconds": 1.0, "method": "test",
         "metrics": {"miou": share * miou, "pixel_accuracy": 0.8, "mdice": share * miou + 0.05, "num_pixels": 100,
                     "per_class_iou": [share * miou] * 3}}
        for key, share in DOMAIN_SHARE.items() if key == "fog" or model == "unet"]
    return item


@pytest.fixture(scope="module")
def conditions_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, str]:
    """comparisons.csv and the report's text, baselines ce and U-Net."""
    folder = tmp_path_factory.mktemp("conditions") / "results"
    for model in MODEL_BASE:
        for loss in ("ce", "focal"):
            for seed in SEED_OFFSET:
                write_record(folder, conditions_record(model, loss, seed))
    output, report = run_report(folder, tmp_path_factory.mktemp("conditions-report") / "report", "--baseline",
                                "loss=ce", "--baseline", "model=unet")
    assert report.is_file(), output
    table = pd.read_csv(report.parent / "comparisons.csv", keep_default_na=False, na_values=[""])
    return table, report.read_text()


def test_comparisons_cover_the_metrics_the_records_carry(conditions_table: tuple[pd.DataFrame, str]):
    table, _ = conditions_table
    assert set(table["metric"]) == {"miou", "pixel_accuracy", "mdice", "ece", "boundary_miou", "mean_corrupted_miou",
                                    "relative_robustness", "miou@fog/val", "miou@night/val"}
    for metric, share in (("mean_corrupted_miou", CORRUPTED_SHARE), ("miou@fog/val", DOMAIN_SHARE["fog"])):
        focal = row(table, axis="loss", scope="all", metric=metric)
        d = [statistics.mean(share * (cell_miou(model, "focal", seed) - cell_miou(model, "ce", seed))
                             for model in MODEL_BASE) for seed in SEED_OFFSET]
        assert focal["delta"] == pytest.approx(statistics.mean(d))
        assert focal["p_value"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
        assert focal["verdict"] == "better"
    boundary = row(table, axis="loss", scope="all", metric="boundary_miou")
    assert boundary["delta"] == pytest.approx(row(table, axis="loss", scope="all", metric="miou")["delta"])
    relative = row(table, axis="loss", scope="all", metric="relative_robustness")
    assert relative["delta"] == pytest.approx(0.0, abs=1e-12) and relative["verdict"] == "within margin"


def test_lower_ece_is_better(conditions_table: tuple[pd.DataFrame, str]):
    table, _ = conditions_table
    focal = row(table, axis="loss", level="focal", baseline="ce", scope="all", metric="ece")
    # seed 2 lacks fpn/ce's ECE: its d_s is U-Net's difference alone, nothing is filled in for FPN
    d = [statistics.mean(cell_ece(model, "focal", seed) - cell_ece(model, "ce", seed) for model in MODEL_BASE
                         if (model, "ce", seed) != NO_ECE) for seed in SEED_OFFSET]
    expected = stats.ttest_1samp(d, 0)
    assert focal["n"] == 3 and focal["delta"] == pytest.approx(statistics.mean(d)) and focal["delta"] < -0.03
    assert (focal["ci_low"], focal["ci_high"]) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert focal["p_value"] == pytest.approx(expected.pvalue) and focal["p_holm"] < 0.05
    assert focal["prob_better"] == 1.0 and focal["verdict"] == "better"
    assert "unbalanced" in focal["note"]
    within_fpn = row(table, axis="loss", scope="model=fpn", metric="ece")
    assert within_fpn["n"] == 2  # seeds 0 and 1: fpn/ce at seed 2 has no ECE to pair with
    pairs = table[(table["axis"] == "configuration") & (table["metric"] == "ece")]
    best = row(pairs, level="unet/resnet18/focal", baseline="unet/resnet18/ce")
    welch = stats.ttest_ind([cell_ece("unet", "focal", s) for s in SEED_OFFSET],
                            [cell_ece("unet", "ce", s) for s in SEED_OFFSET], equal_var=False)
    assert best["p_value"] == pytest.approx(welch.pvalue) and best["verdict"] == "better"
    assert best["prob_better"] == 1.0


def test_a_further_dataset_of_some_cells_pairs_only_those(conditions_table: tuple[pd.DataFrame, str]):
    table, _ = conditions_table
    night = table[table["metric"] == "miou@night/val"]
    assert set(night["axis"]) == {"loss", "configuration"}  # FPN was not evaluated there: no model comparison
    loss = row(night, axis="loss", scope="all")
    d = [DOMAIN_SHARE["night"] * (cell_miou("unet", "focal", seed) - cell_miou("unet", "ce", seed))
         for seed in SEED_OFFSET]
    assert loss["n"] == 3 and loss["delta"] == pytest.approx(statistics.mean(d))
    assert loss["p_value"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert loss["note"] == "only 1 of 2 combinations of the other axes carry miou@night/val: model=unet"
    assert pd.isna(row(table, axis="loss", scope="all", metric="miou@fog/val")["note"])  # every model carries fog
    assert set(night.loc[night["axis"] == "configuration", "level"]) <= {"unet/resnet18/focal", "unet/resnet18/ce"}


def test_the_report_names_each_metric_its_unit_and_direction(conditions_table: tuple[pd.DataFrame, str]):
    _, text = conditions_table
    comparisons = text.split("\n## Comparisons")[1]
    paragraph = metrics_paragraph(("miou", "pixel_accuracy", "mdice", "ece", "boundary_miou", "mean_corrupted_miou",
                                   "relative_robustness", "miou@fog/val", "miou@night/val"), 0.01)
    assert paragraph in comparisons
    for phrase in ("ECE (expected calibration error of the top-class confidence), lower is better",
                   "named `miou@<dataset key>/<split>` (`miou@fog/val`, `miou@night/val`)", "ECE included",
                   "margin of 0.01 applies to each in that unit (1 on the % scale", "no value is filled in"):
        assert phrase in paragraph, phrase
    main = comparisons.split("#### Main effects")[1].split("#### Conditional effects")[0]
    for label in ("| ECE % |", "| boundary mIoU % |", "| mean corrupted mIoU % |", "| relative robustness % |",
                  "| mIoU % on fog/val |", "| mIoU % on night/val |"):
        assert label in main, label
