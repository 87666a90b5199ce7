"""Entry point of the worker process that runs one cell: `python -m segbench.execution.worker TASK_JSON`.

The worker writes the cell's record itself (ok, failed or interrupted) and reports progress as event lines on
stdout (events.py). If it dies without a record (killed, out of host memory), the runner writes one for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from segbench.execution.events import RunnerGone, emit
from segbench.execution.launch import die_with_parent


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


def failure_error(exc: BaseException) -> dict[str, Any]:
    """The record's error for an exception that ended a cell (called while it is being handled): kind, message,
    traceback, and where the loss diverged; a failed rank's error as the rank reported it."""
    from segbench.cell.pipeline import Diverged
    from segbench.execution.launch import RankFailure
    from segbench.records.store import error_info

    if isinstance(exc, RankFailure):
        return exc.error
    details: dict[str, Any] = {"traceback": traceback.format_exc(limit=20)}
    if isinstance(exc, Diverged):
        details.update(iteration=exc.iteration, nonfinite_iteration=exc.nonfinite_iteration,
                       last_finite_loss=exc.last_finite_loss)
    return error_info(failure_kind(exc), f"{type(exc).__name__}: {exc}", **details)


def distributed_plan(task: dict[str, Any], cell: Any) -> dict[str, Any]:
    """The record's `distributed` part of a cell trained by several processes, as the worker launches it (the
    ranks' own replaces it when the cell finishes); a ConfigError when this host cannot run it."""
    import torch

    from segbench.cell.distributed import Dist, rank_threads
    from segbench.errors import ConfigError
    from segbench.grid.schema import resolve_sync_bn

    world_size = cell.train.world_size
    backend = "nccl" if task["device"] == "cuda" else "gloo"
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise ConfigError(f"train.world_size {world_size} needs {world_size} GPUs for the cell, and it sees "
                          f"{torch.cuda.device_count()}; lower train.world_size or make more GPUs visible.")
    threads = int(task["placement"]["threads"])
    plan = Dist(0, world_size, backend, sync_bn=resolve_sync_bn(cell.train.sync_bn, backend),
                threads_per_rank=rank_threads(threads, world_size), cell_threads=threads)
    return plan.describe(task.get("batch_size") or cell.train.batch_size)


def run_task(task: dict[str, Any]) -> int:
    import torch

    from segbench.cell.pipeline import train_and_evaluate
    from segbench.env import environment
    from segbench.grid.cells import Cell
    from segbench.models.pretrained import weights_record
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
    if task.get("evaluate_only"):
        return evaluate_task(task, cell, results, device)
    try:
        if cell.train.world_size > 1:
            from segbench.execution.launch import train_on_ranks

            base["distributed"] = distributed_plan(task, cell)
            parts = train_on_ranks(task, cell.train.world_size, base["distributed"]["threads_per_rank"])
        else:
            parts = train_and_evaluate(cell, cell_dir(results, cell.id), device, emit,
                                       cache_dir=Path(task["cache_dir"]), batch_size=task.get("batch_size"))
        _ignore_interrupts()  # the cell is done: a late Ctrl-C must not lose its record
        weights = weights_record(cell.encoder, cell.weights, cell.encoder_weights)  # the file the cell loaded
        record = new_record(cell, STATUS_OK, **{**base, **parts, **({"weights": weights} if weights else {})})
        code = 0
    except KeyboardInterrupt:  # a signal (_interrupt_once), or the runner's pipe closed (RunnerGone)
        _ignore_interrupts()  # a signal after RunnerGone: its runner died, the parent-death signal follows
        record = new_record(cell, STATUS_INTERRUPTED, **base,
                            error=error_info("interrupted", "the run was interrupted; run the grid again to resume"))
        code = 130
    except Exception as exc:  # a broken cell must become a record, never abort the sweep
        _ignore_interrupts()
        record = new_record(cell, STATUS_FAILED, **base, error=failure_error(exc))
        code = 1
    record.finished_at = now_iso()
    write_record(results, record)
    with contextlib.suppress(RunnerGone):  # the record is written; a runner that died meanwhile reads it next time
        emit({"event": "done", "status": record.status})
    return code


def evaluate_task(task: dict[str, Any], cell: Any, results: Path, device: Any) -> int:
    """Evaluate a finished cell's saved weights with its new evaluation settings (segbench.cell.attached) and write
    its record with the new evaluation parts. A failure or an interruption writes nothing: the record stays as the
    training run left it, and the next run evaluates again; the failure's message is the last line of the log."""
    from segbench.cell.attached import evaluate_trained
    from segbench.records.cells import read_cell_record
    from segbench.records.paths import cell_dir
    from segbench.records.schema import Record
    from segbench.records.store import now_iso, write_record

    folder = cell_dir(results, cell.id)
    try:
        parts = evaluate_trained(cell, folder, device, Path(task["cache_dir"]))
        _ignore_interrupts()  # the evaluation is done: a late Ctrl-C must not lose it
        record = read_cell_record(folder).to_json()
        record.update(parts, config=cell.resolved(), attempt=task["attempt"], written_at=now_iso(),
                      finished_at=now_iso())
        record = {key: value for key, value in record.items() if key not in parts or value is not None}
        write_record(results, Record.model_validate(record))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        traceback.print_exc(limit=20)
        sys.stderr.write(f"segbench: evaluating the saved weights of {cell.id} again failed: "
                         f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        return 1
    with contextlib.suppress(RunnerGone):
        emit({"event": "done", "status": "ok"})
    return 0


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


def main(argv: list[str]) -> int:
    # First of all: SIGTERM (from the runner or the parent-death signal) takes the same clean path as Ctrl-C. A
    # Ctrl-C that the runner was started to ignore (`nohup segbench run ... &`) stays ignored here too, as in Python.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    if len(argv) != 1:
        sys.stderr.write("usage: python -m segbench.execution.worker TASK_JSON\n")
        return 2
    if not die_with_parent():  # if the runner dies, no orphan keeps training
        sys.stderr.write("the runner ended before this worker started; the next run will train the cell\n")
        return 130
    task = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run_task(task)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
