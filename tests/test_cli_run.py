"""End to end through the CLI: a tiny 2-cell grid trains, records, resumes and reports; bad input exits 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from segbench.cli import app
from segbench.records.cells import checkpoint_path
from segbench.records.paths import TRAIN_STATE_FILE
from segbench.records.schema import as_record, unknown_fields

from support.grids import read_records, tiny_grid, write_grid
from support.processes import track

TINY = tiny_grid(losses=["ce", "focal"], dataset={"seed": 3}, train={"lr": 0.001})


WIDE = {"COLUMNS": "200"}  # rich wraps tables to the terminal width; keep cell ids on one line


@pytest.mark.slow
def test_run_records_resume_and_force(tmp_path: Path):
    grid = write_grid(tmp_path / "tiny.yaml", TINY)
    results = tmp_path / "results"
    runner = CliRunner(env=WIDE)
    outcome = runner.invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    found = read_records(results)
    assert len(found) == 2
    for cell_id, record in found.items():
        assert record["status"] == "ok", record.get("error")
        assert record["cell_id"] == cell_id and cell_id.startswith(record["slug"] + "-")
        assert record["config"]["train"]["epochs"] == 2
        matrix = torch.tensor(record["confusion_matrix"])
        assert matrix.shape == (19, 19) and matrix.dtype == torch.int64
        assert int(matrix.sum()) == record["metrics"]["num_pixels"] > 0
        assert 0.0 <= record["metrics"]["miou"] <= 1.0
        # The reported evaluation's calibration and boundaries count the same pixels as its confusion matrix.
        calibration, boundary = record["calibration"], record["boundary"]
        assert calibration["pixels"] == sum(b["pixels"] for b in calibration["bins"]) == int(matrix.sum())
        assert 0.0 <= calibration["ece"] <= 1.0 and len(calibration["bins"]) == 15
        assert 0.0 <= boundary["boundary_miou"] <= 1.0 and boundary["width_px"] == [3]  # round(0.02 x 143.1)
        assert all(i <= u for i, u in zip(boundary["intersection"], boundary["union"], strict=True))
        assert [h["epoch"] for h in record["history"]] == [1, 2]
        assert record["cost"]["params"]["total"] == 14_330_819
        assert record["environment"]["packages"]["torch"]
        assert unknown_fields(as_record(record)) == []  # records/schema.py describes every field the worker wrote
        state = torch.load(checkpoint_path(results / "cells" / cell_id, as_record(record)), weights_only=True)
        assert "segmentation_head.0.weight" in state
    assert "leaderboard" in outcome.output
    # Not a terminal: a plain line per finished cell instead of progress bars.
    assert "[1/2] ok unet__resnet18__ce__synthetic__s0  mIoU " in outcome.output
    assert "[2/2] ok unet__resnet18__focal__synthetic__s0  mIoU " in outcome.output
    rows = [line for line in outcome.output.splitlines() if line.split()[:2] == ["unet", "resnet18"]]  # leaderboard
    losses = {word for row in rows for word in row.split() if word in ("ce", "focal")}
    assert len(rows) == 2 and losses == {"ce", "focal"}

    # Running again reuses both records untouched.
    stamps = {cell_id: record["written_at"] for cell_id, record in found.items()}
    again = runner.invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert {k: r["written_at"] for k, r in read_records(results).items()} == stamps

    # --force reruns them, and the same seed gives the same numbers (CPU determinism).
    time.sleep(1.1)
    forced = runner.invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu", "--force"])
    assert forced.exit_code == 0, forced.output
    rerun = read_records(results)
    assert all(rerun[k]["written_at"] != stamps[k] for k in stamps)
    assert all(rerun[k]["confusion_matrix"] == found[k]["confusion_matrix"] for k in stamps)


def test_dry_run_lists_cells_and_writes_nothing(tmp_path: Path):
    grid = write_grid(tmp_path / "tiny.yaml", {**TINY, "models": ["unet", "fpn"]})
    results = tmp_path / "results"
    outcome = CliRunner(env=WIDE).invoke(app, ["run", str(grid), "--results", str(results), "--dry-run"])
    assert outcome.exit_code == 0, outcome.output
    assert "4 cells" in outcome.output and "fpn__resnet18__focal__synthetic__s0" in outcome.output
    assert not results.exists()
    # With a length known without reading the data, it prints the run's expected time on the CPU, as a run would.
    counted = write_grid(tmp_path / "counted.yaml", {**TINY, "train": {**TINY["train"], "epochs": None,
                                                                       "iterations": 4}})
    outcome = CliRunner(env=WIDE).invoke(app, ["run", str(counted), "--results", str(results), "--dry-run",
                                               "--device", "cpu"])
    assert outcome.exit_code == 0 and "expected time: about" in outcome.output, outcome.output
    assert not results.exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"models": ["unte"]}, "did you mean 'unet'?"),
        ({"train": {"epochs": "many", "batch_size": 4}}, "train.epochs"),
        ({"datasets": [{"name": "cityscapes", "params": {"root": "/does/not/exist"}}]}, "/does/not/exist"),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(tmp_path: Path, change: dict, expected: str):
    grid = write_grid(tmp_path / "bad.yaml", {**TINY, **change})
    results = tmp_path / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 2, outcome.output
    assert expected in outcome.output
    assert outcome.output.count("error:") == 1 and "Traceback" not in outcome.output
    assert not (results / "cells").exists()


@pytest.mark.parametrize(("parallel", "expected"), [("0", "--parallel must be at least 1, not 0"),
                                                    ("4096", "more cells in flight than the")])
def test_bad_parallel_is_one_sentence_exit_2_and_nothing_written(tmp_path: Path, parallel: str, expected: str):
    grid = write_grid(tmp_path / "tiny.yaml", TINY)
    results = tmp_path / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu",
                                       "--parallel", parallel])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.startswith("error: ") and outcome.output.count("\n") == 1 and expected in outcome.output
    assert not results.exists()


def test_unavailable_cuda_is_refused(tmp_path: Path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    grid = write_grid(tmp_path / "tiny.yaml", TINY)
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(tmp_path / "r"), "--device", "cuda"])
    assert outcome.exit_code == 2 and "no CUDA GPU" in outcome.output


@pytest.mark.slow
@pytest.mark.timeout(450)  # ~40 s here, 151 s beside another suite: its waits stretch with the load
def test_interrupted_run_resumes_without_redoing_finished_cells(tmp_path: Path):
    """Ctrl-C (SIGINT to the process group) mid-sweep, then the same command finishes the rest."""
    document = {**TINY, "train": {**TINY["train"], "epochs": 4}}
    grid = write_grid(tmp_path / "tiny.yaml", document)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "segbench", "run", str(grid), "--results", str(results), "--device", "cpu"]
    env = {**os.environ, "SEGBENCH_FAULT": "step_sleep=0.3", "COLUMNS": "200"}
    process = track(subprocess.Popen(  # its process group is killed at teardown, should the test fail
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))  # a terminal's Ctrl-C
    deadline = time.monotonic() + 300
    # Wait until the first cell has its record and the second cell's worker has trained an epoch (its state saved;
    # three epochs of two 0.3 s steps remain).
    while time.monotonic() < deadline and not (
        any(r["status"] == "ok" for r in read_records(results).values())
        and list((results / "cells").glob(f"*/{TRAIN_STATE_FILE}"))
    ):
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, output
    first = read_records(results)
    finished = {k: r["written_at"] for k, r in first.items() if r["status"] == "ok"}
    assert len(finished) == 1, output
    assert sum(r["status"] == "interrupted" for r in first.values()) == 1, output

    # The same command again, in this process (its imports and fork server are warm: no new interpreter to start).
    resumed = CliRunner(env={**WIDE, "SEGBENCH_FAULT": ""}).invoke(app, command[3:])
    assert resumed.exit_code == 0, resumed.output
    final = read_records(results)
    assert len(final) == 2 and all(r["status"] == "ok" for r in final.values())
    assert all(final[k]["written_at"] == stamp for k, stamp in finished.items())
