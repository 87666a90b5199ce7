"""Helpers for the fault-injection battery: tiny grids run through the real CLI in a subprocess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.grids import Sweep, tiny_grid


@pytest.fixture
def sweep(tmp_path: Path) -> Callable[..., Sweep]:
    """sweep(folder, **grid changes): FPN/ResNet-18 x CE and focal on the tiny grid (tiny_grid's keywords)."""

    def make(folder: str = "sweep", **changes: Any) -> Sweep:
        return Sweep(tmp_path / folder, tiny_grid("faults", **({"models": ["fpn"], "losses": ["ce", "focal"]}
                                                                | changes)))

    return make
