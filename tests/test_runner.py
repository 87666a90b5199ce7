"""The runner driven by a fake executor (no processes, scripted outcomes): order, capacity, records of lost workers,
out-of-memory retries, interruption and resume, and the progress lines written to a log."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from rich.console import Console

from segbench.execution.events import OnEvent
from segbench.execution.executor import CellTask, Placement, TaskHandle, TaskOutcome
from segbench.execution.progress import BarView, LineView, make_view
from segbench.execution.runner import run_grid
from segbench.grid.cells import expand
from segbench.grid.load import parse_grid
from segbench.records.store import error_info, new_record, write_record

GRID = {
    "name": "fake",
    "datasets": [{"name": "synthetic", "params": {"n_train": 8, "n_val": 1, "height": 32, "width": 64}}],
    "models": ["fpn"], "encoders": ["resnet18"], "losses": ["ce", "focal"], "seeds": [0, 1],
    "train": {"epochs": 1, "batch_size": 8, "crop": [32, 64]},
}


@dataclass
class Behaviour:
    """What one attempt does: `waits` calls of wait() (one step event each), then it ends."""

    status: str | None = "ok"  # the record the "worker" writes; None: it ends without one
    kind: str | None = None  # error kind of a failed record
    returncode: int = 0
    waits: int = 1
    interrupted_record: bool = True  # whether it writes its own record when interrupted


@dataclass
class Attempt:
    handle: TaskHandle
    behaviour: Behaviour
    on_event: OnEvent
    waited: int = 0


@dataclass
class FakeExecutor:
    """Runs nothing: writes the record a worker would write, when the script says, and advances a fake clock."""

    script: Callable[[CellTask], Behaviour]
    max_in_flight: int = 1
    interrupt_on_wait: int | None = None  # raise KeyboardInterrupt in this call of wait() (1-based)
    now: float = 0.0
    submitted: list[CellTask] = field(default_factory=list)
    running: list[Attempt] = field(default_factory=list)
    most_in_flight: int = 0
    waits: int = 0

    def submit(self, task: CellTask, on_event: OnEvent) -> TaskHandle:
        assert len(self.running) < self.max_in_flight, "the runner went over capacity"
        handle = TaskHandle(replace(task, placement=Placement("fake", "testhost", 1)))
        self.submitted.append(handle.task)
        self.running.append(Attempt(handle, self.script(handle.task), on_event))
        self.most_in_flight = max(self.most_in_flight, len(self.running))
        on_event({"event": "start", "epochs": 1, "iterations": 100, "resumed_from_epoch": 0})
        return handle

    def wait(self, timeout: float) -> list[TaskOutcome]:
        self.waits += 1
        if self.waits == self.interrupt_on_wait:
            raise KeyboardInterrupt
        self.now += timeout
        ended = []
        for attempt in list(self.running):
            attempt.waited += 1
            attempt.on_event({"event": "step", "epoch": 1, "iteration": attempt.waited, "loss": 1 / attempt.waited})
            if attempt.waited >= attempt.behaviour.waits:
                ended.append(self._end(attempt, attempt.behaviour.status))
        return ended

    def interrupt(self) -> list[TaskOutcome]:
        return [self._end(attempt, "interrupted" if attempt.behaviour.interrupted_record else None, -2)
                for attempt in list(self.running)]

    def _end(self, attempt: Attempt, status: str | None, returncode: int | None = None) -> TaskOutcome:
        self.running.remove(attempt)
        task = attempt.handle.task
        if status is not None:
            kind = attempt.behaviour.kind if status == "failed" else "interrupted" if status == "interrupted" else None
            error = error_info(kind, f"{kind} in the fake worker") if kind else None
            write_record(task.results, new_record(task.cell, status, attempt=task.attempt, error=error,
                                                  metrics={"miou": 0.5}))
        code = attempt.behaviour.returncode if returncode is None else returncode
        return TaskOutcome(attempt.handle, code, "last lines of the log")


def run(tmp_path: Path, executor: FakeExecutor, **options):
    grid = parse_grid(GRID, source="fake.yaml")
    console = Console(file=io.StringIO(), width=100)
    summary = run_grid(grid, tmp_path / "results", device="cpu", cache_dir=tmp_path / "cache", executor=executor,
                       console=console, **options)
    return summary, console.file.getvalue()


def slugs(tasks: list[CellTask]) -> list[str]:
    return [task.cell.slug for task in tasks]


def test_cells_run_in_grid_order_and_each_ends_with_the_workers_record(tmp_path: Path):
    executor = FakeExecutor(lambda task: Behaviour())
    summary, output = run(tmp_path, executor)
    assert slugs(executor.submitted) == [cell.slug for cell in summary.cells]
    assert executor.most_in_flight == 1
    assert summary.ran == 4 and summary.exit_code == 0
    assert {r.attempt for r in summary.records.values()} == {t.attempt for t in executor.submitted}
    assert "[4/4] ok" in output


def test_several_cells_in_flight_keep_the_executor_full(tmp_path: Path):
    # The first cell is slow; the other three pass it, two at a time.
    executor = FakeExecutor(lambda task: Behaviour(waits=5 if task.cell.seed == 0 and task.cell.loss.name == "ce"
                                                   else 1), max_in_flight=2)
    summary, _ = run(tmp_path, executor)
    assert executor.most_in_flight == 2 and summary.ran == 4
    assert all(record.status == "ok" for record in summary.records.values())


def test_a_worker_that_ends_without_a_record_gets_one_from_the_runner(tmp_path: Path):
    def script(task: CellTask) -> Behaviour:
        return {"ce": Behaviour(status=None, returncode=-9), "focal": Behaviour(status=None, returncode=3)}[
            task.cell.loss.name] if task.cell.seed == 0 else Behaviour()

    summary, output = run(tmp_path, FakeExecutor(script))
    by_slug = {record.slug: record for record in summary.records.values()}
    killed = by_slug["fpn__resnet18__ce__synthetic__s0"]
    assert killed.status == "failed" and killed.error.kind == "killed"
    assert "signal 9" in killed.error.message and killed.error.log_tail == "last lines of the log"
    assert killed.execution.to_json() == {"executor": "fake", "threads": 1, "host": "testhost", "gpu_ids": None}
    lost = by_slug["fpn__resnet18__focal__synthetic__s0"]
    assert lost.error.kind == "worker_lost" and "code 3" in lost.error.message
    assert summary.count("ok") == 2 and summary.exit_code == 1
    assert "failed fpn__resnet18__ce__synthetic__s0  killed: the worker was killed by signal 9" in output


@pytest.mark.parametrize("in_flight", [1, 2])
def test_out_of_memory_is_retried_at_half_the_batch_size(tmp_path: Path, in_flight: int):
    def script(task: CellTask) -> Behaviour:
        batch_size = task.batch_size or task.cell.train.batch_size
        if task.cell.loss.name == "ce" and batch_size > 2:
            return Behaviour(status="failed", kind="oom")
        return Behaviour(waits=3)

    executor = FakeExecutor(script, max_in_flight=in_flight)
    summary, output = run(tmp_path, executor, oom_retry=True)
    assert summary.count("ok") == 4 and summary.ran == 4
    retried = [t for t in executor.submitted if t.cell.loss.name == "ce" and t.cell.seed == 0]
    assert [t.batch_size for t in retried] == [None, 4, 2]
    assert [[earlier["batch_size"] for earlier in t.oom_retries] for t in retried] == [[], [8], [8, 4]]
    assert len({t.attempt for t in retried}) == 3
    assert "out of memory; retrying at batch size 2" in output


def test_out_of_memory_is_kept_without_oom_retry_and_below_batch_size_2(tmp_path: Path):
    executor = FakeExecutor(lambda task: Behaviour(status="failed", kind="oom"))
    summary, _ = run(tmp_path, executor)
    assert len(executor.submitted) == 4 and summary.count("failed") == 4

    executor = FakeExecutor(lambda task: Behaviour(status="failed", kind="oom"))
    summary, _ = run(tmp_path / "retry", executor, oom_retry=True)
    assert [t.batch_size for t in executor.submitted if t.cell.id == summary.cells[0].id] == [None, 4, 2]
    assert summary.count("failed") == 4


def test_interruption_records_every_cell_in_flight_and_the_next_run_resumes(tmp_path: Path):
    order = [cell.id for cell in expand(parse_grid(GRID, source="fake.yaml")).cells]

    def script(task: CellTask) -> Behaviour:
        # The first cell ends at the first wait; the third, in flight with the second, dies without a record.
        return [Behaviour(waits=1), Behaviour(waits=9), Behaviour(waits=9, interrupted_record=False),
                Behaviour()][order.index(task.cell.id)]

    executor = FakeExecutor(script, max_in_flight=2, interrupt_on_wait=3)
    summary, _ = run(tmp_path, executor)
    assert summary.interrupted and summary.exit_code == 130
    assert len(executor.submitted) == 3  # the fourth cell never started
    records = summary.records
    assert records[order[0]].status == "ok"
    assert records[order[1]].status == "interrupted"
    assert records[order[1]].error.message == "interrupted in the fake worker"  # its own record
    assert records[order[2]].status == "interrupted"
    assert "before the worker wrote a record" in records[order[2]].error.message  # the runner's
    assert order[3] not in records

    again = FakeExecutor(lambda task: Behaviour(), max_in_flight=2)
    resumed, _ = run(tmp_path, again)
    assert [t.cell.id for t in again.submitted] == order[1:]
    assert resumed.reused == 1 and resumed.exit_code == 0
    assert resumed.records[order[0]].written_at == records[order[0]].written_at


def test_a_log_gets_a_line_per_finished_cell_and_one_every_30_seconds_per_running_cell(tmp_path: Path):
    executor = FakeExecutor(lambda task: Behaviour(waits=70) if task.cell.seed == 0 else Behaviour(status=None,
                                                                                                  returncode=1))
    console = Console(file=io.StringIO(), width=60)  # narrower than the lines: they must not wrap
    view = LineView(console, clock=lambda: executor.now)
    summary, _ = run(tmp_path, executor, view=view)
    lines = console.file.getvalue().splitlines()
    ce = "fpn__resnet18__ce__synthetic__s0"
    assert lines[:3] == [f"  {ce}: epoch 1/1, iteration 30/100, loss 0.0333, 30 s",
                         f"  {ce}: epoch 1/1, iteration 60/100, loss 0.0167, 1 min 00 s",
                         f"[1/4] ok {ce}  mIoU 0.5000  (1 min 10 s)"]
    assert lines[3].startswith("[2/4] failed fpn__resnet18__ce__synthetic__s1  worker_lost: the worker exited")
    assert lines[-1].startswith("[4/4] failed fpn__resnet18__focal__synthetic__s1  worker_lost")
    assert len(lines) == 2 + 2 + 4  # two progress lines for each of the two slow cells, one line per cell


def test_bars_on_a_terminal_and_lines_elsewhere():
    assert isinstance(make_view(Console(file=io.StringIO())), LineView)
    assert isinstance(make_view(Console(file=io.StringIO(), force_terminal=True)), BarView)
