"""The resolved grids a results folder keeps (`<results>/grids/<name>-<hash>.yaml`, written by every run), read back
for what the report needs from them: the order in which each axis lists its values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from segbench.errors import SegbenchError
from segbench.grid.load import load_yaml
from segbench.grid.schema import LossSpec
from segbench.records.paths import grids_dir


def newest_grid_file(results: Path) -> Path | None:
    """The resolved grid of the newest run into `results`, or None when it has none."""
    files = sorted(grids_dir(results).glob("*.yaml"), key=lambda path: path.stat().st_mtime)
    return files[-1] if files else None


def _loss_key(entry: Any) -> str:
    """A saved grid's loss entry as cells name it (LossSpec.key); the id or name if it no longer validates."""
    if isinstance(entry, str):
        return entry
    try:
        return LossSpec.model_validate(entry).key
    except (ValidationError, SegbenchError, ValueError, TypeError):
        return str(entry.get("id") or entry.get("name")) if isinstance(entry, dict) else str(entry)


def grid_axis_order(path: Path | None) -> dict[str, list[str]]:
    """{axis: values in the grid file's order} for the axes model, encoder and loss (losses named as cells name
    them); {} when there is no file or it cannot be read. Each entry is read on its own, so a grid saved by an older
    segbench, which the current grid format may refuse as a whole, still gives its order."""
    if path is None:
        return {}
    try:
        grid = load_yaml(path)
    except (OSError, SegbenchError):
        return {}
    return {"model": [str(v) for v in grid.get("models") or []],
            "encoder": [str(v) for v in grid.get("encoders") or []],
            "loss": [_loss_key(v) for v in grid.get("losses") or []]}
