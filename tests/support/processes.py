"""Processes that tests start in their own process group (start_new_session=True), and their end.

A test that fails or times out (pytest-timeout raises in the middle of it) never reaches its own clean-up: the runs it
started, their workers, ranks or Ray instance would train on after it. `track` notes such a process; the autouse
fixture in tests/conftest.py calls `kill_tracked` at every test's teardown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

_tracked: list[subprocess.Popen] = []


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to the whole process group `process` leads, then reap it (a no-op when the group is already empty)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def track(process: subprocess.Popen) -> subprocess.Popen:
    """Kill `process`'s group at the end of the current test (it must lead its own group: start_new_session=True)."""
    _tracked.append(process)
    return process


def kill_tracked() -> None:
    while _tracked:
        kill_group(_tracked.pop())
