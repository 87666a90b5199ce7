"""What a run shows while it trains: rich bars on a terminal, plain lines in a log.

The runner drives a view through begin, started, event (from the worker), tick (about once a second), note,
finished and end; cells are told apart by id, since several may be in flight at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from segbench.execution.events import Event
from segbench.grid.cells import Cell
from segbench.records.schema import Record


class ProgressView(Protocol):
    def begin(self, total: int) -> None: ...
    def started(self, cell: Cell) -> None: ...  # again for a retry of the same cell
    def event(self, cell: Cell, event: Event) -> None: ...
    def tick(self) -> None: ...
    def note(self, text: str) -> None: ...
    def finished(self, cell: Cell, record: Record) -> None: ...
    def end(self) -> None: ...


def make_view(console: Console) -> ProgressView:
    """Bars when the console is a terminal; otherwise lines, since bars never reach a log file."""
    return BarView(console) if console.is_terminal else LineView(console)


class BarView:
    """One bar for the grid and one per cell in flight (iterations), with the latest loss or val mIoU."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.bars: dict[str, Any] = {}  # cell id -> rich task id

    def begin(self, total: int) -> None:
        self.overall = self.progress.add_task("cells", total=total, detail="")
        self.progress.start()

    def started(self, cell: Cell) -> None:
        if cell.id in self.bars:
            self.progress.remove_task(self.bars[cell.id])
        self.bars[cell.id] = self.progress.add_task(cell.slug, total=None, detail="")

    def event(self, cell: Cell, event: Event) -> None:
        bar, kind = self.bars[cell.id], event.get("event")
        if kind == "start":
            self.progress.update(bar, total=event["iterations"])
        elif kind == "step":
            self.progress.update(bar, completed=event["iteration"],
                                 detail=f"epoch {event['epoch']} loss {event['loss']:.3f}")
        elif kind == "epoch" and event.get("val_miou") is not None:
            self.progress.update(bar, detail=f"epoch {event['epoch']} val mIoU {event['val_miou']:.3f}")

    def tick(self) -> None:
        pass  # rich refreshes on its own

    def note(self, text: str) -> None:
        self.progress.console.print(text)

    def finished(self, cell: Cell, record: Record) -> None:
        self.progress.remove_task(self.bars.pop(cell.id))
        self.progress.advance(self.overall)

    def end(self) -> None:
        self.progress.stop()


@dataclass
class _Running:
    slug: str
    started_at: float  # view clock, seconds
    last_line_at: float
    latest: Event | None = None  # the last step event
    epochs: int | None = None
    iterations: int | None = None


class LineView:
    """For logs: one line per finished cell (status, mIoU, wall time), and a line about every `interval_s` for each
    running cell (epoch, iteration/total, loss), so a log is never silent for long."""

    def __init__(self, console: Console, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.console, self.interval_s, self.clock = console, interval_s, clock
        self.running: dict[str, _Running] = {}
        self.done = self.total = 0

    def begin(self, total: int) -> None:
        self.total = total

    def started(self, cell: Cell) -> None:
        now = self.clock()
        if cell.id not in self.running:  # a retry keeps the cell's wall time and its reporting rhythm
            self.running[cell.id] = _Running(cell.slug, started_at=now, last_line_at=now)

    def event(self, cell: Cell, event: Event) -> None:
        state = self.running[cell.id]
        if event.get("event") == "start":  # also at the start of a retry: forget the last attempt's step
            state.epochs, state.iterations, state.latest = event["epochs"], event["iterations"], None
        elif event.get("event") == "step":
            state.latest = event

    def tick(self) -> None:
        now = self.clock()
        for state in self.running.values():
            if now - state.last_line_at >= self.interval_s:
                state.last_line_at = now
                self._print(f"  {state.slug}: {_describe(state)}, {format_duration(now - state.started_at)}")

    def note(self, text: str) -> None:
        self._print(text)

    def finished(self, cell: Cell, record: Record) -> None:
        state = self.running.pop(cell.id)
        self.done += 1
        if record.ok:
            outcome = f"mIoU {record.metrics.miou:.4f}"
        else:
            error = record.error
            outcome = f"{error.kind}: {' '.join(error.message.split())[:160]}" if error else "no error recorded"
        wall = format_duration(self.clock() - state.started_at)
        self._print(f"[{self.done}/{self.total}] {record.status} {cell.slug}  {outcome}  ({wall})")

    def end(self) -> None:
        pass

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _describe(state: _Running) -> str:
    if state.latest is None:
        return "preparing"
    step = state.latest
    return (f"epoch {step['epoch']}/{state.epochs}, iteration {step['iteration']}/{state.iterations}, "
            f"loss {step['loss']:.4f}")


def format_duration(seconds: float) -> str:
    """12 s, 3 min 05 s, 2 h 07 min."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
