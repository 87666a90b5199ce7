"""Train, evaluate and measure one cell, and assemble the parts of its record.

train_and_evaluate runs three steps: set_up_training (training_setup.py: device settings, data, model, optimizer,
resumable state), run_epochs (training, periodic evaluation, selection, the state saved after every epoch) and
record_parts. The stages live beside this module: data.py (datasets, loaders), loop.py (one training epoch), state.py
(the resumable state), evaluate.py (confusion matrix over a split), examples.py (saved example predictions); cost
measurement is segbench.measure.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from segbench import faults
from segbench.atomic import atomic_torch_save
from segbench.cell.attached import further_parts, reported_parts, write_per_image_counts
from segbench.cell.data import loader_settings
from segbench.cell.deployment import forward_shape, measure_deployment, wants_deployment
from segbench.cell.distributed import SINGLE, Dist
from segbench.cell.evaluate import EvaluationResult, evaluate_model
from segbench.cell.examples import save_examples
from segbench.cell.inference import Protocol, ProtocolModel
from segbench.cell.loop import CHECK_EVERY, Diverged, Emit, StepSetup, train_epoch
from segbench.cell.selection import RULE_BEST, offer
from segbench.cell.state import TrainState, rng_state, save_train_state
from segbench.cell.training_setup import CellData, TrainingRun, set_up_training
from segbench.devices import AUTOCAST_DTYPES
from segbench.env import device_description
from segbench.grid.cells import Cell
from segbench.measure import cell_cost, count_macs, count_params
from segbench.measure.throughput import training_throughput
from segbench.optim import lr_factor
from segbench.records.paths import CHECKPOINT_FILE

__all__ = ["Diverged", "train_and_evaluate"]


@dataclass
class Selected:
    """What the epochs leave: the reported weights (in the run's model) and their evaluation on the reported split."""

    final: EvaluationResult
    epoch: int
    select_miou: float | None  # their score on the selection split (eval.select: best), else None


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
    per_image_counts, examples, history, budget (what set the training length, budget.py), selection, cost,
    precision, throughput, timing, distributed. Writes the selected weights (state dict, CHECKPOINT_FILE; not for a
    tuning trial) and the per-image counts in `cell_dir`.

    dist: this process's rank in a cell trained by several (distributed.py); only rank 0 writes files and returns
    the parts, the other ranks return None once the final evaluation is done.
    """
    started = time.perf_counter()
    run = set_up_training(cell, cell_dir, device, cache_dir, batch_size or cell.train.batch_size, dist)
    selected = run_epochs(cell, run, device, emit, dist)
    dist.leave()  # the cell's last collective is done
    if not dist.is_main:
        return None
    return record_parts(cell, cell_dir, device, run, selected, dist, started, cache_dir)


def run_epochs(cell: Cell, run: TrainingRun, device: torch.device, emit: Emit, dist: Dist) -> Selected:
    """Train the remaining epochs, evaluating after every `eval_every` and the last (and offering the weights to the
    selection rule), saving the resumable state after each; then load and evaluate the reported weights."""
    data, state, model = run.data, run.state, run.model

    def lr_at(iteration: int) -> float:
        return cell.train.lr * lr_factor(cell.train.schedule, iteration, run.total_iters, cell.train.poly_power)

    emit({"event": "start", "epochs": run.epochs, "iterations": run.total_iters,
          "resumed_from_epoch": run.resumed_from_epoch})
    final: EvaluationResult | None = None
    same_protocol = data.protocol == data.epoch_protocol
    for epoch in range(state.epoch + 1, run.epochs + 1):
        if isinstance(data.train_loader.sampler, DistributedSampler):
            data.train_loader.sampler.set_epoch(epoch)
        row = train_epoch(model, run.criterion, run.optimizer, data.train_loader, device, run.step, state, epoch,
                          run.total_iters, lr_at, emit)
        per_class_iou = None
        if epoch % cell.train.eval_every == 0 or epoch == run.epochs:
            # The last epoch's evaluation is the reported one (with calibration and boundaries) when the grid's
            # protocol is the one used while training; otherwise the reported one follows the epochs.
            reported = epoch == run.epochs and cell.trial is None and same_protocol
            result = timed_evaluation(state, model, data.val_loader, data, device, run.autocast, dist,
                                      data.epoch_protocol, final=reported)
            final = result if same_protocol else None
            row.update(val_miou=result.metrics["miou"], val_pixel_accuracy=result.metrics["pixel_accuracy"],
                       eval_time_s=result.seconds)
            per_class_iou = result.metrics["per_class"]["iou"]
            if data.select_loader is not None:
                chosen = timed_evaluation(state, model, data.select_loader, data, device, run.autocast, dist,
                                          data.epoch_protocol)
                row["select_miou"] = chosen.metrics["miou"]
                state.best = offer(state.best, epoch, chosen.metrics["miou"], model)
        state.history.append(row)
        state.epoch = epoch
        state.grad_scaler = run.step.scaler.state_dict() if run.step.scaler is not None else None
        rank_rngs = dist.gather(rng_state(data.generator)) if dist.enabled else None
        if dist.is_main and not (cell.trial is not None and epoch == run.epochs):  # a trial's record follows at once
            save_train_state(run.state_path, cell, run.batch_size, state, model, run.optimizer, data.generator,
                             rank_rngs)
        emit({"event": "epoch", **row, "val_per_class_iou": per_class_iou})
        if faults.value("crash_at_epoch") == epoch:
            dist.barrier()  # every rank ends after rank 0 saved the state
            os._exit(3)

    # The reported weights: the final model, or the best on the selection split (never on the reported split).
    selected_epoch, select_miou = run.epochs, None
    if run.rule.rule == RULE_BEST and state.best is not None:
        selected_epoch, select_miou = state.best["epoch"], state.best["select_miou"]
        if selected_epoch != run.epochs:
            model.load_state_dict(state.best["model"])
            final = None
    if final is None:  # the selected weights were not evaluated last under the reported protocol (or the run
        final = timed_evaluation(state, model, data.val_loader, data, device, run.autocast, dist,  # resumed after
                                 data.protocol, final=cell.trial is None)  # its last epoch)
    return Selected(final=final, epoch=selected_epoch, select_miou=select_miou)


def record_parts(cell: Cell, cell_dir: Path, device: torch.device, run: TrainingRun, selected: Selected, dist: Dist,
                 started: float, cache_dir: Path | None = None) -> dict[str, Any]:
    """Rank 0's record parts (see train_and_evaluate), after writing the selected weights, the per-image counts and
    the examples in `cell_dir`, evaluating the further datasets (eval.datasets, domains.py) and the corruptions
    (eval.corruptions, robustness.py), measuring the cost and removing the resumable state; `started`:
    perf_counter time at the start of the cell."""
    data, state, step, final, model = run.data, run.state, run.step, selected.final, run.model
    if dist.enabled:  # rank 0 goes on alone: examples and cost with the cell's threads, on a plain copy of the
        dist.take_cell_threads()  # model (no DDP hooks, no SyncBatchNorm, which needs every rank)
        model = copy_weights(model, run.new_model())
    # A tuning trial is only its score: its weights and pictures are never looked at (the final cells train again).
    keep = cell.trial is None
    if keep:
        atomic_torch_save(cell_dir / CHECKPOINT_FILE, model.state_dict())
    reported, counts = reported_parts(final, data.val_set)
    write_per_image_counts(cell_dir, counts)
    examples = save_examples(model, data.val_set, reported["per_image"], cell_dir, device, run.autocast) if keep else []
    protocol = data.protocol
    further = further_parts(model, cell, data.info, protocol, device, run.autocast, cache_dir) if keep else {}
    timed_protocol = ((ProtocolModel(model, protocol), protocol.describe())
                      if protocol.mode == "slide" or protocol.tta else None)
    cost = (cell_cost(model, cell, (3, *data.eval_shape), device, train_batch_size=run.rank_batch,
                      protocol=timed_protocol) if cell.measure.enabled else {"params": count_params(model)})
    if keep and wants_deployment(cell):  # asked for explicitly: also with measure.enabled false
        further["deployment"] = measure_deployment(model, cell, cell_dir, data.val_set, data.info, protocol, device,
                                                   forward_shape(protocol, data.eval_shape), cache_dir)
    run.state_path.unlink(missing_ok=True)
    median_step = float(np.median(state.step_times)) if state.step_times else None
    images_per_s = run.batch_size / median_step if median_step else None
    throughput = training_throughput(crop_macs(model, cell, cost), images_per_s, cell.train.crop,
                                     device_description(device), run.precision)
    info = data.info
    return {
        "dataset": {"name": cell.dataset.name, "classes": list(info.classes), "ignore_index": info.ignore_index,
                    "palette": [list(colour) for colour in info.palette],
                    "num_train": len(data.train_set), "num_val": len(data.val_set),
                    "num_select": None if data.select_set is None else len(data.select_set)},
        **reported,
        **further,
        "examples": examples,
        "history": state.history,
        "budget": run.length.record(),
        "selection": run.rule.record(state.history, selected.epoch, selected.select_miou),
        "checkpoint": CHECKPOINT_FILE if keep else None,
        "train_batch_size": run.batch_size,
        "distributed": dist.describe(run.batch_size),
        "cost": cost,
        "precision": precision_record(cell, run.precision, step, state),
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
            "first_steps": step.warmup_steps,
            "first_steps_s": step.warmup_seconds,
            "compile_time_s": compile_seconds(step, median_step) if cell.train.compile else None,
            "data_loader": loader_settings(cell, device),
            "iterations": state.iteration,
            "epochs": run.epochs,
            "resumed_from_epoch": run.resumed_from_epoch,
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


def timed_evaluation(state: TrainState, model, loader, data: CellData, device, autocast, dist: Dist,
                     protocol: Protocol, final: bool = False) -> EvaluationResult:
    """evaluate_model under `protocol` (on this rank's shard, merged over the ranks), its seconds added to the
    state's evaluation time and kept on the result. final: the reported evaluation, with calibration and boundary
    IoU."""
    started = time.perf_counter()
    dist.sync_buffers(model)
    result = dist.merge(evaluate_model(model, loader, data.info, device, autocast, final=final, protocol=protocol))
    result.seconds = time.perf_counter() - started
    state.eval_seconds += result.seconds
    return result
