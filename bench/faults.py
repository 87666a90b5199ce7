"""Fault injection for segbench's reliability tests, read once from the SEGBENCH_FAULT environment variable.

Format: comma-separated `name=value` pairs, e.g. `SEGBENCH_FAULT=nan_loss_at=3`. Known faults:
- `nan_loss_at=N`: the training loss becomes NaN at iteration N (0-based).
- `oom_above_batch=B`: a training step with more than B images raises a (simulated) CUDA out-of-memory error.
- `step_sleep=S`: sleep S seconds after every training step (gives a test time to kill a worker mid-training).
- `no_training=1`: a training step raises (tests that evaluating a finished cell again trains nothing).
- `crash_at_epoch=E`: the worker process dies abruptly (os._exit) at the end of epoch E, after its checkpoint.
- `unshared_results=1`: in a Ray node's environment, its storage probe writes to a folder of its own instead of the
  results folder, as a node whose results path is a local disk (ray_storage.py).
Unset (always, outside tests), every check is a dictionary lookup that finds nothing.
"""

from __future__ import annotations

import os

ENV = "SEGBENCH_FAULT"


def _parse(text: str) -> dict[str, float]:
    faults: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        faults[name] = float(value or 1)
    return faults


ACTIVE = _parse(os.environ.get(ENV, ""))


def reload() -> None:
    """Read the variable again: a process forked from segbench's fork server gets its environment after import."""
    global ACTIVE
    ACTIVE = _parse(os.environ.get(ENV, ""))


def value(name: str) -> float | None:
    return ACTIVE.get(name)
