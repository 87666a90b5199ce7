"""Progress events from a worker to its runner: one JSON object per line on the worker's stdout.

Every event line starts with EVENT_PREFIX, so that stray prints of libraries cannot be mistaken for events. Kinds
sent by the training function: `start` (epochs, iterations, resumed_from_epoch), `step` (epoch, iteration, loss),
`epoch` (one history row: epoch, train_loss, val_miou...); the worker ends with `done` (status).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

EVENT_PREFIX = "@@segbench "

Event = dict[str, Any]
OnEvent = Callable[[Event], None]


class RunnerGone(KeyboardInterrupt):
    """Nobody reads the worker's events any more: its runner ended. An interrupt, so the cell is recorded as one."""


def emit(event: Event) -> None:
    """Write one event line to stdout and flush it, so the runner sees it while the cell is still running. Raises
    RunnerGone when the runner's end of the pipe is closed (it died, and the signal it leaves is on its way)."""
    try:
        sys.stdout.write(EVENT_PREFIX + json.dumps(event) + "\n")
        sys.stdout.flush()
    except BrokenPipeError as exc:
        with contextlib.suppress(OSError):  # nothing more may go to the closed pipe, not even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise RunnerGone("the runner ended") from exc


def parse_event(line: str) -> Event | None:
    """The event carried by one stdout line of a worker; None for any other line (a library's print)."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
