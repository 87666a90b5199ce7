"""Tiny grids for tests that run real cells, and the `segbench run` sweep that trains one into a results folder.

Every end-to-end test starts from `tiny_grid`: one synthetic dataset small enough to train a cell in seconds on a
CPU, with the latency timing cut to a few fixed iterations and no memory probe. Tests change what they are about
(models, losses, seeds, epochs, image size) through its keyword arguments, so the shared part lives here once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from segbench.execution.local import WORKER_MODULE, WORKER_NAME

from support.processes import kill_group, track

# A few fixed latency iterations (no time budget) and no memory probe: the cost of a tiny cell stays at seconds.
QUICK_MEASURE = {"budget_s": None, "warmup": 1, "iters": 2, "batch_size": 2, "memory": False}


def tiny_grid(name: str = "tiny", *, dataset: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
              eval: dict[str, Any] | None = None, measure: dict[str, Any] | None = None,
              **sections: Any) -> dict[str, Any]:
    """A grid document: U-Net/ResNet-18, cross-entropy, seed 0, 2 epochs of batch 4 on 8 synthetic 64x128 scenes.

    dataset, train, eval and measure update the defaults key by key (dataset: the synthetic generator's params);
    any other keyword (models, encoders, losses, seeds, datasets, ...) replaces that section.
    """
    params = {"n_train": 8, "n_val": 4, "height": 64, "width": 128, "seed": 5} | (dataset or {})
    document: dict[str, Any] = {
        "name": name,
        "datasets": [{"name": "synthetic", "params": params}],
        "models": ["unet"],
        "encoders": ["resnet18"],
        "losses": ["ce"],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 4, "crop": [params["height"], params["width"]]} | (train or {}),
        "eval": {"batch_size": 4} | (eval or {}),
        "measure": QUICK_MEASURE | (measure or {}),
    }
    return document | sections


# The grid of the trained cell shared by the tests of predict (tests/predict/conftest.py). Images of 56x120 are not
# multiples of unet's 32, so evaluation pads them and predict must crop the padding away; 3 val images at eval
# batch 2 make a full and a partial batch.
PREDICT_SYNTHETIC = {"n_train": 4, "n_val": 3, "height": 56, "width": 120, "seed": 11}
PREDICT_GRID = tiny_grid("predict", dataset=PREDICT_SYNTHETIC, train={"epochs": 1, "batch_size": 2, "lr": 0.001},
                         eval={"batch_size": 2}, measure={"enabled": False})


def write_grid(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def read_records(results: Path) -> dict[str, dict]:
    """cell id -> record of every cell folder in a results folder, as written (no validation)."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((results / "cells").glob("*/record.json"))}


class Sweep:
    """A grid file, a results folder and the `segbench run` command between them.

    run_args go on every command line (e.g. `--executor ray --address ...`). `start` runs the command in a
    subprocess of its own process group (to be killed or interrupted), killed at the end of the test
    (support.processes). `run` runs it to its end: with the local executor in this process (Typer's CliRunner), so
    it shares this process's imports and fork server and spends no seconds starting; with Ray in a subprocess (Ray's
    driver must not live in pytest's process), whose group is killed when it returns or is interrupted.
    """

    def __init__(self, folder: Path, document: dict[str, Any], run_args: tuple[str, ...] = ()) -> None:
        self.grid = write_grid(folder / "grid.yaml", document)
        self.results = folder / "results"
        self.run_args = run_args

    def command(self, *extra: str, run_args: tuple[str, ...] | None = None) -> list[str]:
        return [sys.executable, "-m", "segbench", "run", str(self.grid), "--results", str(self.results),
                "--device", "cpu", *(self.run_args if run_args is None else run_args), *extra]

    def env(self, fault: str = "") -> dict[str, str]:
        return {**os.environ, "SEGBENCH_FAULT": fault, "COLUMNS": "200"}

    def run(self, *extra: str, run_args: tuple[str, ...] | None = None, fault: str = "",
            timeout: float = 600) -> subprocess.CompletedProcess:
        command = self.command(*extra, run_args=run_args)
        if "--executor" not in command:
            from typer.testing import CliRunner

            from segbench.cli import app

            result = CliRunner(env=self.env(fault)).invoke(app, command[3:])  # after `python -m segbench`
            stderr = result.stderr
            if result.exc_info and not isinstance(result.exception, SystemExit):  # a bug: show it as Python would
                stderr += "".join(traceback.format_exception(*result.exc_info))
            return subprocess.CompletedProcess(command, result.exit_code, result.stdout, stderr)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=self.env(fault), start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:  # whatever the runner left behind (a worker, a local Ray instance) goes with it
            kill_group(process)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def start(self, *extra: str, fault: str = "") -> subprocess.Popen:
        # As from a terminal: Ctrl-C is not ignored, even when pytest itself runs as a background job.
        process = subprocess.Popen(self.command(*extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=self.env(fault), start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        return track(process)

    def records(self) -> dict[str, dict]:
        return read_records(self.results)

    def workers(self, training: bool = False) -> list[psutil.Process]:
        """The live worker processes training cells into this results folder, whoever started them: a fresh
        interpreter (a Ray node's) names its task file inside the cell's folder on its command line; a worker forked
        from the fork server is named segbench-worker and has its log in the cell's folder open. training: only
        those whose cell has no record yet (a worker that wrote its record may still be ending)."""
        cells = self.results / "cells"
        found = []
        for process in psutil.process_iter(["name", "cmdline", "status"]):
            try:
                if process.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                paths = [] if process.info["name"] != WORKER_NAME else [f.path for f in process.open_files()]
                if WORKER_MODULE in " ".join(process.info["cmdline"] or []):
                    paths += process.info["cmdline"]
                folders = {Path(path).parent for path in paths if path.startswith(str(cells))}
                if folders and not (training and all((folder / "record.json").exists() for folder in folders)):
                    found.append(process)
            except psutil.Error:  # it ended while we looked
                pass
        return found

    def wait_for(self, condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 300) -> None:
        """Wait until `condition` holds while `process` (a started run) is still running."""
        deadline = time.monotonic() + timeout
        while not condition():
            if process.poll() is not None:
                raise AssertionError(f"the run ended (exit code {process.returncode}) before the condition held:\n"
                                     f"{process.communicate()[0]}\nrecords: {self.records()}")
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached")
            time.sleep(0.1)
