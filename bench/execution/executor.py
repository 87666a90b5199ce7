"""How cells are executed: behind a small interface, so a distributed engine can replace local processes later
without touching the cell code. A task carries everything a worker needs as JSON-ready data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from segbench.storage import atomic_write_json

OnEvent = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class CellTask:
    cell: Any  # segbench.grid.cells.Cell
    results: Path
    device: str
    cache_dir: Path
    attempt: str  # unique per attempt; the worker copies it into the record it writes
    threads: int | None = None
    batch_size: int | None = None  # overrides the grid's training batch size (out-of-memory retries)

    def to_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell.resolved(),
            "cell_id": self.cell.id,
            "results": str(self.results),
            "device": self.device,
            "cache_dir": str(self.cache_dir),
            "attempt": self.attempt,
            "threads": self.threads,
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class TaskOutcome:
    returncode: int  # negative: killed by that signal
    log_tail: str


class Executor(Protocol):
    def run(self, task: CellTask, on_event: OnEvent) -> TaskOutcome:
        """Run one cell to completion (or failure) and return how its worker ended."""
        ...


class LocalProcessExecutor:
    """One fresh Python process per cell (as timm's bulk runner does): a crash or leak cannot reach the sweep."""

    def __init__(self, interrupt_grace_s: float = 60.0) -> None:
        self.interrupt_grace_s = interrupt_grace_s

    def run(self, task: CellTask, on_event: OnEvent) -> TaskOutcome:
        from segbench.execution.worker import EVENT_PREFIX

        cell_dir = task.results / "cells" / task.cell.id
        cell_dir.mkdir(parents=True, exist_ok=True)
        task_path = cell_dir / "task.json"
        atomic_write_json(task_path, task.to_json())
        log_path = cell_dir / "worker.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "segbench.execution.worker", str(task_path)],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            )
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    if line.startswith(EVENT_PREFIX):
                        on_event(json.loads(line[len(EVENT_PREFIX):]))
                    else:
                        log.write(line)
                returncode = process.wait()
            except BaseException:
                # Ctrl-C reaches the worker too (same process group); a signal sent to the runner alone does not,
                # so pass it on. The worker ignores repeats while it writes its "interrupted" record.
                self._stop(process)
                raise
        return TaskOutcome(returncode=returncode, log_tail=_tail(log_path))

    def _stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=self.interrupt_grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
