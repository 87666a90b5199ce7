"""Cells trained by two gloo processes (train.world_size: 2) on the tiny grid, one thread each on a 2-core CPU.

End-to-end runs are few and shared: `trained` runs one cell once per session for every test that reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.grids import Sweep, tiny_grid

WORLD_SIZE = 2
N_VAL = 5  # odd: the two ranks score 3 and 2 images, so no even split hides a repeated or missing image


def make_distributed_grid(name: str, *, train: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """The tiny grid on WORLD_SIZE processes (global batch 4: 2 images per rank and step), N_VAL val images scored
    in batches of 2 (each rank's last batch is partial); keywords as tiny_grid's."""
    return tiny_grid(name, dataset={"n_val": N_VAL}, train={"world_size": WORLD_SIZE} | (train or {}),
                     eval={"batch_size": 2}, **changes)


@pytest.fixture
def distributed_grid() -> Callable[..., dict[str, Any]]:
    return make_distributed_grid


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """One U-Net/ResNet-18 cell trained for 2 epochs by two ranks, with its cost measured (the run is checked here)."""
    sweep = Sweep(Path(tmp_path_factory.mktemp("distributed")), make_distributed_grid("ddp"))
    result = sweep.run()
    assert result.returncode == 0, result.stdout + result.stderr
    return sweep
