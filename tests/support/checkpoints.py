"""A trained cell's checkpoint evaluated again in the test's process, as its worker evaluated it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def evaluate_checkpoint(cell_folder: Path, record: dict[str, Any], dataset: Dataset, threads: int | None = None,
                        final: bool = False):
    """evaluate_model of the cell's saved weights on `dataset` (already transformed as the evaluation does), under
    the cell's inference protocol, with the worker's thread count (float sums depend on it) unless `threads`."""
    from segbench.cell.data import dataset_info
    from segbench.cell.evaluate import evaluate_model
    from segbench.cell.inference import Protocol
    from segbench.grid.cells import Cell
    from segbench.models import MODELS, build_model
    from segbench.records.paths import CHECKPOINT_FILE

    cell = Cell.model_validate(record["config"])
    info = dataset_info(dataset)
    model = build_model(cell.model, encoder=cell.encoder, classes=info.num_classes, encoder_weights=None)
    model.load_state_dict(torch.load(Path(cell_folder) / CHECKPOINT_FILE, weights_only=True))
    before = torch.get_num_threads()
    torch.set_num_threads(threads or record["execution"]["threads"])
    try:
        return evaluate_model(model, DataLoader(dataset, batch_size=cell.eval.batch_size), info,
                              torch.device("cpu"), torch.no_grad(), final=final,
                              protocol=Protocol.of(cell.eval, MODELS.get(cell.model).pad_multiple))
    finally:
        torch.set_num_threads(before)
