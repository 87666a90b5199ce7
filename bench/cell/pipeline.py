"""Train, evaluate and measure one cell, and assemble the parts of its record.

The stages live beside this module: data.py (datasets, loaders), loop.py (one training epoch), state.py (the
resumable state saved after every epoch), evaluate.py (confusion matrix over a split), examples.py (saved example
predictions); cost measurement is segbench.measure.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.cell.data import dataset_info, make_datasets, make_loaders
from segbench.cell.evaluate import evaluate_model
from segbench.cell.examples import sample_id, save_examples
from segbench.cell.loop import Diverged, Emit, train_epoch
from segbench.cell.optim import lr_factor, make_optimizer
from segbench.cell.state import TrainState, load_train_state, save_train_state, seed_everything
from segbench.devices import autocast_context, autocast_dtype
from segbench.errors import ConfigError
from segbench.execution import faults
from segbench.grid.cells import Cell
from segbench.losses import build_loss, class_weights_from_counts
from segbench.measure import cell_cost, count_params
from segbench.records.paths import CHECKPOINT_FILE, TRAIN_STATE_FILE
from segbench.storage import atomic_torch_save

__all__ = ["Diverged", "train_and_evaluate"]


def train_and_evaluate(
    cell: Cell,
    cell_dir: Path,
    device: torch.device,
    emit: Emit,
    cache_dir: Path | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Train `cell`, evaluate on its val split after every `eval_every` epochs, keep the best checkpoint.

    batch_size overrides the grid's (the runner halves it after an out-of-memory error). Returns the record parts:
    dataset, metrics (of the selected checkpoint), confusion_matrix, per_image, examples, history, best_epoch, cost,
    timing. Writes the selected checkpoint (state dict, CHECKPOINT_FILE) in `cell_dir`.
    """
    from segbench.models import MODELS, build_model, incompatibility

    started = time.perf_counter()
    batch_size = batch_size or cell.train.batch_size
    seed_everything(cell.seed)
    train_set, val_set = make_datasets(cell, MODELS.get(cell.model).pad_multiple, cache_dir)
    info = dataset_info(val_set)
    eval_shape = tuple(val_set[0][0].shape[1:])
    if (reason := incompatibility(cell.model, cell.encoder, eval_shape)) is not None:
        raise ConfigError(f"{cell.model} cannot evaluate {eval_shape[0]}x{eval_shape[1]} inputs: {reason}; "
                          "set eval.size in the grid")
    if len(train_set) < batch_size:
        raise ValueError(f"the train split has {len(train_set)} images, fewer than batch_size {batch_size}")

    generator = torch.Generator().manual_seed(cell.seed)
    train_loader, val_loader = make_loaders(cell, train_set, val_set, batch_size, device, generator)

    class_weights = None
    if cell.loss.class_weights:
        weights = class_weights_from_counts(train_set.class_pixel_counts(per_image=True), cell.loss.class_weights)
        class_weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
    criterion = build_loss(cell.loss.name, num_classes=info.num_classes, class_weights=class_weights,
                           ignore_index=info.ignore_index, gamma=cell.loss.gamma)
    model = build_model(cell.model, encoder=cell.encoder, classes=info.num_classes,
                        encoder_weights=cell.encoder_weights).to(device)
    optimizer = make_optimizer(cell, model)
    total_iters = cell.train.iterations or cell.train.epochs * len(train_loader)
    epochs = math.ceil(total_iters / len(train_loader))
    autocast = autocast_context(device, autocast_dtype(cell.train, device))

    def lr_at(iteration: int) -> float:
        return cell.train.lr * lr_factor(cell.train.schedule, iteration, total_iters, cell.train.poly_power)

    state_path = cell_dir / TRAIN_STATE_FILE
    state = load_train_state(state_path, cell, batch_size, model, optimizer, generator) or TrainState()
    resumed_from_epoch = state.epoch
    emit({"event": "start", "epochs": epochs, "iterations": total_iters, "resumed_from_epoch": resumed_from_epoch})
    for epoch in range(state.epoch + 1, epochs + 1):
        row = train_epoch(model, criterion, optimizer, train_loader, device, autocast, state, epoch, total_iters,
                          lr_at, emit)
        if epoch % cell.train.eval_every == 0 or epoch == epochs:
            eval_start = time.perf_counter()
            result = evaluate_model(model, val_loader, info, device, autocast)
            state.eval_seconds += time.perf_counter() - eval_start
            row.update(val_miou=result.metrics["miou"], val_pixel_accuracy=result.metrics["pixel_accuracy"],
                       eval_time_s=time.perf_counter() - eval_start)
            if state.best is None or _better(result.metrics["miou"], state.best["metrics"]["miou"]):
                state.best = {"epoch": epoch, "model": {k: v.detach().cpu().clone() for k, v in
                                                         model.state_dict().items()},
                              "matrix": result.matrix, "metrics": result.metrics, "per_image": result.per_image}
        state.history.append(row)
        state.epoch = epoch
        save_train_state(state_path, cell, batch_size, state, model, optimizer, generator)
        emit({"event": "epoch", **row})
        if faults.value("crash_at_epoch") == epoch:
            import os

            os._exit(3)

    best = state.best
    assert best is not None  # the last epoch is always evaluated
    atomic_torch_save(cell_dir / CHECKPOINT_FILE, best["model"])
    model.load_state_dict(best["model"])
    per_image = [{**row, "sample_id": sample_id(val_set, row["index"])} for row in best["per_image"]]
    examples = save_examples(model, val_set, per_image, cell_dir, device, autocast)
    cost = (cell_cost(model, cell, (3, *eval_shape), device, train_batch_size=batch_size) if cell.measure.enabled
            else {"params": count_params(model)})
    state_path.unlink(missing_ok=True)
    median_step = float(np.median(state.step_times)) if state.step_times else None
    return {
        "dataset": {"name": cell.dataset.name, "classes": list(info.classes), "ignore_index": info.ignore_index,
                    "palette": [list(colour) for colour in info.palette],
                    "num_train": len(train_set), "num_val": len(val_set)},
        "metrics": best["metrics"],
        "confusion_matrix": best["matrix"].tolist(),
        "per_image": per_image,
        "examples": examples,
        "history": state.history,
        "best_epoch": best["epoch"],
        "selection": f"checkpoint with the best val mIoU over {sum('val_miou' in h for h in state.history)} "
                     "evaluations",
        "checkpoint": CHECKPOINT_FILE,
        "train_batch_size": batch_size,
        "cost": cost,
        "timing": {
            "wall_time_s": time.perf_counter() - started,
            "train_time_s": state.train_seconds,
            "eval_time_s": state.eval_seconds,
            "train_step_s_median": median_step,
            "train_images_per_s": batch_size / median_step if median_step else None,
            "iterations": state.iteration,
            "epochs": epochs,
            "resumed_from_epoch": resumed_from_epoch,
        },
    }


def _better(candidate: float, incumbent: float) -> bool:
    if math.isnan(incumbent):
        return not math.isnan(candidate)
    return not math.isnan(candidate) and candidate > incumbent
