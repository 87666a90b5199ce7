"""Train, evaluate and measure one cell, and assemble the parts of its record.

The stages live beside this module: data.py (datasets, loaders), loop.py (one training epoch), state.py (the
resumable state saved after every epoch), evaluate.py (confusion matrix over a split), examples.py (saved example
predictions); cost measurement is segbench.measure.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from segbench import faults
from segbench.atomic import atomic_torch_save, atomic_write_bytes
from segbench.cell.data import (
    dataset_info,
    loader_settings,
    make_datasets,
    make_loaders,
    make_selection_set,
    train_class_counts,
)
from segbench.cell.distributed import SINGLE, Dist
from segbench.cell.evaluate import EvaluationResult, evaluate_model
from segbench.cell.examples import sample_id, save_examples
from segbench.cell.loop import CHECK_EVERY, Diverged, Emit, StepSetup, step_setup, train_epoch
from segbench.cell.selection import RULE_BEST, SelectionRule, offer
from segbench.cell.state import TrainState, load_train_state, rng_state, save_train_state, seed_everything
from segbench.devices import AUTOCAST_DTYPES, autocast_context, configure_determinism, resolve_precision
from segbench.env import device_description
from segbench.errors import ConfigError
from segbench.grid.cells import Cell
from segbench.losses import build_loss, class_weights_from_counts
from segbench.measure import cell_cost, count_macs, count_params
from segbench.measure.throughput import training_throughput
from segbench.metrics.bootstrap import bootstrap_miou_interval
from segbench.optim import lr_factor, make_optimizer
from segbench.records.paths import CHECKPOINT_FILE, PER_IMAGE_COUNTS_FILE, TRAIN_STATE_FILE

__all__ = ["Diverged", "train_and_evaluate"]

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def train_and_evaluate(
    cell: Cell,
    cell_dir: Path,
    device: torch.device,
    emit: Emit,
    cache_dir: Path | None = None,
    batch_size: int | None = None,
    dist: Dist = SINGLE,
) -> dict[str, Any] | None:
    """Train `cell`, evaluate on its val split after every `eval_every` epochs, report the selected weights.

    The selected weights are the final model's (`eval.select: last`) or those with the best mIoU on a selection split
    that is not the reported one (`eval.select: best`, see selection.py). batch_size overrides the grid's global
    batch (the runner halves it after an out-of-memory error). Returns the record parts: dataset, metrics and
    confusion_matrix of the selected weights on the reported split, their mIoU interval, per_image,
    per_image_counts, examples, history, selection, cost, precision, throughput, timing, distributed. Writes the
    selected weights (state dict, CHECKPOINT_FILE) and the per-image counts in `cell_dir`.

    dist: this process's rank in a cell trained by several (distributed.py); only rank 0 writes files and returns
    the parts, the other ranks return None once the final evaluation is done.
    """
    from segbench.models import MODELS, build_model, incompatibility

    started = time.perf_counter()
    configure_determinism(cell.train.deterministic)  # before the first cuBLAS call of this (fresh) process
    precision = resolve_precision(cell.train.precision, device)
    batch_size = batch_size or cell.train.batch_size
    rank_batch = dist.per_process_batch(batch_size)
    seed_everything(cell.seed)
    pad_multiple = MODELS.get(cell.model).pad_multiple
    train_set, val_set = make_datasets(cell, pad_multiple, cache_dir)
    rule = SelectionRule.of(cell.eval)
    train_set, select_set = make_selection_set(cell, train_set, pad_multiple, cache_dir)
    info = dataset_info(val_set)
    eval_shape = tuple(val_set[0][0].shape[1:])
    if (reason := incompatibility(cell.model, cell.encoder, eval_shape)) is not None:
        raise ConfigError(f"{cell.model} cannot evaluate {eval_shape[0]}x{eval_shape[1]} inputs: {reason}; "
                          "set eval.size in the grid")
    if len(train_set) < batch_size:  # expansion checks this for the built-in scenes; a dataset on disk is read here
        raise ConfigError(f"the train split has {len(train_set)} images, fewer than train.batch_size {batch_size}; "
                          f"set train.batch_size to at most {len(train_set)} or use a larger train split")

    generator = torch.Generator().manual_seed(cell.seed)
    train_loader, val_loader = make_loaders(cell, train_set, dist.shard(val_set), rank_batch, device, generator,
                                            dist.train_sampler(train_set, cell.seed))
    select_loader = None if select_set is None else make_loaders(cell, train_set, dist.shard(select_set),
                                                                 rank_batch, device, generator)[1]

    class_weights = None
    if cell.loss.class_weights:
        weights = class_weights_from_counts(train_class_counts(train_set), cell.loss.class_weights)
        class_weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
    criterion = build_loss(cell.loss.name, num_classes=info.num_classes, class_weights=class_weights,
                           ignore_index=info.ignore_index, gamma=cell.loss.gamma)
    memory_format = torch.channels_last if cell.train.channels_last else torch.preserve_format

    def new_model() -> torch.nn.Module:
        return build_model(cell.model, encoder=cell.encoder, classes=info.num_classes,
                           encoder_weights=cell.encoder_weights).to(device, memory_format=memory_format)

    model = dist.prepare(new_model())
    dist.seed_rank(cell.seed)
    optimizer = make_optimizer(cell, model)
    total_iters = cell.train.iterations or cell.train.epochs * len(train_loader)
    epochs = math.ceil(total_iters / len(train_loader))
    autocast = autocast_context(device, AUTOCAST_DTYPES[precision])
    setup = step_setup(dist.wrap(model), optimizer, autocast, precision=precision, device=device,
                       channels_last=cell.train.channels_last, compile_mode=cell.train.compile,
                       cudnn_benchmark=device.type == "cuda" and not cell.train.deterministic,
                       loss_reduction=dist.loss_reduction())

    def lr_at(iteration: int) -> float:
        return cell.train.lr * lr_factor(cell.train.schedule, iteration, total_iters, cell.train.poly_power)

    state_path = cell_dir / TRAIN_STATE_FILE
    state = load_train_state(state_path, cell, batch_size, model, optimizer, generator, dist.rank,
                             dist.world_size) or TrainState()
    resumed_from_epoch = state.epoch
    if setup.scaler is not None and state.grad_scaler is not None:
        setup.scaler.load_state_dict(state.grad_scaler)
    emit({"event": "start", "epochs": epochs, "iterations": total_iters, "resumed_from_epoch": resumed_from_epoch})
    final: EvaluationResult | None = None
    for epoch in range(state.epoch + 1, epochs + 1):
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        row = train_epoch(model, criterion, optimizer, train_loader, device, setup, state, epoch, total_iters,
                          lr_at, emit)
        per_class_iou = None
        if epoch % cell.train.eval_every == 0 or epoch == epochs:
            final = timed_evaluation(state, model, val_loader, info, device, autocast, dist)
            row.update(val_miou=final.metrics["miou"], val_pixel_accuracy=final.metrics["pixel_accuracy"],
                       eval_time_s=final.seconds)
            per_class_iou = final.metrics["per_class"]["iou"]
            if select_loader is not None:
                chosen = timed_evaluation(state, model, select_loader, info, device, autocast, dist)
                row["select_miou"] = chosen.metrics["miou"]
                state.best = offer(state.best, epoch, chosen.metrics["miou"], model)
        state.history.append(row)
        state.epoch = epoch
        state.grad_scaler = setup.scaler.state_dict() if setup.scaler is not None else None
        rank_rngs = dist.gather(rng_state(generator)) if dist.enabled else None
        if dist.is_main:
            save_train_state(state_path, cell, batch_size, state, model, optimizer, generator, rank_rngs)
        emit({"event": "epoch", **row, "val_per_class_iou": per_class_iou})
        if faults.value("crash_at_epoch") == epoch:
            import os

            dist.barrier()  # every rank ends after rank 0 saved the state
            os._exit(3)

    # The reported weights: the final model, or the best on the selection split (never on the reported split).
    selected_epoch, select_miou = epochs, None
    if rule.rule == RULE_BEST and state.best is not None:
        selected_epoch, select_miou = state.best["epoch"], state.best["select_miou"]
        if selected_epoch != epochs:
            model.load_state_dict(state.best["model"])
            final = None
    if final is None:  # the selected weights were not evaluated last (or the run resumed after its last epoch)
        final = timed_evaluation(state, model, val_loader, info, device, autocast, dist)
    dist.leave()  # the cell's last collective is done
    if not dist.is_main:
        return None
    if dist.enabled:  # rank 0 goes on alone: examples and cost with the cell's threads, on a plain copy of the
        dist.take_cell_threads()  # model (no DDP hooks, no SyncBatchNorm, which needs every rank)
        model = copy_weights(model, new_model())
    atomic_torch_save(cell_dir / CHECKPOINT_FILE, model.state_dict())
    per_image = [{**row, "sample_id": sample_id(val_set, row["index"])} for row in final.per_image]
    counts = save_per_image_counts(cell_dir, final, [row["sample_id"] for row in per_image])
    examples = save_examples(model, val_set, per_image, cell_dir, device, autocast)
    cost = (cell_cost(model, cell, (3, *eval_shape), device, train_batch_size=rank_batch) if cell.measure.enabled
            else {"params": count_params(model)})
    state_path.unlink(missing_ok=True)
    median_step = float(np.median(state.step_times)) if state.step_times else None
    images_per_s = batch_size / median_step if median_step else None
    throughput = training_throughput(crop_macs(model, cell, cost), images_per_s, cell.train.crop,
                                     device_description(device), precision)
    return {
        "dataset": {"name": cell.dataset.name, "classes": list(info.classes), "ignore_index": info.ignore_index,
                    "palette": [list(colour) for colour in info.palette],
                    "num_train": len(train_set), "num_val": len(val_set),
                    "num_select": None if select_set is None else len(select_set)},
        "metrics": final.metrics,
        "intervals": {"miou": miou_interval(final)},
        "confusion_matrix": final.matrix.tolist(),
        "per_image": per_image,
        "per_image_counts": counts,
        "examples": examples,
        "history": state.history,
        "selection": rule.record(state.history, selected_epoch, select_miou),
        "checkpoint": CHECKPOINT_FILE,
        "train_batch_size": batch_size,
        "distributed": dist.describe(batch_size),
        "cost": cost,
        "precision": precision_record(cell, precision, setup, state),
        "throughput": throughput,
        "timing": {
            "wall_time_s": time.perf_counter() - started,
            "train_time_s": state.train_seconds,
            "eval_time_s": state.eval_seconds,
            "train_step_s_median": median_step,
            "train_images_per_s": images_per_s,
            "step_time_method": f"median over windows of {CHECK_EVERY} steps (each timed between two reads of the "
                                "loss, which wait for the device) of their mean step time; the first steps of the "
                                "process are timed apart",
            "first_steps": setup.warmup_steps,
            "first_steps_s": setup.warmup_seconds,
            "compile_time_s": compile_seconds(setup, median_step) if cell.train.compile else None,
            "data_loader": loader_settings(cell, device),
            "iterations": state.iteration,
            "epochs": epochs,
            "resumed_from_epoch": resumed_from_epoch,
        },
    }


def precision_record(cell: Cell, precision: str, setup: StepSetup, state: TrainState) -> dict[str, Any]:
    """The record's `precision`: what the grid asked for and what ran (autocast dtype, gradient scaler and its
    skipped steps, memory format, torch.compile mode, determinism, cuDNN autotuning while training)."""
    scaler = None
    if setup.scaler is not None:
        scaler = {"skipped_steps": state.skipped_steps, "final_scale": setup.scaler.get_scale(),
                  "kind": "torch.amp.GradScaler, default settings"}
    return {"requested": cell.train.precision, "used": precision, "autocast_dtype": AUTOCAST_DTYPES[precision],
            "grad_scaler": scaler, "channels_last": cell.train.channels_last, "compile": cell.train.compile,
            "deterministic": cell.train.deterministic, "cudnn_benchmark_train": setup.cudnn_benchmark}


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    """`target` (a freshly built model of the same architecture) holding `source`'s weights and buffers."""
    target.load_state_dict(source.state_dict())
    return target


def compile_seconds(setup: StepSetup, median_step: float | None) -> float | None:
    """torch.compile's time, estimated as the first steps' time less as many ordinary (median) steps."""
    if setup.warmup_seconds is None or median_step is None:
        return None
    return max(setup.warmup_seconds - setup.warmup_steps * median_step, 0.0)


def crop_macs(model: torch.nn.Module, cell: Cell, cost: dict[str, Any]) -> int | None:
    """fvcore MACs of one forward pass at the training crop (for the throughput estimate): the cost measurement's
    count when the crop is the evaluation input, else counted once here; None when the grid turned MACs off."""
    if not (cell.measure.enabled and cell.measure.macs):
        return None
    shape = [1, 3, *cell.train.crop]
    counted = cost.get("macs") or {}
    if counted.get("input_shape") == shape and "macs" in counted:
        return counted["macs"]
    try:
        return count_macs(model, tuple(shape))["macs"]
    except Exception:  # a model fvcore cannot trace: cost["macs"] already holds the error
        return None


def timed_evaluation(state: TrainState, model, loader, info, device, autocast, dist: Dist) -> EvaluationResult:
    """evaluate_model (on this rank's shard, merged over the ranks), its seconds added to the state's evaluation
    time and kept on the result."""
    started = time.perf_counter()
    dist.sync_buffers(model)
    result = dist.merge(evaluate_model(model, loader, info, device, autocast))
    result.seconds = time.perf_counter() - started
    state.eval_seconds += result.seconds
    return result


def save_per_image_counts(cell_dir: Path, result: EvaluationResult, sample_ids: list[str]) -> dict[str, Any]:
    """Write the per-image, per-class intersection and union counts (int64 [N, C], compressed .npz) beside the
    record, atomically; returns the record's reference to the file."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, intersection=result.intersection, union=result.union,
                        sample_id=np.asarray(sample_ids))
    atomic_write_bytes(cell_dir / PER_IMAGE_COUNTS_FILE, buffer.getvalue())
    images, classes = result.intersection.shape
    return {"file": PER_IMAGE_COUNTS_FILE, "images": images, "classes": classes,
            "arrays": {"intersection": "int64 [images, classes]", "union": "int64 [images, classes]"}}


def miou_interval(result: EvaluationResult) -> dict[str, Any]:
    """95% percentile bootstrap interval of mIoU over the evaluated images (1000 resamples, seed 0)."""
    low, high = bootstrap_miou_interval(result.intersection, result.union, n_resamples=BOOTSTRAP_RESAMPLES,
                                        seed=BOOTSTRAP_SEED, confidence=0.95)
    return {"low": low, "high": high, "confidence": 0.95, "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED,
            "method": "percentile bootstrap over val images: images resampled with replacement, mIoU recomputed "
                      "from the pooled per-class intersections and unions"}
