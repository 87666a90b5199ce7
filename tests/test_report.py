"""`segbench report` on written records of two seeds of one cell, a failed cell and an older record of the same slug
under another config: sections, figures, CSV tables, seed grouping and the listing of failed and incomparable
cells. The records are built (support.records), not trained: the report is derived from records alone."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from segbench.analysis.figures import pareto_front
from segbench.cli import app
from segbench.colours import colourise, error_map
from segbench.records.paths import TENSORBOARD_FILE, cell_dir

from support.records import record, write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLUG = "unet__resnet18__ce__synthetic__s{seed}"
SEEDS = [record(SLUG.format(seed=0), miou=0.42, quality=True), record(SLUG.format(seed=1), miou=0.47, quality=True)]
FAILED = record("fpn__resnet18__ce__synthetic__s0", "f00000000d", status="failed", error_kind="oom",
                error_message="OutOfMemoryError: CUDA out of memory (test)")
# The same slug as seed 0 under another config, written earlier: it would top the leaderboard if it were shown.
OLDER = record(SLUG.format(seed=0), "01de000000", miou=0.99, written_at="2000-01-01T00:00:00+00:00")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The records with their cell files (examples, per-image counts); the two seeds logged to TensorBoard, as
    `segbench run --tensorboard DIR` marks a cell (tests/predict/test_tensorboard.py checks that it does)."""
    root = tmp_path_factory.mktemp("report")
    folder = write_results(root / "results", [*SEEDS, FAILED, OLDER], files=True)
    for item in SEEDS:
        log_dir = root / "tb"
        (cell_dir(folder, item["cell_id"]) / TENSORBOARD_FILE).write_text(
            json.dumps({"log_dir": str(log_dir), "run": str(log_dir / item["cell_id"])}))
    return folder


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-out") / "report"
    outcome = CliRunner().invoke(app, ["report", str(results), "--out", str(out)])
    assert outcome.exit_code == 0, outcome.output
    return out / "report.md"


def test_report_has_every_section(report: Path):
    text = report.read_text()
    for heading in ("# segbench report", "## Dataset: synthetic", "### Leaderboard", "### Accuracy vs cost",
                    "### Micro vs macro scores", "### Per-class IoU", "### Best cell", "### Training curves",
                    "### Calibration and boundaries", "### Cost in detail", "## Seeds", "## Comparisons",
                    "## Failed cells", "## Not comparable",
                    "## Environment", "## Metric definitions"):
        assert heading in text, heading
    assert "pixel accuracy" in text and "docs/metrics.md" in text
    assert "**" in text  # the best value of a column is marked
    assert "micro sensitivity = micro Dice" in text  # the one line on why micro and macro differ
    assert "Evaluation protocol: whole image." in text  # how the predictions were made (eval.mode)
    # The two seeds were logged to TensorBoard: the report says where (the failed and older cells were not).
    assert "TensorBoard logs (per step) of 2 of these" in text and "`tensorboard --logdir " in text


def test_figures_exist_and_are_pngs(report: Path):
    figures = sorted((report.parent / "figures").glob("*.png"))
    names = {path.name for path in figures}
    assert names == {f"synthetic-{kind}.png" for kind in ("pareto", "per-class-iou", "iou-vs-share", "confusion",
                                                           "examples", "training", "seeds", "reliability")}
    for path in figures:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, path.name
        assert f"(figures/{path.name})" in report.read_text()


def test_csv_tables_parse_and_hold_raw_numbers(report: Path):
    leaderboard = pd.read_csv(report.parent / "leaderboard-synthetic.csv")
    assert len(leaderboard) == 2 and set(leaderboard["cell"]) == {"unet/resnet18/ce/s0", "unet/resnet18/ce/s1"}
    best = max(SEEDS, key=lambda r: r["metrics"]["miou"])
    assert leaderboard["miou"].iloc[0] == pytest.approx(best["metrics"]["miou"])
    assert leaderboard["params"].iloc[0] == best["cost"]["params"]["total"]
    calibration = pd.read_csv(report.parent / "calibration-synthetic.csv")
    assert calibration["ece"].iloc[0] == pytest.approx(best["calibration"]["ece"])
    assert calibration["boundary_miou"].iloc[0] == pytest.approx(best["boundary"]["boundary_miou"])
    per_class = pd.read_csv(report.parent / "per-class-iou-synthetic.csv", index_col="class")
    assert len(per_class) == 19 and list(per_class.columns) == ["unet/resnet18/ce/s0", "unet/resnet18/ce/s1"]
    for name in ("micro-macro-synthetic.csv", "cost-synthetic.csv", "environment.csv", "failed.csv"):
        assert not pd.read_csv(report.parent / name).empty, name


def test_seeds_are_grouped_with_mean_and_sd(report: Path):
    groups = pd.read_csv(report.parent / "seed-statistics.csv")
    assert len(groups) == 1
    group = groups.iloc[0]
    values = [r["metrics"]["miou"] for r in SEEDS]
    assert group["configuration"] == "unet/resnet18/ce" and group["n"] == 2 and group["seeds"] == "0,1"
    assert group["miou_mean"] == pytest.approx(statistics.mean(values))
    assert group["miou_sd"] == pytest.approx(statistics.stdev(values))
    assert [float(v) for v in group["miou_values"].split(";")] == pytest.approx(values, abs=1e-6)
    assert f"{statistics.mean(values) * 100:.2f} +- {statistics.stdev(values) * 100:.2f} [" in report.read_text()


def test_one_configuration_has_nothing_to_compare(report: Path):
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert comparisons.empty and "dataset" in comparisons.columns  # the header alone
    assert "_(no axis has two values" in report.read_text().split("\n## Comparisons")[1]


def test_failed_and_superseded_cells_are_listed(report: Path):
    text = report.read_text()
    failed = text.split("## Failed cells")[1].split("##")[0]
    assert "fpn__resnet18__ce__synthetic__s0" in failed and "CUDA out of memory (test)" in failed
    incomparable = text.split("## Not comparable")[1].split("##")[0]
    assert "01de000000" in incomparable and "not comparable" in incomparable
    assert "99.00" not in text.split("## Seeds")[0]  # the superseded record is in no table


def test_report_of_a_folder_without_records_is_a_one_line_error(tmp_path: Path):
    outcome = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert outcome.exit_code == 2 and outcome.output.startswith("error: ")


def test_pareto_front_and_colouring():
    assert pareto_front([1.0, 2.0, 3.0, 2.5], [0.5, 0.7, 0.6, 0.8]) == [0, 1, 3]
    label = pd.DataFrame([[0, 1], [255, 1]]).to_numpy().astype("uint8")
    rgb = colourise(label, [[10, 20, 30], [40, 50, 60]], 255)
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[1, 0].tolist() == [0, 0, 0]
    errors = error_map(label, label[::-1], 255)
    assert errors[1, 0].tolist() == [0, 0, 0] and errors[0, 0].tolist() == [220, 30, 30]


def test_latency_figures_and_the_html_chart_say_when_machines_are_mixed(tmp_path: Path):
    """A merged folder's cells timed on two machine fingerprints: the figures' titles and the HTML chart's latency
    axes say that their latencies compare only within one machine; one machine: nothing is added."""
    from segbench.analysis.figures import machines_note
    from segbench.analysis.report import write_report
    from segbench.records.schema import Record

    one = [Record.model_validate(record(machine="machine-a")),
           Record.model_validate(record(slug="fpn__resnet18__ce__synthetic__s0", machine="machine-a"))]
    two = [one[0], Record.model_validate(record(slug="fpn__resnet18__ce__synthetic__s0", machine="machine-b"))]
    assert machines_note(one) == ""
    assert machines_note(two) == ("\nlatencies from 2 machines (cost CSV, column machine): compare only within one")
    results = write_results(tmp_path / "results", [item.to_json() for item in two])
    markdown = write_report(results, tmp_path / "report", html=True)
    page = (markdown.parent / "report.html").read_text()
    assert "latency p50, batch 1 (ms); latencies from 2 machines (cost CSV, column machine): compare only within one" \
        in page
    # Each leaderboard row names the machine its latency was timed on, and the rows filter by it.
    board = markdown.read_text().split("### Leaderboard")[1].split("CSV (raw units)")[0]
    assert "| latency machine |" in board and "| machine-a |" in board and "| machine-b |" in board
    assert '<label>latency machine <select class="table-select"' in page.split('class="table-block"')[1]
    single = write_results(tmp_path / "single", [item.to_json() for item in one])
    board = write_report(single, tmp_path / "single-report").read_text().split("### Leaderboard")[1]
    assert "latency machine" not in board.split("CSV (raw units)")[0]  # one machine: the sentence above says so
    csv = pd.read_csv(tmp_path / "single-report" / "leaderboard-synthetic.csv")
    assert csv["machine"].tolist() == ["machine-a"] * 2
