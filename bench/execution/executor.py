"""How cells are executed: behind a small interface, so a distributed engine can replace local processes later
without touching the runner or the cell code. A task carries everything a worker needs as JSON-ready data.

The runner submits tasks (at most `max_in_flight` at once), waits for whichever ends first, and on Ctrl-C asks the
executor to interrupt the rest. Resume, retries, records of lost workers and progress belong to the runner. The
executor places each task (which host, how many threads, which GPUs) and the worker records that placement.
local.py holds the executor of this host, ray_executor.py the one of a Ray cluster; choose.py picks one from the
run command's options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from segbench.execution.events import OnEvent


@dataclass(frozen=True)
class Placement:
    """Where and how a task runs, chosen by the executor; the worker copies it into its record as `execution`."""

    executor: str  # which executor ran the cell, e.g. "local"
    host: str
    threads: int  # torch intra-op threads of the worker
    gpu_ids: tuple[str, ...] | None = None  # the worker's CUDA_VISIBLE_DEVICES entries; None on the CPU

    def to_json(self) -> dict[str, Any]:
        return {"executor": self.executor, "threads": self.threads, "host": self.host,
                "gpu_ids": list(self.gpu_ids) if self.gpu_ids is not None else None}


@dataclass(frozen=True)
class CellTask:
    cell: Any  # segbench.grid.cells.Cell
    results: Path
    device: str
    cache_dir: Path
    attempt: str  # unique per attempt; the worker copies it into the record it writes
    batch_size: int | None = None  # overrides the grid's training batch size (out-of-memory retries)
    oom_retries: tuple[dict[str, Any], ...] = ()  # earlier out-of-memory attempts, copied into the record
    placement: Placement | None = None  # set by the executor when it submits the task
    # A finished cell whose evaluation settings changed: its saved weights are evaluated again, nothing trains
    # (segbench.cell.attached); a failure or interruption leaves its record as it was.
    evaluate_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell.resolved(),
            "cell_id": self.cell.id,
            "results": str(self.results),
            "device": self.device,
            "cache_dir": str(self.cache_dir),
            "attempt": self.attempt,
            "batch_size": self.batch_size,
            "oom_retries": list(self.oom_retries),
            "placement": self.placement.to_json() if self.placement else None,
            "evaluate_only": self.evaluate_only,
        }


@dataclass(eq=False)
class TaskHandle:
    """One submitted task (with its placement filled in); compared by identity."""

    task: CellTask


@dataclass(frozen=True)
class TaskOutcome:
    handle: TaskHandle
    returncode: int  # negative: killed by that signal
    log_tail: str


class Executor(Protocol):
    max_in_flight: int  # how many tasks may be submitted and not yet returned by wait or interrupt
    warning: str | None  # a problem with the placement worth telling before the run (e.g. oversubscribed cores)

    def submit(self, task: CellTask, on_event: OnEvent) -> TaskHandle:
        """Start a task; its progress events are passed to on_event from within wait()."""
        ...

    def wait(self, timeout: float) -> list[TaskOutcome]:
        """Deliver events until a task ends or `timeout` seconds pass; return the tasks that ended (maybe none)."""
        ...

    def interrupt(self) -> list[TaskOutcome]:
        """Ask every task in flight to stop (each writes an "interrupted" record) and return how each ended."""
        ...
