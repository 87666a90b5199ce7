"""A trained cell from its folder: its record, its checkpoint loaded into its architecture, its evaluation transform
(used by `segbench predict` and by evaluating a finished cell again, attached.py).

Everything `segbench predict` needs to know about a cell comes from the cell folder alone (the record, found and
read by segbench.records.cells, is the source of truth); nothing is read from the grid file or the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from segbench.cell.inference import Protocol
from segbench.devices import autocast_context, autocast_dtype
from segbench.errors import CheckpointError
from segbench.records.cells import checkpoint_path, read_cell_record
from segbench.records.paths import RECORD_FILE
from segbench.records.schema import DatasetInfo, Record
from segbench.records.store import STATUS_OK


@dataclass
class TrainedCell:
    """A cell ready to predict: the model in eval mode on `device`, and how its evaluation prepared inputs."""

    cell_dir: Path
    record: Record
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
    def protocol(self) -> Protocol:
        """How its evaluation computed logits (eval.mode, eval.tta): predictions follow the same protocol."""
        return Protocol.of(self.cell.eval, self.transform.pad_multiple)

    @property
    def autocast_dtype(self) -> str | None:
        """The evaluation's precision: 'bfloat16' or 'float16' on CUDA when the grid asked for it, else None."""
        return autocast_dtype(self.cell.train, self.device)

    def autocast(self):
        return autocast_context(self.device, self.autocast_dtype)


def trained_record(cell_dir: Path) -> Record:
    """The record of a cell that trained successfully and kept its checkpoint; CheckpointError otherwise."""
    record = read_cell_record(cell_dir)
    if record.status != STATUS_OK:
        error = record.error
        reason = f"{error.kind}: {error.message}" if error else "no error kind: no message"
        raise CheckpointError(
            f"cell {record.cell_id} has status '{record.status}' ({reason}) and no trained model to predict with; "
            "run its grid again (with --retry-failed) or pick a cell whose status is ok."
        )
    weights = checkpoint_path(cell_dir, record)
    if not weights.is_file():
        raise CheckpointError(
            f"cell {record.cell_id} has no checkpoint {weights}; run its grid again with --force to retrain it."
        )
    return record


def prediction_dataset(record: Record, cell_dir: Path) -> DatasetInfo:
    """The record's dataset section with what prediction needs (classes, palette, ignore index); CheckpointError
    for a record that lacks them."""
    dataset = record.dataset
    if dataset is None or dataset.palette is None or dataset.ignore_index is None:
        raise CheckpointError(
            f"{cell_dir / RECORD_FILE} does not name its dataset's classes, palette and ignore index; retrain the "
            "cell with this segbench version to predict with it."
        )
    return dataset


def load_trained_cell(cell_dir: Path, device: torch.device) -> TrainedCell:
    """Rebuild the cell's architecture, load its checkpoint and its evaluation transform; SegbenchError if unusable."""
    from segbench.datasets import EvalTransform
    from segbench.grid.cells import Cell
    from segbench.models import MODELS, build_model

    cell_dir = Path(cell_dir)
    record = trained_record(cell_dir)
    weights = checkpoint_path(cell_dir, record)
    try:
        cell = Cell.model_validate(record.config.to_json())
    except ValidationError as exc:  # a record written by a segbench whose configuration had other fields
        raise CheckpointError(
            f"the configuration in {cell_dir / RECORD_FILE} does not match this segbench version "
            f"({exc.error_count()} problem(s), the first at {'.'.join(map(str, exc.errors()[0]['loc']))}); "
            "predict with the segbench version that trained the cell."
        ) from None
    dataset = prediction_dataset(record, cell_dir)
    model = build_model(cell.model, encoder=cell.encoder, classes=len(dataset.classes), encoder_weights=None)
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
                              pad_multiple=MODELS.get(cell.model).pad_multiple, ignore_index=dataset.ignore_index)
    return TrainedCell(cell_dir, record, cell, model, device, transform, list(dataset.classes),
                       [list(colour) for colour in dataset.palette], dataset.ignore_index)
