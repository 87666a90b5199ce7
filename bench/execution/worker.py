"""Entry point of the worker process that runs one cell: `python -m segbench.execution.worker TASK_JSON`.

The worker writes the cell's record itself (ok, failed or interrupted) and reports progress as event lines on
stdout (events.py). If it dies without a record (killed, out of host memory), the runner writes one for it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from segbench.execution.events import emit


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
    from segbench.records.paths import cell_dir
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
    device = torch.device(task["device"])
    placement = task["placement"]
    torch.set_num_threads(int(placement["threads"]))  # set by every executor, so a record never depends on a default
    base = {"attempt": task["attempt"], "started_at": now_iso(), "environment": environment(device),
            "device": str(device), "execution": placement}
    if task.get("oom_retries"):
        base["oom_retries"] = task["oom_retries"]
    try:
        parts = train_and_evaluate(cell, cell_dir(results, cell.id), device, emit,
                                   cache_dir=Path(task["cache_dir"]), batch_size=task.get("batch_size"))
        _ignore_interrupts()  # the cell is done: a late Ctrl-C must not lose its record
        record = new_record(cell, STATUS_OK, **base, **parts)
        code = 0
    except KeyboardInterrupt:  # further interrupts are already ignored (_interrupt_once)
        record = new_record(cell, STATUS_INTERRUPTED, **base,
                            error=error_info("interrupted", "the run was interrupted; run the grid again to resume"))
        code = 130
    except Exception as exc:  # a broken cell must become a record, never abort the sweep
        _ignore_interrupts()
        details: dict[str, Any] = {"traceback": traceback.format_exc(limit=20)}
        if isinstance(exc, Diverged):
            details.update(iteration=exc.iteration, nonfinite_iteration=exc.nonfinite_iteration,
                           last_finite_loss=exc.last_finite_loss)
        message = f"{type(exc).__name__}: {exc}"
        record = new_record(cell, STATUS_FAILED, **base, error=error_info(failure_kind(exc), message, **details))
        code = 1
    record["finished_at"] = now_iso()
    write_record(results, record)
    emit({"event": "done", "status": record["status"]})
    return code


def _interrupt_once(signum: int, frame: Any) -> None:
    """SIGINT or SIGTERM: stop the cell once; ignore every later one.

    Ctrl-C reaches a worker twice (from the terminal, and passed on by the runner), and a second KeyboardInterrupt
    raised while the first is being handled would end the worker before it writes its "interrupted" record. Ignoring
    from inside the handler leaves no such window.
    """
    _ignore_interrupts()
    raise KeyboardInterrupt


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the runner dies, so no orphan keeps training."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str]) -> int:
    # First of all: SIGTERM (from the runner or the parent-death signal) takes the same clean path as Ctrl-C. A
    # Ctrl-C that the runner was started to ignore (`nohup segbench run ... &`) stays ignored here too, as in Python.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    if len(argv) != 1:
        sys.stderr.write("usage: python -m segbench.execution.worker TASK_JSON\n")
        return 2
    _die_with_parent()
    task = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run_task(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
