"""Helpers for the fault-injection battery: tiny grids run through the real CLI in a subprocess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.grids import Sweep, tiny_grid


@pytest.fixture
def sweep(tmp_path: Path) -> Callable[..., Sweep]:
    """sweep(folder, **grid changes): FPN/ResNet-18 x CE and focal on the tiny grid (tiny_grid's keywords), without
    the cost measurement: faults, kills and resumes happen in training, and timing latency took about as long as
    training a tiny cell (tests/test_measure.py and the CLI tests cover the measurement)."""

    def make(folder: str = "sweep", **changes: Any) -> Sweep:
        document = {"models": ["fpn"], "losses": ["ce", "focal"], "measure": {"enabled": False}} | changes
        return Sweep(tmp_path / folder, tiny_grid("faults", **document))

    return make
