"""A finished cell evaluated again with new evaluation settings (issue 22): its saved weights are evaluated, nothing
trains (SEGBENCH_FAULT=no_training makes any training step fail), and what is recorded is what `segbench predict` and
`segbench evaluate` give on the same inputs. Each test works on a copy of the session's trained cell."""

from __future__ import annotations

import copy
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segbench.cli import app

from support.grids import PREDICT_GRID as GRID
from support.grids import Sweep

WIDE = {"COLUMNS": "200"}


def copied(trained_cell, folder: Path, **evaluation) -> Sweep:
    """A sweep of the trained cell's grid with `evaluation` added to its eval section, over a copy of its results."""
    document = copy.deepcopy(GRID)
    document["eval"].update(evaluation)
    sweep = Sweep(folder, document)
    shutil.copytree(trained_cell.results, sweep.results)
    return sweep


def said(outcome) -> str:
    """What a run printed (the progress lines go to stderr), on one line."""
    return " ".join((outcome.stdout + outcome.stderr).split())


def only_record(sweep: Sweep) -> dict:
    (record,) = sweep.records().values()
    return record


@pytest.mark.slow
def test_a_new_corruption_is_scored_from_the_checkpoint_as_predict_and_evaluate_score_it_by_hand(trained_cell,
                                                                                                  tmp_path):
    """Adding a corruption to a finished grid evaluates its saved weights and trains nothing; corrupting the val
    images by hand (brightness 3, keyed by the cell's seed and each image's checksum), predicting them with
    `segbench predict` and scoring with `segbench evaluate` gives the recorded mIoU and pixel accuracy exactly."""
    from segbench.datasets.corruptions import corrupt

    sweep = copied(trained_cell, tmp_path, corruptions={"names": ["brightness"], "severities": [3]})
    cell_dir = sweep.results / "cells" / trained_cell.cell_dir.name
    weights = (cell_dir / "model.pt").stat().st_mtime_ns
    outcome = sweep.run(fault="no_training=1")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert "1 to evaluate again from their saved weights (no training)" in said(outcome)
    record, trained = only_record(sweep), trained_cell.record
    assert record["cell_id"] == trained["cell_id"] and (cell_dir / "model.pt").stat().st_mtime_ns == weights
    assert record["history"] == trained["history"] and record["timing"] == trained["timing"]
    assert record["metrics"] == trained["metrics"]  # the protocol is the same: the reported split is not redone
    (again,) = record["reevaluations"]
    assert again["evaluated"] == ["1 of 1 corruption x severity results and the clean images"]
    (scored,) = record["corruptions"]["results"]
    assert record["corruptions"]["kept"] == 0 and record["corruptions"]["clean_miou"] == trained["metrics"]["miou"]

    source, corrupted = trained_cell.val_images, tmp_path / "corrupted"
    for image in sorted(source.rglob("*_leftImg8bit.png")):
        pixels = np.asarray(Image.open(image).convert("RGB"))
        shot = corrupt(pixels, "brightness", 3, (0, zlib.crc32(pixels.tobytes())))  # seed 0: the cell's
        target = corrupted / image.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot).save(target)
    out = tmp_path / "pred"
    predicted = CliRunner(env=WIDE).invoke(app, ["predict", str(cell_dir), "--input", str(corrupted), "--out",
                                                 str(out), "--device", "cpu", "--format", "trainids"])
    assert predicted.exit_code == 0, predicted.output
    params = [f"-p{key}={value}" for key, value in record["config"]["dataset"]["params"].items()]
    evaluated = CliRunner(env=WIDE).invoke(app, ["evaluate", "-d", "synthetic", *params, "--pred",
                                                 str(out / "labels"), "--out", str(tmp_path / "score.json")])
    assert evaluated.exit_code == 0, evaluated.output
    score = json.loads((tmp_path / "score.json").read_text())
    assert (score["metrics"]["miou"], score["metrics"]["pixel_accuracy"]) == (scored["miou"],
                                                                              scored["pixel_accuracy"])

    more = copied(trained_cell, tmp_path / "more", corruptions={"names": ["brightness", "contrast"],
                                                                "severities": [3]})
    shutil.rmtree(more.results)
    shutil.copytree(sweep.results, more.results)
    assert more.run(fault="no_training=1").returncode == 0
    grown = only_record(more)
    assert grown["corruptions"]["kept"] == 1 and grown["corruptions"]["results"][0] == scored
    assert [r["name"] for r in grown["corruptions"]["results"]] == ["brightness", "contrast"]
    assert len(grown["reevaluations"]) == 2 and grown["reevaluations"][1]["evaluated"] == [
        "1 of 2 corruption x severity results"]
    from segbench.analysis.report import write_report

    text = " ".join(write_report(more.results, tmp_path / "report").read_text().split())
    assert ("1 of these 1 cells were evaluated again from their saved weights with the settings shown here, nothing "
            "retrained") in text and "1 of 2 corruption x severity results" in text


@pytest.mark.slow
def test_a_new_protocol_redoes_the_reported_evaluation_from_the_checkpoint(trained_cell, tmp_path):
    """Sliding windows instead of the whole image: the reported split is evaluated again under them (what the
    checkpoint gives under that protocol, exactly), the history stays the training run's, the cell keeps its id and
    the summary's evaluation hash tells the gate that the two are not comparable."""
    from segbench.analysis.summary import summarize_folder
    from segbench.cell.data import evaluation_set
    from segbench.grid.cells import Cell
    from segbench.models import MODELS

    from support.checkpoints import evaluate_checkpoint

    sweep = copied(trained_cell, tmp_path, mode="slide", crop=[32, 64], stride=[32, 32])
    outcome = sweep.run(fault="no_training=1")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    record = only_record(sweep)
    assert record["cell_id"] == trained_cell.record["cell_id"] and record["config"]["eval"]["mode"] == "slide"
    assert record["history"] == trained_cell.record["history"]
    assert record["reevaluations"][0]["evaluated"] == ["the reported split (val) under the new protocol"]
    assert record["reevaluations"][0]["protocol"] == "sliding window 32x64, stride 32x32"
    cell = Cell.model_validate(record["config"])
    val_set = evaluation_set(cell, MODELS.get(cell.model).pad_multiple, None)
    again = evaluate_checkpoint(sweep.results / "cells" / record["cell_id"], record, val_set)
    assert again.matrix.tolist() == record["confusion_matrix"]
    assert record["metrics"]["miou"] == again.metrics["miou"]
    before, after = summarize_folder(trained_cell.results), summarize_folder(sweep.results)
    (slug,) = after.cells
    assert before.cells[slug].config_hash == after.cells[slug].config_hash
    assert before.cells[slug].evaluation is None and after.cells[slug].evaluation is not None

    rerun = sweep.run(fault="no_training=1")  # evaluated alike now: nothing to do
    assert rerun.returncode == 0 and "1 already finished" in said(rerun)
    assert only_record(sweep)["reevaluations"] == record["reevaluations"]


@pytest.mark.slow
def test_a_failed_evaluation_keeps_the_trained_record_and_a_cell_without_weights_trains_again(trained_cell,
                                                                                             tmp_path):
    """Unloadable weights: the evaluation fails with the reason, the exit code says so, and the record on disk is
    the training run's, byte for byte (the next run tries again). Without weights the cell trains again."""
    sweep = copied(trained_cell, tmp_path, corruptions={"names": ["fog"], "severities": [1]})
    folder = sweep.results / "cells" / trained_cell.cell_dir.name
    written = (folder / "record.json").read_bytes()
    (folder / "model.pt").write_bytes(b"not a checkpoint")
    outcome = sweep.run(fault="no_training=1")
    assert outcome.returncode == 1
    assert (folder / "record.json").read_bytes() == written
    assert "cannot be loaded" in said(outcome) and "the record of the trained cell is kept as it was" in said(outcome)

    (folder / "model.pt").unlink()
    retrained = sweep.run()
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    assert "has no saved weights to evaluate again; it trains again" in said(retrained)
    record = only_record(sweep)
    assert record["status"] == "ok" and "reevaluations" not in record and record["corruptions"]["results"]
    assert (folder / "model.pt").is_file()


@pytest.mark.parametrize(("section", "setting"), [
    ("eval", {"corruptions": {"names": ["fog"], "severities": [1]}}),
    ("eval", {"mode": "slide", "crop": [32, 64], "stride": [32, 32]}),
    ("eval", {"datasets": [{"name": "synthetic", "id": "night", "params": {"n_train": 1, "n_val": 3,
                                                                         "domain": "night"}}]}),
    ("measure", {"runtimes": ["torch", "onnxruntime"], "precisions": ["fp32", "int8"]})])
def test_evaluation_settings_enter_no_config_hash(section, setting):
    """Cells that differ only in their evaluation settings share their id: what trains them is the same."""
    from segbench.grid.cells import expand
    from segbench.grid.load import parse_grid

    plain, evaluated = GRID, copy.deepcopy(GRID)
    evaluated[section].update(setting)
    (one,), (two,) = (expand(parse_grid(document)).cells for document in (plain, evaluated))
    assert one.id == two.id and one.evaluation == {} and set(two.evaluation[section]) == set(setting)
    assert one.resolved() != two.resolved()  # the record still says how the cell was evaluated
