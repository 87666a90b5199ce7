"""Run a grid: expand it, skip finished cells, keep as many cells in flight as the executor allows, retry
out-of-memory at half the batch size, and leave a record for every cell that ran."""

from __future__ import annotations

import hashlib
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from segbench.atomic import atomic_write_text
from segbench.devices import resolve_device
from segbench.errors import ConfigError
from segbench.execution.estimate import print_expected_time
from segbench.execution.executor import CellTask, Executor, TaskHandle, TaskOutcome
from segbench.execution.local import LocalProcessExecutor
from segbench.execution.lock import ResultsLock
from segbench.execution.progress import ProgressView, make_view
from segbench.grid.cells import Cell, expand, record_evaluation
from segbench.grid.schema import GridConfig, resolve_sync_bn
from segbench.records.cells import checkpoint_path
from segbench.records.paths import RECORD_FILE, cell_dir, grids_dir
from segbench.records.schema import Record
from segbench.records.store import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    error_info,
    is_finished,
    new_record,
    read_record,
    write_record,
)

TICK_S = 1.0  # how often the progress view is ticked while cells run


@dataclass
class RunSummary:
    cells: list[Cell]
    records: dict[str, Record] = field(default_factory=dict)  # cell id -> record
    reused: int = 0
    ran: int = 0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(record.status == status for record in self.records.values())

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.count(STATUS_FAILED) else 0


def check_writable(results: Path) -> None:
    """Fail before any training if results cannot be written (missing permission, full disk)."""
    try:
        results.mkdir(parents=True, exist_ok=True)
        probe = results / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"results folder {results} cannot be written ({exc.strerror}); choose another with --results."
        ) from None


def save_resolved_grid(grid: GridConfig, results: Path) -> Path:
    # A grid without `tune:` is saved as before the section existed (the file name is a hash of the text).
    text = yaml.safe_dump(grid.model_dump(mode="json", exclude={"tune"} if grid.tune is None else None),
                          sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    path = grids_dir(results) / f"{grid.name}-{digest}.yaml"
    atomic_write_text(path, text)
    return path


def prepare_datasets(grid: GridConfig, cache_dir: Path) -> None:
    from segbench.datasets import parse_dataset_params, prepare_dataset

    for dataset in (*grid.datasets, *grid.eval.datasets):  # the further evaluation datasets too
        prepare_dataset(dataset.name, parse_dataset_params(dataset.name, dataset.params), cache_dir)


def existing_record(results: Path, cell: Cell) -> Record | None:
    path = cell_dir(results, cell.id) / RECORD_FILE
    if not path.exists():
        return None
    try:
        return read_record(path)
    except Exception:  # a damaged record is rerun, not trusted
        return None


def run_grid(
    grid: GridConfig,
    results: Path,
    *,
    device: str = "auto",
    parallel: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
    oom_retry: bool = False,
    cache_dir: Path | None = None,
    executor: Executor | None = None,
    console: Console | None = None,
    view: ProgressView | None = None,
) -> RunSummary:
    """parallel: cells in flight with the local executor (default: one per visible GPU on CUDA, one on the CPU);
    executor replaces the local one (and then decides how many cells are in flight, and `device` must be the one it
    places cells on, 'cpu' or 'cuda': a cluster's GPUs need not be this host's); view replaces the display chosen
    for the console (bars on a terminal, lines otherwise)."""
    from segbench.datasets import default_cache_dir
    from segbench.measure.deploy import check_deploy_extra
    from segbench.models.pretrained import resolve_weights

    console = console or Console(stderr=True)
    cache_dir = Path(cache_dir or default_cache_dir())
    device = device if executor is not None else resolve_device(device)
    expansion = expand(grid)
    if grid.train.world_size > 1:  # sync_bn: true on the CPU fails here, before anything is written
        resolve_sync_bn(grid.train.sync_bn, "nccl" if device == "cuda" else "gloo")
    # The local executor checks --parallel before anything is written.
    executor = executor or LocalProcessExecutor(device, parallel, world_size=grid.train.world_size)
    # Every pretrained weights file in the Hub cache (fetched when it can be) before anything is written or trained:
    # offline without them, the run stops with the fetch command and leaves the results folder as it was.
    resolve_weights((cell.encoder, cell.weights) for cell in expansion.cells)
    check_deploy_extra(grid.measure.runtimes)  # onnxruntime without the `deploy` extra: one sentence, nothing written
    check_writable(results)
    with ResultsLock(results) as lock:
        if lock.previous_holder:
            console.print(f"[yellow]note[/]: took over the lock of a run that is no longer alive "
                          f"(pid {lock.previous_holder.get('pid')}, started {lock.previous_holder.get('started_at')})")
        prepare_datasets(grid, cache_dir)
        save_resolved_grid(grid, results)
        cells, tuned = expansion.cells, None
        if grid.tune is not None:  # the studies first: the final cells train with each configuration's best settings
            tuned = _run_studies(grid, cells, results, device, cache_dir, executor, oom_retry, console)
            if tuned is None:
                return RunSummary(cells=cells, interrupted=True)
            cells = tuned.cells
        summary = RunSummary(cells=cells)
        pending: list[Cell] = []
        evaluate: list[Cell] = []  # finished, evaluated with other settings: their saved weights are evaluated again
        for cell in cells:
            record = existing_record(results, cell)
            if force or not is_finished(record, cell.config_hash, retry_failed):
                pending.append(cell)
            elif not evaluated_alike(record, cell):
                if checkpoint_path(cell_dir(results, cell.id), record).is_file():
                    evaluate.append(cell)
                else:
                    console.print(f"[yellow]note[/]: {cell.slug} was evaluated with other settings and has no saved "
                                  "weights to evaluate again; it trains again")
                    pending.append(cell)
            else:
                summary.records[cell.id] = record
                summary.reused += 1
        at_once = f", {executor.max_in_flight} at a time" if executor.max_in_flight > 1 else ""
        again = f"{len(evaluate)} to evaluate again from their saved weights (no training), " if evaluate else ""
        console.print(f"[bold]{grid.name}[/]: {len(cells)} cells, {summary.reused} already finished, {again}"
                      f"{len(pending)} to run on {device}{at_once}; results in {results}")
        print_expected_time(console, pending, device, cache_dir, evaluate)
        if (pending or evaluate) and getattr(executor, "warning", None):  # executors written before `warning`
            console.print(f"[yellow]warning[/]: {executor.warning}")  # have none
        evaluate_ids, pending_ids = {cell.id for cell in evaluate}, {cell.id for cell in pending}
        tasks = [CellTask(cell, results, device, cache_dir, uuid.uuid4().hex, evaluate_only=cell.id in evaluate_ids)
                 for cell in cells if cell.id in pending_ids | evaluate_ids]
        view = view or make_view(console)
        view.begin(len(tasks))
        try:
            _run_tasks(tasks, executor, oom_retry, view, summary)
        finally:
            view.end()
        if tuned is not None:
            from segbench.execution.tuning import add_tuning_parts

            add_tuning_parts(results, tuned)
    # Read back what is on disk: after an interruption a worker may have finished a record the loop never saw.
    for cell in cells:
        record = existing_record(results, cell)
        if record is not None and record.config_hash == cell.config_hash and (
                cell.id not in summary.records or evaluated_alike(record, cell)):  # not a failed evaluation's
            summary.records[cell.id] = record
    return summary


def evaluated_alike(record: Record, cell: Cell) -> bool:
    """Whether a record of the cell's training identity was evaluated with the cell's evaluation settings (a failed
    or interrupted one counts as alike: it has no evaluation to redo)."""
    return record.status != STATUS_OK or record_evaluation(record.config.to_json()) in (cell.evaluation, None)


def _run_studies(grid: GridConfig, cells: list[Cell], results: Path, device: str, cache_dir: Path,
                 executor: Executor, oom_retry: bool, console: Console) -> Any:
    """The grid's tuning studies (segbench.execution.tuning), their trials run by this module's loop into the
    results folder's tuning/ folder; the final cells and their tuning parts, or None when interrupted."""
    from segbench.execution.tuning import run_studies
    from segbench.records.paths import tuning_dir

    def task_for(cell: Cell) -> CellTask:
        return CellTask(cell, tuning_dir(results), device, cache_dir, uuid.uuid4().hex)

    def run_trials(tasks: list[CellTask]) -> bool:
        trials, view = RunSummary(cells=[task.cell for task in tasks]), make_view(console)
        view.begin(len(tasks))
        try:
            _run_tasks(tasks, executor, oom_retry, view, trials)
        finally:
            view.end()
        return trials.interrupted

    console.print(f"[bold]{grid.name}[/]: tuning {grid.tune.trials} trials per configuration "
                  f"({grid.tune.sampler}); trials in {tuning_dir(results)}")
    return run_studies(grid.tune, cells, results, task_for, run_trials)


def _run_tasks(tasks: list[CellTask], executor: Executor, oom_retry: bool, view: ProgressView,
               summary: RunSummary) -> None:
    """Keep the executor full, in grid order; an out-of-memory retry goes first in the queue."""
    queue = deque(tasks)
    in_flight: set[TaskHandle] = set()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < executor.max_in_flight:
                task = queue.popleft()
                view.started(task.cell)
                in_flight.add(executor.submit(task, partial(view.event, task.cell)))
            for outcome in executor.wait(TICK_S):
                in_flight.discard(outcome.handle)
                task, record = outcome.handle.task, _settle(outcome, interrupted=False)
                retry = _out_of_memory_retry(task, record) if oom_retry else None
                if retry is not None:
                    view.note(f"{task.cell.slug}: out of memory; retrying at batch size {retry.batch_size}")
                    queue.appendleft(retry)
                    continue
                summary.records[task.cell.id] = record
                summary.ran += 1
                view.finished(task.cell, record)
            view.tick()
    except KeyboardInterrupt:
        summary.interrupted = True
        for outcome in executor.interrupt():
            _settle(outcome, interrupted=True)


def _settle(outcome: TaskOutcome, interrupted: bool) -> Record:
    """The record of an attempt that ended: the worker's own, else the one the runner writes for it (the runner's
    only record write). A worker ends without a record when it is killed, runs out of host memory or crashes hard."""
    task = outcome.handle.task
    record = existing_record(task.results, task.cell)
    if record is not None and record.attempt == task.attempt:
        return record
    status, kind, message = _why_no_record(outcome.returncode, interrupted)
    if task.evaluate_only:  # the record of the trained cell stays as it was; this one is only shown
        last = outcome.log_tail.strip().splitlines()[-1:] if outcome.log_tail else []
        kind, message = ("evaluation" if status == STATUS_FAILED else kind,
                         f"{last[0] if last and status == STATUS_FAILED else message}; the record of the trained "
                         "cell is kept as it was, and the next run evaluates its saved weights again")
    extra: dict[str, Any] = {"oom_retries": list(task.oom_retries)} if task.oom_retries else {}
    record = new_record(task.cell, status, attempt=task.attempt, device=task.device,
                        execution=task.placement.to_json() if task.placement else None,
                        error=error_info(kind, message, log_tail=outcome.log_tail), **extra)
    if not task.evaluate_only:
        write_record(task.results, record)
    return record


def _why_no_record(returncode: int, interrupted: bool) -> tuple[str, str, str]:
    """Status, error kind and message of an attempt whose worker wrote no record."""
    if interrupted:
        message = "the run was interrupted before the worker wrote a record; run the grid again to resume"
        return STATUS_INTERRUPTED, "interrupted", message
    if returncode < 0:
        return STATUS_FAILED, "killed", f"the worker was killed by signal {-returncode}"
    return STATUS_FAILED, "worker_lost", f"the worker exited with code {returncode} without writing a record"


def _out_of_memory_retry(task: CellTask, record: Record) -> CellTask | None:
    """After an out-of-memory failure, the same cell at half the batch size per process (down to 2); None otherwise.

    The batch stays a multiple of train.world_size (the global batch of a cell trained by several processes)."""
    world_size = task.cell.train.world_size
    batch_size = task.batch_size or task.cell.train.batch_size
    per_process = batch_size // world_size
    if record.status != STATUS_FAILED or record.error_kind != "oom" or per_process <= 2 or task.evaluate_only:
        return None
    earlier = {"batch_size": batch_size, "error": record.error.message}
    return replace(task, attempt=uuid.uuid4().hex, batch_size=per_process // 2 * world_size, placement=None,
                   oom_retries=(*task.oom_retries, earlier))
