"""The worker's interrupt handling: the first SIGINT or SIGTERM stops the cell, every later one is ignored, so a
second Ctrl-C (the terminal's and the runner's copy) cannot cut the "interrupted" record short."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test starts a Python process that imports segbench (1-4 s)

SCRIPT = """
import os, signal, time
from segbench.execution.worker import _interrupt_once

signal.signal(signal.SIGINT, _interrupt_once)
signal.signal(signal.SIGTERM, _interrupt_once)
try:
    os.kill(os.getpid(), signal.{first})
    time.sleep(5)
    print("not interrupted")
except KeyboardInterrupt:
    # The copies that arrive while the first interrupt is being handled, before any line of this block has run.
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("record written")
"""


@pytest.mark.parametrize("first", ["SIGINT", "SIGTERM"])
def test_a_second_interrupt_cannot_stop_the_writing_of_the_record(first: str):
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(first=first)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "record written"


@pytest.mark.parametrize(("ignored", "expected"), [(False, "_interrupt_once"), (True, "SIG_IGN")])
def test_the_worker_takes_ctrl_c_unless_it_was_started_to_ignore_it(ignored: bool, expected: str):
    code = ("import signal\n"
            # as under `nohup ... &`, or the default, whatever the test process itself inherited (a background job
            # of a non-interactive shell starts with SIGINT ignored)
            f"signal.signal(signal.SIGINT, signal.SIG_IGN if {ignored} else signal.SIG_DFL)\n"
            "from segbench.execution.worker import main\n"
            "main([])\n"
            "name = lambda handler: getattr(handler, '__name__', None) or handler.name\n"
            "print(name(signal.getsignal(signal.SIGINT)), name(signal.getsignal(signal.SIGTERM)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == [expected, "_interrupt_once"], result.stderr


def test_a_bad_command_line_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "segbench.execution.worker"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_a_worker_whose_runner_died_before_it_started_ends_without_training(tmp_path):
    """A runner killed while its worker was still importing: the parent-death signal asked for afterwards would
    never come, so the worker checks who its parent is and ends instead of training on as an orphan."""
    import os

    from segbench.forkserver import PARENT_PID_ENV

    task = tmp_path / "task.json"
    task.write_text("{}")  # never read: the worker stops before
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid() + 1_000_000)}  # not this worker's parent (pytest)
    result = subprocess.run([sys.executable, "-m", "segbench.execution.worker", str(task)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 130 and "the runner ended before this worker started" in result.stderr
    env[PARENT_PID_ENV] = str(os.getpid())  # the real parent: the worker goes on (and fails on the empty task)
    result = subprocess.run([sys.executable, "-m", "segbench.execution.worker", str(task)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode != 130 and "KeyError" in result.stderr


def test_an_event_to_a_runner_that_is_gone_is_an_interrupt(monkeypatch):
    """A runner killed outright closes the read end of its worker's stdout before the parent-death signal arrives:
    the next event raises RunnerGone, a KeyboardInterrupt, so the worker records the cell as interrupted."""
    import io
    import os

    from segbench.execution.events import RunnerGone, emit

    read_end, write_end = os.pipe()
    os.close(read_end)
    saved = os.dup(1)
    stream = io.TextIOWrapper(io.FileIO(os.dup(write_end), "w"), write_through=True)
    os.close(write_end)
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        with pytest.raises(RunnerGone) as raised:
            emit({"event": "step", "iteration": 1})
        assert isinstance(raised.value, KeyboardInterrupt)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
