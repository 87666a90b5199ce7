"""Run a grid: expand it, skip finished cells, run the rest one isolated worker at a time, record everything."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from segbench.errors import ConfigError
from segbench.execution.executor import CellTask, Executor, LocalProcessExecutor
from segbench.execution.lock import ResultsLock
from segbench.grid.cells import Cell, Expansion, expand
from segbench.grid.schema import GridConfig
from segbench.records.store import (
    RECORD_FILE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    cell_dir,
    error_info,
    is_finished,
    new_record,
    read_record,
    write_record,
)
from segbench.storage import atomic_write_text


@dataclass
class RunSummary:
    cells: list[Cell]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell id -> record
    reused: int = 0
    ran: int = 0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(record["status"] == status for record in self.records.values())

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.count(STATUS_FAILED) else 0


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but PyTorch sees no CUDA GPU; use --device cpu or auto.")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, not '{device}'.")
    return device


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


def save_resolved_grid(grid: GridConfig, expansion: Expansion, results: Path) -> Path:
    import hashlib

    text = yaml.safe_dump(grid.model_dump(mode="json"), sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    path = results / "grids" / f"{grid.name}-{digest}.yaml"
    atomic_write_text(path, text)
    return path


def prepare_datasets(grid: GridConfig, cache_dir: Path) -> None:
    from segbench.datasets import parse_dataset_params, prepare_dataset

    for dataset in grid.datasets:
        prepare_dataset(dataset.name, parse_dataset_params(dataset.name, dataset.params), cache_dir)


def existing_record(results: Path, cell: Cell) -> dict[str, Any] | None:
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
    force: bool = False,
    retry_failed: bool = False,
    oom_retry: bool = False,
    cache_dir: Path | None = None,
    executor: Executor | None = None,
    console: Console | None = None,
) -> RunSummary:
    from segbench.datasets import default_cache_dir

    console = console or Console(stderr=True)
    executor = executor or LocalProcessExecutor()
    cache_dir = Path(cache_dir or default_cache_dir())
    device = resolve_device(device)
    expansion = expand(grid)
    check_writable(results)
    with ResultsLock(results) as lock:
        if lock.previous_holder:
            console.print(f"[yellow]note[/]: took over the lock of a run that is no longer alive "
                          f"(pid {lock.previous_holder.get('pid')}, started {lock.previous_holder.get('started_at')})")
        prepare_datasets(grid, cache_dir)
        save_resolved_grid(grid, expansion, results)
        return _run_cells(grid, expansion, results, device, force, retry_failed, oom_retry, cache_dir, executor,
                          console)


def _run_cells(grid: GridConfig, expansion: Expansion, results: Path, device: str, force: bool, retry_failed: bool,
               oom_retry: bool, cache_dir: Path, executor: Executor, console: Console) -> RunSummary:
    summary = RunSummary(cells=expansion.cells)
    pending: list[Cell] = []
    for cell in expansion.cells:
        record = existing_record(results, cell)
        if not force and is_finished(record, cell.config_hash, retry_failed):
            summary.records[cell.id] = record
            summary.reused += 1
        else:
            pending.append(cell)
    console.print(
        f"[bold]{grid.name}[/]: {len(expansion.cells)} cells, {summary.reused} already finished, "
        f"{len(pending)} to run on {device}; results in {results}"
    )
    with _progress(console) as progress:
        overall = progress.add_task("cells", total=len(pending), detail="")
        for cell in pending:
            current = progress.add_task(cell.slug, total=None, detail="")
            try:
                record = _run_cell(cell, results, device, cache_dir, executor, progress, current)
                if oom_retry:
                    record = _retry_out_of_memory(record, cell, results, device, cache_dir, executor, progress,
                                                  current, console)
                summary.records[cell.id] = record
            except KeyboardInterrupt:
                summary.interrupted = True
                _record_if_missing(results, cell, STATUS_INTERRUPTED, "interrupted", "the run was interrupted")
                break
            finally:
                progress.remove_task(current)
            summary.ran += 1
            progress.advance(overall)
    # Read back what is on disk: after an interruption a worker may have finished a record the loop never saw.
    for cell in expansion.cells:
        record = existing_record(results, cell)
        if record is not None and record.get("config_hash") == cell.config_hash:
            summary.records[cell.id] = record
    return summary


def _retry_out_of_memory(record: dict[str, Any], cell: Cell, results: Path, device: str, cache_dir: Path,
                         executor: Executor, progress: Progress, task_id: Any, console: Console) -> dict[str, Any]:
    """While a cell fails with out-of-memory, run it again at half the batch size (down to 2)."""
    batch_size = cell.train.batch_size
    attempts: list[dict[str, Any]] = []
    while record["status"] == STATUS_FAILED and (record.get("error") or {}).get("kind") == "oom" and batch_size > 2:
        attempts.append({"batch_size": batch_size, "error": record["error"]["message"]})
        batch_size //= 2
        console.print(f"{cell.slug}: out of memory; retrying at batch size {batch_size}")
        record = _run_cell(cell, results, device, cache_dir, executor, progress, task_id, batch_size=batch_size)
    if attempts:
        record["oom_retries"] = attempts
        write_record(results, record)
    return record


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _run_cell(
    cell: Cell, results: Path, device: str, cache_dir: Path, executor: Executor, progress: Progress, task_id: Any,
    batch_size: int | None = None,
) -> dict[str, Any]:
    attempt = uuid.uuid4().hex

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "start":
            progress.update(task_id, total=event["iterations"])
        elif kind == "step":
            progress.update(task_id, completed=event["iteration"],
                            detail=f"epoch {event['epoch']} loss {event['loss']:.3f}")
        elif kind == "epoch" and event.get("val_miou") is not None:
            progress.update(task_id, detail=f"epoch {event['epoch']} val mIoU {event['val_miou']:.3f}")

    outcome = executor.run(CellTask(cell, results, device, cache_dir, attempt, batch_size=batch_size), on_event)
    record = existing_record(results, cell)
    if record is not None and record.get("attempt") == attempt:
        return record
    # The worker ended without writing its record: killed by a signal, out of host memory, or crashed hard.
    if outcome.returncode < 0:
        kind, message = "killed", f"the worker was killed by signal {-outcome.returncode}"
    else:
        kind, message = "worker_lost", f"the worker exited with code {outcome.returncode} without writing a record"
    record = new_record(cell, STATUS_FAILED, attempt=attempt, device=device,
                        error=error_info(kind, message, log_tail=outcome.log_tail))
    write_record(results, record)
    return record


def _record_if_missing(results: Path, cell: Cell, status: str, kind: str, message: str) -> None:
    if existing_record(results, cell) is None:
        write_record(results, new_record(cell, status, error=error_info(kind, message)))
