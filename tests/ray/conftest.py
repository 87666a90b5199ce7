"""The Ray tests: ONE Ray cluster per test module (starting one costs seconds), shaped by the module's RAY_NODES,
and tiny grids run through the real CLI in a subprocess that joins it with --address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

TINY = {
    "name": "tiny-ray",
    "datasets": [{"name": "synthetic", "params": {"n_train": 4, "n_val": 2, "height": 32, "width": 64, "seed": 5}}],
    "models": ["fpn"],
    "encoders": ["resnet18"],
    "losses": ["ce", "focal"],
    "seeds": [0],
    "train": {"epochs": 1, "batch_size": 2, "crop": [32, 64]},
    "eval": {"batch_size": 2},
    "measure": {"enabled": False},
}

ONE_NODE = [{"num_cpus": 2}]  # a module without RAY_NODES gets a one-node cluster with this machine's two cores
SMALL_OBJECT_STORE = 100 * 1024**2  # the tasks pass small dicts only


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A Ray cluster on this machine for the whole module: RAY_NODES[0] is the head, the others join it."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    nodes = getattr(request.module, "RAY_NODES", ONE_NODE)
    started = Cluster(initialize_head=True, head_node_args={
        "include_dashboard": False, "object_store_memory": SMALL_OBJECT_STORE, **nodes[0]})
    try:
        for node in nodes[1:]:
            started.add_node(object_store_memory=SMALL_OBJECT_STORE, **node)
        started.wait_for_nodes()
        yield started
    finally:
        started.shutdown()


class Sweep:
    """A grid file, a results folder and the `segbench run` command between them."""

    def __init__(self, folder: Path, document: dict, address: str | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.grid = folder / "grid.yaml"
        self.grid.write_text(yaml.safe_dump(document))
        self.results = folder / "results"
        self.address = address

    def command(self, *extra: str, executor: str = "ray") -> list[str]:
        where = ["--executor", "ray", *(["--address", self.address] if self.address else [])]
        return [sys.executable, "-m", "segbench", "run", str(self.grid), "--results", str(self.results),
                "--device", "cpu", *(where if executor == "ray" else []), *extra]

    def env(self, fault: str = "") -> dict[str, str]:
        return {**os.environ, "SEGBENCH_FAULT": fault, "COLUMNS": "200"}

    def run(self, *extra: str, executor: str = "ray", fault: str = "", timeout: float = 300
            ) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*extra, executor=executor), capture_output=True, text=True,
                              timeout=timeout, env=self.env(fault))

    def start(self, *extra: str, fault: str = "") -> subprocess.Popen:
        return subprocess.Popen(self.command(*extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env(fault), start_new_session=True)

    def records(self) -> dict[str, dict]:
        return {p.parent.name: json.loads(p.read_text()) for p in sorted(self.results.glob("cells/*/record.json"))}

    def workers(self) -> list[psutil.Process]:
        """The live worker processes training cells into this results folder (Ray starts them, not the driver)."""
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            command = " ".join(process.info["cmdline"] or [])
            if ("segbench.execution.worker" in command and str(self.results) in command
                    and process.info["status"] != psutil.STATUS_ZOMBIE):
                found.append(process)
        return found

    def wait_for(self, condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 240) -> None:
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
    """sweep(folder, address=None, **grid changes): a Sweep over TINY with those changes."""

    def make(folder: str = "sweep", address: str | None = None, **changes: Any) -> Sweep:
        return Sweep(tmp_path / folder, {**TINY, **changes}, address)

    return make
