"""Helpers for the fault-injection battery: tiny grids run through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

TINY = {
    "name": "faults",
    "datasets": [{"name": "synthetic", "params": {"n_train": 8, "n_val": 4, "height": 64, "width": 128, "seed": 5}}],
    "models": ["fpn"],
    "encoders": ["resnet18"],
    "losses": ["ce", "focal"],
    "seeds": [0],
    "train": {"epochs": 2, "batch_size": 4, "crop": [64, 128]},
    "eval": {"batch_size": 4},
    "measure": {"budget_s": None, "warmup": 1, "iters": 2, "batch_size": 2, "memory": False},
}


class Sweep:
    """A grid file, a results folder and the command that runs one into the other."""

    def __init__(self, tmp_path: Path, document: dict) -> None:
        self.grid = tmp_path / "grid.yaml"
        self.grid.write_text(yaml.safe_dump(document))
        self.results = tmp_path / "results"

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "segbench", "run", str(self.grid), "--results", str(self.results),
                "--device", "cpu", *extra]

    def env(self, fault: str = "") -> dict[str, str]:
        return {**os.environ, "SEGBENCH_FAULT": fault, "COLUMNS": "200"}

    def run(self, *extra: str, fault: str = "", timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*extra), capture_output=True, text=True, timeout=timeout,
                              env=self.env(fault))

    def start(self, *extra: str, fault: str = "") -> subprocess.Popen:
        # As from a terminal: Ctrl-C is not ignored, even when pytest itself runs as a background job.
        return subprocess.Popen(self.command(*extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env(fault), start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def records(self) -> dict[str, dict]:
        return {p.parent.name: json.loads(p.read_text()) for p in sorted(self.results.glob("cells/*/record.json"))}

    @staticmethod
    def workers(runner_pid: int) -> list[int]:
        """Pids of the live worker processes of a running `segbench run` (processes may end while it looks)."""
        pids = []
        try:
            children = psutil.Process(runner_pid).children(recursive=True)
        except psutil.Error:
            return []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE and "segbench.execution.worker" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                pass
        return pids

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


@pytest.fixture
def sweep(tmp_path: Path) -> Callable[..., Sweep]:
    def make(folder: str = "sweep", **changes) -> Sweep:
        base = tmp_path / folder
        base.mkdir(exist_ok=True)
        return Sweep(base, {**TINY, **changes})

    return make
