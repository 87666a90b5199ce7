"""One tiny trained cell, shared by the tests of predict (trained once per session), and one written cell (a built
record with its files, no training) for the tests that only read a finished cell: show, TensorBoard logging."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segbench.cli import app

from support.grids import PREDICT_GRID as GRID
from support.grids import PREDICT_SYNTHETIC as SYNTHETIC
from support.records import record, write_results


@dataclass(frozen=True)
class WrittenCell:
    results: Path
    cell_dir: Path
    record: dict


@pytest.fixture(scope="session")
def written_cell(tmp_path_factory: pytest.TempPathFactory) -> WrittenCell:
    """A finished cell as the worker leaves it (record, example PNGs, per-image counts, a checkpoint of a tiny
    model), its last class in neither ground truth nor prediction (IoU undefined)."""
    import torch

    from segbench.records.paths import cell_dir

    finished = record(absent=[18])
    results = write_results(tmp_path_factory.mktemp("written-cell") / "results", [finished], files=True,
                            checkpoint=torch.nn.Conv2d(3, 19, 1).state_dict())
    return WrittenCell(results, cell_dir(results, finished["cell_id"]), finished)


@dataclass(frozen=True)
class TrainedCell:
    results: Path
    cell_dir: Path
    record: dict
    val_images: Path  # the Cityscapes-format folder of the cell's val images (leftImg8bit/val)


@pytest.fixture(scope="session")
def trained_cell(tmp_path_factory: pytest.TempPathFactory) -> TrainedCell:
    from segbench.datasets import build_dataset, parse_dataset_params

    base = tmp_path_factory.mktemp("predict-cell")
    grid = base / "grid.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    results = base / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    (record_path,) = sorted(results.glob("cells/*/record.json"))
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok", record.get("error")
    val = build_dataset("synthetic", parse_dataset_params("synthetic", SYNTHETIC), "val", None)
    return TrainedCell(results, record_path.parent, record, val.root / "leftImg8bit" / "val")
