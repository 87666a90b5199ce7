"""Which executor runs a grid: worker processes on this host or Ray tasks on a cluster, chosen from the run
command's options, which are checked here, before the grid is read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from segbench.devices import resolve_device
from segbench.errors import ConfigError
from segbench.execution.executor import Executor
from segbench.execution.local import LocalProcessExecutor

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorChoice:
    """`segbench run`'s --executor with its options; a ConfigError names a combination that cannot run.

    parallel: cells in flight (local: default one per visible GPU on CUDA, one on the CPU; Ray: at most this many);
    address and cpus_per_cell: the Ray cluster to join and the CPUs of each cell (ray_executor.py), Ray only.
    """

    name: str = "local"
    parallel: int | None = None
    address: str | None = None
    cpus_per_cell: int | None = None

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise ConfigError(f"--executor must be local or ray, not '{self.name}'.")
        if self.name == "local" and (self.address is not None or self.cpus_per_cell is not None):
            raise ConfigError("--address and --cpus-per-cell apply to --executor ray only; add --executor ray.")

    @contextmanager
    def open(self, results: Path, device: str, world_size: int = 1) -> Iterator[tuple[Executor, str]]:
        """(executor, device it places cells on: 'cpu' or 'cuda'); device 'auto' is this host's choice locally, the
        cluster's with Ray, whose connection closes at the end. world_size: processes per cell (train.world_size)."""
        if self.name == "ray":
            from segbench.execution.ray_executor import ray_executor

            with ray_executor(results, device=device, address=self.address, parallel=self.parallel,
                              cpus_per_cell=self.cpus_per_cell, world_size=world_size) as cluster:
                yield cluster, cluster.device
        else:
            device = resolve_device(device)
            yield LocalProcessExecutor(device, self.parallel, world_size=world_size), device
