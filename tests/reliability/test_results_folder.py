"""One run per results folder; an unwritable folder is refused before any training."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segbench.cli import app
from segbench.errors import ConfigError
from segbench.execution.lock import LOCK_FILE, ResultsLock
from segbench.execution.runner import check_writable

GRID = {
    "datasets": [{"name": "synthetic", "params": {"n_train": 4, "n_val": 2, "height": 64, "width": 64}}],
    "models": ["fpn"], "encoders": ["resnet18"], "losses": ["ce"],
    "train": {"epochs": 1, "batch_size": 2, "crop": [64, 64]},
    "measure": {"budget_s": None, "warmup": 1, "iters": 1, "batch_size": 2, "memory": False},
}


def grid_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(GRID))
    return path


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(tmp_path: Path):
    results = tmp_path / "results"
    with ResultsLock(results):
        outcome = CliRunner().invoke(app, ["run", str(grid_file(tmp_path)), "--results", str(results)])
    assert outcome.exit_code == 2
    assert f"pid {os.getpid()}" in outcome.output and LOCK_FILE in outcome.output
    assert not (results / "cells").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path):
    results = tmp_path / "results"
    results.mkdir()
    (results / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone", "started_at": "earlier"}))
    lock = ResultsLock(results).acquire()
    try:
        assert lock.previous_holder["pid"] == 999999
        assert json.loads((results / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_results_under_a_file_are_refused_before_training(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    outcome = CliRunner().invoke(app, ["run", str(grid_file(tmp_path)), "--results", str(blocker / "results")])
    assert outcome.exit_code == 2 and "cannot be written" in outcome.output


def test_a_full_disk_is_detected_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(ConfigError, match="No space left on device"):
        check_writable(tmp_path / "results")
