"""The Ray tests: ONE Ray cluster per test module (starting one costs seconds), shaped by the module's RAY_NODES,
and tiny grids run through the real CLI in a subprocess that joins it with --address."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.grids import Sweep, tiny_grid

TINY = tiny_grid("tiny-ray", models=["fpn"], losses=["ce", "focal"],
                 dataset={"n_train": 4, "n_val": 2, "height": 32, "width": 64},
                 train={"epochs": 1, "batch_size": 2}, eval={"batch_size": 2}, measure={"enabled": False})

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


@pytest.fixture
def sweep(tmp_path: Path) -> Callable[..., Sweep]:
    """sweep(folder, address=None, **grid changes): a Sweep over TINY with whole sections replaced, run by
    `--executor ray` joining the cluster at `address` (None: the CLI starts a local Ray instance)."""

    def make(folder: str = "sweep", address: str | None = None, **changes: Any) -> Sweep:
        run_args = ("--executor", "ray", *(("--address", address) if address else ()))
        return Sweep(tmp_path / folder, TINY | changes, run_args)

    return make
