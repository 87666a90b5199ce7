"""A trained cell from its folder: its record, its checkpoint loaded into its architecture, its evaluation transform.

Everything `segbench predict` and `segbench show` need to know about a cell comes from the cell folder alone (the
record is the source of truth); nothing is read from the grid file or the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from segbench.devices import autocast_context, autocast_dtype
from segbench.errors import CheckpointError, ConfigError
from segbench.records.paths import CELLS_DIR, RECORD_FILE, checkpoint_path
from segbench.records.store import STATUS_OK, read_record


def read_cell_record(cell_dir: Path) -> dict[str, Any]:
    """The record of the cell folder `cell_dir`; ConfigError (one sentence) when the folder is not a cell."""
    cell_dir = Path(cell_dir)
    if (cell_dir / RECORD_FILE).is_file():
        return read_record(cell_dir / RECORD_FILE)
    if not cell_dir.is_dir():
        raise ConfigError(f"{cell_dir} does not exist; pass a cell folder such as <results>/{CELLS_DIR}/<cell id>.")
    cells = sorted(path.parent.name for path in (cell_dir / CELLS_DIR).glob(f"*/{RECORD_FILE}"))
    if cells:
        raise ConfigError(
            f"{cell_dir} is a results folder, not a cell folder; pass one of its {len(cells)} cells, e.g. "
            f"{cell_dir / CELLS_DIR / cells[0]}."
        )
    raise ConfigError(
        f"{cell_dir} is not a cell folder (it has no {RECORD_FILE}); pass a folder such as "
        f"<results>/{CELLS_DIR}/<cell id> written by `segbench run`."
    )


@dataclass
class TrainedCell:
    """A cell ready to predict: the model in eval mode on `device`, and how its evaluation prepared inputs."""

    cell_dir: Path
    record: dict[str, Any]
    cell: Any  # segbench.grid.cells.Cell
    model: torch.nn.Module
    device: torch.device
    transform: Any  # segbench.datasets.EvalTransform of the cell's evaluation (resize, normalise, pad)
    classes: list[str]
    palette: list[list[int]]
    ignore_index: int

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.cell_dir, self.record)

    @property
    def autocast_dtype(self) -> str | None:
        """The evaluation's precision: 'bfloat16' or 'float16' on CUDA when the grid asked for it, else None."""
        return autocast_dtype(self.cell.train, self.device)

    def autocast(self):
        return autocast_context(self.device, self.autocast_dtype)


def trained_record(cell_dir: Path) -> dict[str, Any]:
    """The record of a cell that trained successfully and kept its checkpoint; CheckpointError otherwise."""
    record = read_cell_record(cell_dir)
    if record.get("status") != STATUS_OK:
        error = record.get("error") or {}
        raise CheckpointError(
            f"cell {record.get('cell_id', Path(cell_dir).name)} has status '{record.get('status')}' "
            f"({error.get('kind', 'no error kind')}: {error.get('message', 'no message')}) and no trained model to "
            "predict with; run its grid again (with --retry-failed) or pick a cell whose status is ok."
        )
    weights = checkpoint_path(cell_dir, record)
    if not weights.is_file():
        raise CheckpointError(
            f"cell {record['cell_id']} has no checkpoint {weights}; run its grid again with --force to retrain it."
        )
    return record


def load_trained_cell(cell_dir: Path, device: torch.device) -> TrainedCell:
    """Rebuild the cell's architecture, load its checkpoint and its evaluation transform; SegbenchError if unusable."""
    from segbench.datasets import EvalTransform
    from segbench.grid.cells import Cell
    from segbench.models import MODELS, build_model

    cell_dir = Path(cell_dir)
    record = trained_record(cell_dir)
    weights = checkpoint_path(cell_dir, record)
    try:
        cell = Cell.model_validate(record["config"])
    except ValidationError as exc:  # a record written by a segbench whose configuration had other fields
        raise CheckpointError(
            f"the configuration in {cell_dir / RECORD_FILE} does not match this segbench version "
            f"({exc.error_count()} problem(s), the first at {'.'.join(map(str, exc.errors()[0]['loc']))}); "
            "predict with the segbench version that trained the cell."
        ) from None
    dataset = record["dataset"]
    model = build_model(cell.model, encoder=cell.encoder, classes=len(dataset["classes"]), encoder_weights=None)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # a truncated file, a foreign pickle, other shapes: one sentence, not a traceback
        reason = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"checkpoint {weights} cannot be loaded into {cell.model}/{cell.encoder} ({reason}); retrain the cell."
        ) from None
    model.to(device).eval()
    transform = EvalTransform(size=tuple(cell.eval.size) if cell.eval.size else None,
                              pad_multiple=MODELS.get(cell.model).pad_multiple, ignore_index=dataset["ignore_index"])
    return TrainedCell(cell_dir, record, cell, model, device, transform, list(dataset["classes"]),
                       [list(colour) for colour in dataset["palette"]], int(dataset["ignore_index"]))
