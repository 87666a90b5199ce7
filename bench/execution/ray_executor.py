"""The Ray executor: the cells of a grid as Ray core tasks on a cluster, each running today's isolated worker process
(`python -m segbench.execution.worker TASK_JSON`) on the node Ray picked.

A cell asks Ray for `cpus` CPUs (its torch threads; Ray sets OMP_NUM_THREADS to the same) and on CUDA one GPU per
process of the cell (train.world_size; Ray sets CUDA_VISIBLE_DEVICES). The driver keeps cells in flight with
`ray.wait`; Ray retries a task lost with its node (`max_retries`), while out-of-memory retries at a smaller batch
stay the runner's. Progress events and the driver's Ctrl-C travel through a small actor (ray_task.EventInbox). Ray
is optional: `pip install 'segbench[ray]'`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError
from segbench.execution.events import OnEvent
from segbench.execution.executor import CellTask, Placement, TaskHandle, TaskOutcome
from segbench.execution.local import _tail, oversubscription
from segbench.execution.ray_auth import driver_auth
from segbench.execution.ray_cluster import CellResources, connect, plan_cells
from segbench.execution.ray_task import EventInbox, run_cell
from segbench.faults import ENV as FAULT_ENV
from segbench.records.paths import WORKER_LOG_FILE, cell_dir

RAY = "ray"
INSTALL_HINT = "pip install 'segbench[ray]'"
POLL_S = 0.25  # how often the driver collects events while it waits for tasks
MAX_RETRIES = 3  # Ray's retries of a task whose worker process or node was lost
LOST = 1  # the exit code reported for a task Ray lost (the runner records it as worker_lost)


def import_ray() -> Any:
    """The ray module, or a ConfigError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with {INSTALL_HINT}."
                          ) from None
    return ray


@dataclass(frozen=True)
class RayPlacement(Placement):
    """A placement that also names the Ray node; known once the task starts there (until then, host "unknown")."""

    node_id: str | None = None
    node_ip: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "node_id": self.node_id, "node_ip": self.node_ip}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RayPlacement:
        gpu_ids = tuple(data["gpu_ids"]) if data.get("gpu_ids") else None
        return cls(data["executor"], data["host"], data["threads"], gpu_ids, data.get("node_id"), data.get("node_ip"))


@dataclass
class _Remote:
    handle: TaskHandle
    on_event: OnEvent


class RayExecutor:
    """Cells as Ray tasks (see the module docstring). Use `ray_executor(...)`, which connects, checks the shared
    storage and disconnects; `device` is the device the cluster trains on ('cpu' or 'cuda')."""

    def __init__(self, ray: Any, resources: CellResources, device: str, interrupt_grace_s: float = 60.0,
                 world_size: int = 1) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._ray, self.resources, self.device = ray, resources, device
        self.max_in_flight = resources.max_in_flight
        self.warning = oversubscription(device, self.max_in_flight, world_size,
                                        self.max_in_flight * resources.cpus)  # the CPUs Ray reserves for the cells
        self.interrupt_grace_s = interrupt_grace_s
        # The inbox lives beside the driver, so it outlives any worker node.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._inbox = ray.remote(num_cpus=0)(EventInbox).options(scheduling_strategy=here).remote()
        self._run_cell = ray.remote(run_cell).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                                      max_retries=MAX_RETRIES)
        self._running: dict[Any, _Remote] = {}  # ObjectRef -> the task it runs
        self._attempts: dict[str, Any] = {}  # attempt id -> ObjectRef

    def submit(self, task: CellTask, on_event: OnEvent) -> TaskHandle:
        assert len(self._running) < self.max_in_flight, "submit() called with max_in_flight tasks already running"
        # Absolute paths: a worker on another node does not share the driver's working directory.
        task = replace(task, results=Path(task.results).resolve(), cache_dir=Path(task.cache_dir).resolve(),
                       placement=RayPlacement(RAY, "unknown", self.resources.cpus))
        handle = TaskHandle(task)
        ref = self._run_cell.remote(task.to_json(), str(cell_dir(task.results, task.cell.id)), self._inbox,
                                    os.environ.get(FAULT_ENV))
        self._running[ref] = _Remote(handle, on_event)
        self._attempts[task.attempt] = ref
        return handle

    def wait(self, timeout: float) -> list[TaskOutcome]:
        deadline = time.monotonic() + timeout
        while self._running:
            left = max(0.0, deadline - time.monotonic())
            ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=min(POLL_S, left))
            if ready:  # every task that has ended by now
                ready, _ = self._ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
            self._collect()  # after ray.wait: a task pushes its last events before it returns
            if ready:
                return [self._finish(ref) for ref in ready]
            if time.monotonic() >= deadline:
                break
        return []

    def interrupt(self) -> list[TaskOutcome]:
        """Tell every task to stop its worker (each writes its "interrupted" record); cancel the tasks
        not yet started and those still running after the grace period."""
        refs = list(self._running)
        with contextlib.suppress(self._ray.exceptions.RayError):  # the force-cancel below still ends every task
            self._ray.get(self._inbox.stop.remote(), timeout=10)
        if refs:
            _, late = self._ray.wait(refs, num_returns=len(refs), timeout=self.interrupt_grace_s)
            for ref in late:
                self._ray.cancel(ref, force=True)
        self._collect(deliver=False)
        return [self._finish(ref) for ref in refs]

    def _collect(self, deliver: bool = True) -> None:
        """Pass pushed events to their cells' on_event, and note where tasks started."""
        events, placements = self._ray.get(self._inbox.drain.remote())
        for attempt, placement in placements.items():
            remote = self._running.get(self._attempts.get(attempt))
            if remote is not None:
                remote.handle.task = replace(remote.handle.task, placement=RayPlacement.from_json(placement))
        for attempt, event in events:
            remote = self._running.get(self._attempts.get(attempt))
            if deliver and remote is not None:  # else: a late event of a task that already ended
                remote.on_event(event)

    def _finish(self, ref: Any) -> TaskOutcome:
        remote = self._running.pop(ref)
        self._attempts.pop(remote.handle.task.attempt, None)
        try:
            result = self._ray.get(ref, timeout=30)
            return TaskOutcome(remote.handle, result["returncode"], result["log_tail"])
        except self._ray.exceptions.RayError as exc:  # lost with its node, cancelled, or the task itself failed
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            task = remote.handle.task
            log = _tail(cell_dir(task.results, task.cell.id) / WORKER_LOG_FILE)  # on the shared storage
            return TaskOutcome(remote.handle, LOST, f"Ray: {type(exc).__name__}: {reason}\n{log}".strip())


@contextmanager
def ray_executor(
    results: Path,
    *,
    device: str = "auto",
    address: str | None = None,
    parallel: int | None = None,
    cpus_per_cell: int | None = None,
    gpus_per_cell: int | None = None,
    world_size: int = 1,
) -> Iterator[RayExecutor]:
    """Connect to Ray (without `address` or $RAY_ADDRESS, which `ray job submit` sets, start a local instance;
    "auto" joins this host's cluster; a cluster's token as ray_auth settles it), size the cells, check that every
    node shares `results`, and yield the executor; disconnect at the end.

    gpus_per_cell: GPUs each cell asks for (default: world_size on CUDA, 0 on the CPU); world_size: processes per
    cell (train.world_size).
    """
    from segbench.execution.ray_storage import check_shared_storage
    from segbench.execution.runner import check_writable

    ray = import_ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    with contextlib.ExitStack() as joined:
        auth = joined.enter_context(driver_auth(address)) if address is not None else None
        device = connect(ray, address, device, auth)
        joined.callback(ray.shutdown)
        resources = plan_cells(ray, device, address is None, parallel, cpus_per_cell, gpus_per_cell, world_size)
        check_writable(results)
        check_shared_storage(results)
        yield RayExecutor(ray, resources, device, world_size=world_size)
