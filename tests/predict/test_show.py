"""`segbench show CELL_DIR`: a finished cell, a failed one, and a folder that is not a cell (written records, no
training: tests/predict/conftest.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from typer.testing import CliRunner

from segbench.cli import app
from segbench.cli.show_cmd import BAR_WIDTH, iou_bar

from support.records import record, write_results

WIDE = {"COLUMNS": "200"}


def show(path) -> tuple[int, str]:
    outcome = CliRunner(env=WIDE).invoke(app, ["show", str(path)])
    return outcome.exit_code, outcome.output


def test_show_a_finished_cell(written_cell):
    code, output = show(written_cell.cell_dir)
    assert code == 0, output
    record = written_cell.record
    assert record["cell_id"] in output and "status ok, device cpu" in output
    assert "unet" in output and "resnet18" in output and "synthetic" in output  # configuration
    assert f"{100 * record['metrics']['miou']:.2f}" in output  # mIoU %, as reports format it
    assert "params (M)" in output and f"{record['cost']['params']['total'] / 1e6:.2f}" in output  # cost
    lines = output.split("per-class IoU")[1].splitlines()
    for name, iou in zip(record["dataset"]["classes"], record["metrics"]["per_class"]["iou"], strict=True):
        row = next(line for line in lines if line.strip().startswith(name + " "))
        if iou is None or math.isnan(iou):
            assert "n/a" in row
        else:
            assert f"{iou:.3f}" in row and iou_bar(iou) in row
    checkpoint = written_cell.cell_dir / record["checkpoint"]
    assert str(checkpoint) in output and str(written_cell.cell_dir / "record.json") in output
    assert f"{len(list((written_cell.cell_dir / 'examples').glob('*.png')))} PNGs" in output


def test_show_a_failed_cell_names_its_error(tmp_path: Path):
    failed = record(status="failed", error_kind="diverged", error_message="training loss became nan at iteration 3")
    write_results(tmp_path, [failed])
    code, output = show(tmp_path / "cells" / failed["cell_id"])
    assert code == 0, output
    assert "status failed" in output and "diverged: training loss became nan at iteration 3" in output
    assert "missing" in output  # no checkpoint


def test_show_refuses_a_folder_that_is_not_a_cell(written_cell, tmp_path):
    code, output = show(tmp_path)
    assert code == 2 and output.startswith("error:") and "not a cell folder" in output
    code, output = show(written_cell.results)
    assert code == 2 and "is a results folder" in output
    damaged = tmp_path / "damaged"
    shutil.copytree(written_cell.cell_dir, damaged, ignore=shutil.ignore_patterns("*.pt", "examples"))
    (damaged / "record.json").write_text("{ not json")
    code, output = show(damaged)
    assert code == 2 and "cannot be read" in output


def test_iou_bar_resolves_eighths():
    assert iou_bar(1.0) == "█" * BAR_WIDTH
    assert iou_bar(0.5) == "█" * (BAR_WIDTH // 2)
    assert iou_bar(1 / (BAR_WIDTH * 8)) == "▏"
    assert iou_bar(0.0) == "" and iou_bar(float("nan")) == "" and iou_bar(None) == ""
    assert iou_bar(1.7) == iou_bar(1.0)


def test_show_says_where_the_tensorboard_run_is(written_cell, tmp_path):
    from segbench.records.paths import TENSORBOARD_FILE

    cell = tmp_path / written_cell.cell_dir.name
    shutil.copytree(written_cell.cell_dir, cell)
    code, output = show(cell)
    assert code == 0 and "TensorBoard" not in output  # not logged
    (cell / TENSORBOARD_FILE).write_text(json.dumps({"log_dir": "/logs/tb", "run": f"/logs/tb/{cell.name}"}))
    code, output = show(cell)
    assert code == 0 and f"/logs/tb/{cell.name}" in output and "tensorboard --logdir /logs/tb" in output
