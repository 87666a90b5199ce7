"""`segbench show` on a cell folder written by an older segbench (tests/data/results-semantics-v1, benchmark-semantics
version 1): its record reads through the one migration (segbench.records.schema.migrate) and its weights are found
under the name that version gave them, best.pt. Showing a cell reads records only, so it must not import torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segbench.cli import app
from segbench.records.cells import checkpoint_path, read_cell_record

V1_CELL = (Path(__file__).parent / "data" / "results-semantics-v1" / "cells"
           / "unet__resnet18__ce__synthetic__s0-3c994cf963")
WIDE = {"COLUMNS": "400"}  # the cell folder's absolute path stays on one line


def checkpoint_row(cell: Path) -> str:
    outcome = CliRunner(env=WIDE).invoke(app, ["show", str(cell)])
    assert outcome.exit_code == 0, outcome.output
    return next(line for line in outcome.output.splitlines() if line.split()[:1] == ["checkpoint"])


def test_show_names_the_best_pt_of_a_semantics_v1_cell():
    row = checkpoint_row(V1_CELL)
    assert str(V1_CELL / "best.pt") in row and "missing" not in row  # its size is shown: the file was found
    record = read_cell_record(V1_CELL)
    assert record.semantics_version == 1 and checkpoint_path(V1_CELL, record) == V1_CELL / "best.pt"


def test_a_semantics_v1_record_that_names_no_checkpoint_gets_best_pt_from_the_migration(tmp_path: Path):
    cell = tmp_path / V1_CELL.name
    shutil.copytree(V1_CELL, cell)
    record = json.loads((cell / "record.json").read_text())
    del record["checkpoint"]
    (cell / "record.json").write_text(json.dumps(record))
    row = checkpoint_row(cell)
    assert str(cell / "best.pt") in row and "missing" not in row


def run_without_torch(script: str) -> None:
    """Run `script` with the v1 cell folder as argv[1] in a fresh interpreter; it fails when torch got imported."""
    check = script + "\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    done = subprocess.run([sys.executable, "-c", check, str(V1_CELL)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # a fresh interpreter
def test_reading_a_cell_record_does_not_import_torch():
    run_without_torch("import sys\n"
                      "from segbench.records.cells import checkpoint_path, read_cell_record\n"
                      "record = read_cell_record(sys.argv[1])\n"
                      "assert checkpoint_path(sys.argv[1], record).name == 'best.pt'")


def test_segbench_show_does_not_import_torch():
    run_without_torch("import sys\n"
                      "from typer.testing import CliRunner\n"
                      "from segbench.cli import app\n"
                      "outcome = CliRunner().invoke(app, ['show', sys.argv[1]])\n"
                      "assert outcome.exit_code == 0, outcome.output")
