"""Train and evaluate one cell: one readable loop, seeded, explicit autocast, no callback framework.

The loop saves its whole state (model, optimizer, step, RNG states, history, best checkpoint) at the end of every
epoch, so a worker that dies mid-run resumes from its last epoch and ends with the same result as an uninterrupted
run (on the CPU, with the same seed).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from segbench.cell.evaluate import evaluate_model
from segbench.cell.examples import sample_id, save_examples
from segbench.errors import ConfigError
from segbench.execution import faults
from segbench.grid.cells import Cell
from segbench.losses import build_loss, class_weights_from_counts
from segbench.measure.cost import cell_cost, count_params
from segbench.storage import atomic_torch_save

Emit = Callable[[dict[str, Any]], None]
TRAIN_STATE_FILE = "train_state.pt"


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, iteration: int, loss: float, last_finite_loss: float | None) -> None:
        super().__init__(
            f"training loss became {loss} at iteration {iteration} (last finite loss: {last_finite_loss}); "
            "lower the learning rate or disable autocast"
        )
        self.iteration = iteration
        self.last_finite_loss = last_finite_loss


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_context(cell: Cell, device: torch.device):
    """bf16/fp16 autocast on CUDA when the grid asks for it; full precision elsewhere."""
    if device.type == "cuda" and cell.train.autocast:
        return torch.autocast("cuda", dtype=getattr(torch, cell.train.autocast_dtype))
    return nullcontext()


def make_datasets(cell: Cell, pad_multiple: int, cache_dir: Path | None):
    from segbench.datasets import EvalTransform, TrainTransform, build_dataset, parse_dataset_params

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    train_tf = TrainTransform(crop=tuple(cell.train.crop), scale_range=tuple(cell.train.scale_range),
                              hflip=cell.train.hflip)
    eval_tf = EvalTransform(size=tuple(cell.eval.size) if cell.eval.size else None, pad_multiple=pad_multiple)
    train_set = build_dataset(cell.dataset.name, params, "train", train_tf, cache_dir)
    val_set = build_dataset(cell.dataset.name, params, cell.eval.split, eval_tf, cache_dir)
    if cell.eval.max_images is not None and len(val_set) > cell.eval.max_images:
        val_set = Subset(val_set, range(cell.eval.max_images))
    return train_set, val_set


def make_optimizer(cell: Cell, model: torch.nn.Module) -> torch.optim.Optimizer:
    cfg = cell.train
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    optimizer_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(schedule: str, iteration: int, total: int, power: float) -> float:
    """Multiplier of the base learning rate at `iteration` (0-based) of `total`."""
    progress = min(iteration / max(total, 1), 1.0)
    if schedule == "poly":
        return (1.0 - progress) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@dataclass
class TrainState:
    """Everything the loop carries from one epoch to the next; saved after every epoch."""

    epoch: int = 0
    iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # epoch, model state, confusion matrix, metrics, per_image
    step_times: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    last_finite_loss: float | None = None


def save_train_state(path: Path, cell: Cell, batch_size: int, state: TrainState, model, optimizer, generator) -> None:
    np_state = np.random.get_state()
    atomic_torch_save(path, {
        "config_hash": cell.config_hash,
        "batch_size": batch_size,
        "loop": vars(state),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loader": generator.get_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
            "python": _to_lists(random.getstate()),
        },
    }, durable=False)  # a state lost to a power cut only means starting the cell over; load_train_state checks it


def load_train_state(path: Path, cell: Cell, batch_size: int, model, optimizer, generator) -> TrainState | None:
    """Restore a saved state of this very cell (same config hash and batch size); None when there is none."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged state file means starting over, never a wrong resume
        return None
    if saved.get("config_hash") != cell.config_hash or saved.get("batch_size") != batch_size:
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    rng = saved["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    generator.set_state(rng["loader"])
    numpy_state = rng["numpy"]
    np.random.set_state((numpy_state[0], numpy_state[1].numpy(), *numpy_state[2:]))
    random.setstate(_to_tuples(rng["python"]))
    return TrainState(**saved["loop"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(item) for item in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(item) for item in value) if isinstance(value, list) else value


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
    timing. Writes `best.pt` (state dict) in `cell_dir`.
    """
    from segbench.models import MODELS, build_model, incompatibility

    started = time.perf_counter()
    batch_size = batch_size or cell.train.batch_size
    seed_everything(cell.seed)
    train_set, val_set = make_datasets(cell, MODELS.get(cell.model).pad_multiple, cache_dir)
    info = (val_set.dataset if isinstance(val_set, Subset) else val_set).info
    eval_shape = tuple(val_set[0][0].shape[1:])
    if (reason := incompatibility(cell.model, cell.encoder, eval_shape)) is not None:
        raise ConfigError(f"{cell.model} cannot evaluate {eval_shape[0]}x{eval_shape[1]} inputs: {reason}; "
                          "set eval.size in the grid")
    if len(train_set) < batch_size:
        raise ValueError(f"the train split has {len(train_set)} images, fewer than batch_size {batch_size}")

    generator = torch.Generator().manual_seed(cell.seed)
    loader_args = {"num_workers": cell.train.num_workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator,
                              **loader_args)
    val_loader = DataLoader(val_set, batch_size=cell.eval.batch_size, shuffle=False, **loader_args)

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
    autocast = autocast_context(cell, device)

    state_path = cell_dir / TRAIN_STATE_FILE
    state = load_train_state(state_path, cell, batch_size, model, optimizer, generator) or TrainState()
    resumed_from_epoch = state.epoch
    emit({"event": "start", "epochs": epochs, "iterations": total_iters, "resumed_from_epoch": resumed_from_epoch})
    for epoch in range(state.epoch + 1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        loss_sum, steps = 0.0, 0
        step_start = time.perf_counter()
        for images, labels in train_loader:
            if state.iteration >= total_iters:
                break
            for group in optimizer.param_groups:
                group["lr"] = cell.train.lr * lr_factor(cell.train.schedule, state.iteration, total_iters,
                                                        cell.train.poly_power)
            loss_value = _train_step(model, criterion, optimizer, images, labels, device, autocast, state)
            loss_sum += loss_value
            steps += 1
            now = time.perf_counter()
            state.step_times.append(now - step_start)
            step_start = now
            emit({"event": "step", "epoch": epoch, "iteration": state.iteration, "loss": loss_value})
        state.train_seconds += time.perf_counter() - epoch_start
        row: dict[str, Any] = {"epoch": epoch, "iterations": state.iteration, "train_loss": loss_sum / max(steps, 1),
                               "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": time.perf_counter() - epoch_start}
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
    atomic_torch_save(cell_dir / "best.pt", best["model"])
    model.load_state_dict(best["model"])
    per_image = [{**row, "sample_id": sample_id(val_set, row["index"])} for row in best["per_image"]]
    examples = save_examples(model, val_set, per_image, cell_dir, device, autocast)
    cost = (cell_cost(model, cell, (3, *eval_shape), device) if cell.measure.enabled
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
        "checkpoint": "best.pt",
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


def _train_step(model, criterion, optimizer, images, labels, device, autocast, state: TrainState) -> float:
    """One optimisation step; raises Diverged on a non-finite loss. Returns the loss value."""
    if (limit := faults.value("oom_above_batch")) is not None and images.shape[0] > limit:
        raise torch.OutOfMemoryError(f"CUDA out of memory (simulated for a batch of {images.shape[0]})")
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    with autocast:
        logits = model(images)
    loss = criterion(logits.float(), labels)
    if faults.value("nan_loss_at") == state.iteration:
        loss = loss * float("nan")
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise Diverged(state.iteration, loss_value, state.last_finite_loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    state.last_finite_loss = loss_value
    state.iteration += 1
    if (seconds := faults.value("step_sleep")) is not None:
        time.sleep(seconds)
    return loss_value


def _better(candidate: float, incumbent: float) -> bool:
    if math.isnan(incumbent):
        return not math.isnan(candidate)
    return not math.isnan(candidate) and candidate > incumbent
