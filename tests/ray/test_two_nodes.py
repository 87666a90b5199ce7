"""A simulated two-node cluster on this machine (ray.cluster_utils.Cluster, logical GPUs): cells spread over both
nodes, each sees only its own GPU in CUDA_VISIBLE_DEVICES, the record says where it ran, and the workers' progress
events reach the driver's display. The cells still train on the CPU (device cpu, one GPU asked per cell)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segbench.execution.ray_executor import ray_executor
from segbench.execution.runner import run_grid
from segbench.grid.cells import Cell
from segbench.grid.load import load_grid

pytestmark = pytest.mark.slow

# A head without CPUs (the driver's node, as a login node), and two worker nodes with one CPU and one GPU each.
RAY_NODES = [{"num_cpus": 0}, {"num_cpus": 1, "num_gpus": 1}, {"num_cpus": 1, "num_gpus": 1}]


class RecordingView:
    """A progress view that keeps what the runner showed, in order: (what, cell slug, event or record)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def begin(self, total: int) -> None: ...
    def tick(self) -> None: ...
    def note(self, text: str) -> None: ...
    def end(self) -> None: ...

    def started(self, cell: Cell) -> None:
        self.calls.append(("started", cell.slug, None))

    def event(self, cell: Cell, event: dict) -> None:
        self.calls.append(("event", cell.slug, event))

    def finished(self, cell: Cell, record: dict) -> None:
        self.calls.append(("finished", cell.slug, record))


def test_cells_spread_over_both_nodes_each_with_its_own_gpu_and_report_progress(cluster, sweep, tmp_path: Path):
    s = sweep()
    view = RecordingView()
    with ray_executor(s.results, device="cpu", address=cluster.address, gpus_per_cell=1) as executor:
        assert (executor.device, executor.max_in_flight) == ("cpu", 2)
        summary = run_grid(load_grid(s.grid), s.results, device=executor.device, executor=executor,
                           cache_dir=tmp_path / "cache", view=view)
    assert summary.exit_code == 0 and summary.count("ok") == 2

    executions = [record["execution"] for record in s.records().values()]
    worker_nodes = {node.node_id for node in cluster.list_all_nodes()} - {cluster.head_node.node_id}
    assert {execution["node_id"] for execution in executions} == worker_nodes  # one cell on each worker node
    for execution in executions:
        assert execution["executor"] == "ray" and execution["threads"] == 1
        assert execution["gpu_ids"] == ["0"]  # its node's one GPU, and no other

    for slug in {record["slug"] for record in s.records().values()}:
        shown = [(what, detail) for what, cell, detail in view.calls if cell == slug]
        assert shown[0] == ("started", None) and shown[-1][0] == "finished"
        kinds = [detail["event"] for what, detail in shown if what == "event"]
        assert kinds[0] == "start" and kinds[-1] == "done" and "step" in kinds and "epoch" in kinds


def test_an_interrupted_run_stops_the_remote_workers_and_each_records_interrupted(cluster, sweep, tmp_path: Path):
    class InterruptAtFirstStep(RecordingView):
        def event(self, cell: Cell, event: dict) -> None:
            super().event(cell, event)
            if event["event"] == "step":
                raise KeyboardInterrupt  # as Ctrl-C in the driver while cells train

    s = sweep(train={"epochs": 3, "batch_size": 2, "crop": [32, 64]})
    view = InterruptAtFirstStep()
    with ray_executor(s.results, device="cpu", address=cluster.address, gpus_per_cell=1) as executor:
        summary = run_grid(load_grid(s.grid), s.results, device=executor.device, executor=executor,
                           cache_dir=tmp_path / "cache", view=view)
    assert summary.interrupted and summary.exit_code == 130
    records = {record["slug"]: record for record in s.records().values()}
    assert len(records) == 2 and all(record["status"] == "interrupted" for record in records.values())
    (stepped,) = {cell for what, cell, detail in view.calls if what == "event" and detail["event"] == "step"}
    # Written by that cell's worker itself: the stop reached it on its node while it trained.
    assert records[stepped]["error"]["message"] == "the run was interrupted; run the grid again to resume"
    assert not s.workers()
