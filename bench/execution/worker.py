"""Entry point of the worker process that runs one cell: `python -m segbench.execution.worker TASK_JSON`.

The worker writes the cell's record itself (ok, failed or interrupted). It reports progress as JSON lines on
stdout, each prefixed with EVENT_PREFIX so that stray prints of libraries cannot be mistaken for events. If the
worker dies without a record (killed, out of memory), the runner writes the failed record for it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

EVENT_PREFIX = "@@segbench "


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def failure_kind(exc: BaseException) -> str:
    import torch

    from segbench.cell.pipeline import Diverged
    from segbench.errors import SegbenchError

    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, SegbenchError):
        return "config"
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return "oom"
    return "exception"


def run_task(task: dict[str, Any]) -> int:
    import torch

    from segbench.cell.pipeline import Diverged, train_and_evaluate
    from segbench.env import environment
    from segbench.grid.cells import Cell
    from segbench.records.store import (
        STATUS_FAILED,
        STATUS_INTERRUPTED,
        STATUS_OK,
        error_info,
        new_record,
        now_iso,
        write_record,
    )

    cell = Cell.model_validate(task["cell"])
    if cell.id != task["cell_id"]:
        raise RuntimeError(f"task for {task['cell_id']} resolves to {cell.id}: runner and worker disagree")
    results = Path(task["results"])
    cell_dir = results / "cells" / cell.id
    device = torch.device(task["device"])
    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    started_at = now_iso()
    base = {"attempt": task.get("attempt"), "started_at": started_at, "environment": environment(device),
            "device": str(device)}
    try:
        parts = train_and_evaluate(cell, cell_dir, device, emit, cache_dir=Path(task["cache_dir"]),
                                   batch_size=task.get("batch_size"))
        record = new_record(cell, STATUS_OK, **base, **parts)
        code = 0
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        record = new_record(cell, STATUS_INTERRUPTED, **base,
                            error=error_info("interrupted", "the run was interrupted; run the grid again to resume"))
        code = 130
    except Exception as exc:  # a broken cell must become a record, never abort the sweep
        details: dict[str, Any] = {"traceback": traceback.format_exc(limit=20)}
        if isinstance(exc, Diverged):
            details.update(iteration=exc.iteration, last_finite_loss=exc.last_finite_loss)
        message = f"{type(exc).__name__}: {exc}"
        record = new_record(cell, STATUS_FAILED, **base, error=error_info(failure_kind(exc), message, **details))
        code = 1
    record["finished_at"] = now_iso()
    write_record(results, record)
    emit({"event": "done", "status": record["status"]})
    return code


def _ignore_further_interrupts() -> None:
    """A second Ctrl-C must not cut the writing of the "interrupted" record short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the runner dies, so no orphan keeps training."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m segbench.execution.worker TASK_JSON\n")
        return 2
    _die_with_parent()
    # SIGTERM (from the runner or the parent-death signal) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    task = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run_task(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
