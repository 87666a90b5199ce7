"""Everything a cell's epochs need, built once per process: device settings, data, model, optimizer and the
resumable state (pipeline.py runs the epochs on it and assembles the record parts)."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from segbench.cell.budget import TrainingLength, training_length
from segbench.cell.data import dataset_info, make_datasets, make_loaders, make_selection_set, train_class_counts
from segbench.cell.distributed import Dist
from segbench.cell.inference import Protocol
from segbench.cell.loop import StepSetup, step_setup
from segbench.cell.selection import SelectionRule
from segbench.cell.state import TrainState, load_train_state, seed_everything
from segbench.devices import AUTOCAST_DTYPES, autocast_context, configure_determinism, resolve_precision
from segbench.errors import ConfigError
from segbench.grid.cells import Cell
from segbench.losses import build_loss, class_weights_from_counts
from segbench.optim import make_optimizer
from segbench.records.paths import TRAIN_STATE_FILE


@dataclass
class CellData:
    """The cell's datasets and loaders; the evaluation loaders read this rank's shard."""

    train_set: Dataset
    val_set: Dataset
    select_set: Dataset | None  # eval.select: best only
    info: Any  # segbench.datasets DatasetInfo: classes, ignore index, palette
    eval_shape: tuple[int, int]  # height, width of the evaluation inputs
    protocol: Protocol  # how the reported evaluations compute their logits (eval.mode, eval.tta)
    epoch_protocol: Protocol  # the evaluations while training (Protocol.during_training)
    generator: torch.Generator  # the training loader's shuffling, saved in the resumable state
    train_loader: DataLoader
    val_loader: DataLoader
    select_loader: DataLoader | None


@dataclass
class TrainingRun:
    """One process's training of a cell, ready for its first (or resumed) epoch."""

    data: CellData
    precision: str  # what runs: fp32, bf16 or fp16
    batch_size: int  # the global batch
    rank_batch: int  # this process's share of it
    epochs: int
    total_iters: int
    length: TrainingLength  # what set total_iters: epochs, iterations or a compute budget (budget.py)
    model: torch.nn.Module
    new_model: Callable[[], torch.nn.Module]  # a fresh, untrained model of the cell's architecture on the device
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    autocast: AbstractContextManager
    step: StepSetup
    rule: SelectionRule
    state: TrainState
    state_path: Path
    resumed_from_epoch: int


def set_up_training(cell: Cell, cell_dir: Path, device: torch.device, cache_dir: Path | None, batch_size: int,
                    dist: Dist) -> TrainingRun:
    """Determinism and precision, datasets and loaders (checked against the model and the batch), loss, model,
    optimizer and step settings, and the state saved by an earlier run of this cell in `cell_dir`, if any."""
    from segbench.models import MODELS

    configure_determinism(cell.train.deterministic)  # before the first cuBLAS call of this (fresh) process
    precision = resolve_precision(cell.train.precision, device)
    rank_batch = dist.per_process_batch(batch_size)
    seed_everything(cell.seed)
    data = make_data(cell, MODELS.get(cell.model).pad_multiple, device, cache_dir, batch_size, rank_batch, dist)

    class_weights = None
    if cell.loss.class_weights:
        weights = class_weights_from_counts(train_class_counts(data.train_set), cell.loss.class_weights)
        class_weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
    criterion = build_loss(cell.loss.name, num_classes=data.info.num_classes, class_weights=class_weights,
                           ignore_index=data.info.ignore_index, gamma=cell.loss.gamma)
    new_model = model_factory(cell, data.info.num_classes, device)
    model = dist.prepare(new_model())
    dist.seed_rank(cell.seed)
    optimizer = make_optimizer(cell, model)
    length = training_length(cell, model, len(data.train_loader), batch_size)
    total_iters = length.iterations
    autocast = autocast_context(device, AUTOCAST_DTYPES[precision])
    step = step_setup(dist.wrap(model), optimizer, autocast, precision=precision, device=device,
                      channels_last=cell.train.channels_last, compile_mode=cell.train.compile,
                      cudnn_benchmark=device.type == "cuda" and not cell.train.deterministic,
                      loss_reduction=dist.loss_reduction())

    state_path = cell_dir / TRAIN_STATE_FILE
    state = load_train_state(state_path, cell, batch_size, model, optimizer, data.generator, dist.rank,
                             dist.world_size) or TrainState()
    if step.scaler is not None and state.grad_scaler is not None:
        step.scaler.load_state_dict(state.grad_scaler)
    return TrainingRun(data=data, precision=precision, batch_size=batch_size, rank_batch=rank_batch,
                       epochs=math.ceil(total_iters / len(data.train_loader)), total_iters=total_iters, length=length,
                       model=model, new_model=new_model, criterion=criterion, optimizer=optimizer, autocast=autocast,
                       step=step, rule=SelectionRule.of(cell.eval), state=state, state_path=state_path,
                       resumed_from_epoch=state.epoch)


def make_data(cell: Cell, pad_multiple: int, device: torch.device, cache_dir: Path | None, batch_size: int,
              rank_batch: int, dist: Dist) -> CellData:
    """The cell's datasets and loaders; a ConfigError when the model cannot take the evaluation inputs or the
    train split is smaller than the global batch."""
    from segbench.models import incompatibility

    train_set, val_set = make_datasets(cell, pad_multiple, cache_dir)
    train_set, select_set = make_selection_set(cell, train_set, pad_multiple, cache_dir)
    eval_shape = tuple(val_set[0][0].shape[1:])
    epoch_protocol = Protocol.during_training(cell.eval, pad_multiple)
    protocol = Protocol.of(cell.eval, pad_multiple) if cell.trial is None else epoch_protocol
    model_input = protocol.crop if protocol.mode == "slide" else eval_shape  # a slide's forward takes one window
    if (reason := incompatibility(cell.model, cell.encoder, model_input)) is not None:
        raise ConfigError(f"{cell.model} cannot evaluate {model_input[0]}x{model_input[1]} inputs: {reason}; "
                          f"set {'eval.crop' if protocol.mode == 'slide' else 'eval.size'} in the grid")
    if len(train_set) < batch_size:  # expansion checks this for the built-in scenes; a dataset on disk is read here
        raise ConfigError(f"the train split has {len(train_set)} images, fewer than train.batch_size {batch_size}; "
                          f"set train.batch_size to at most {len(train_set)} or use a larger train split")

    generator = torch.Generator().manual_seed(cell.seed)
    train_loader, val_loader = make_loaders(cell, train_set, dist.shard(val_set), rank_batch, device, generator,
                                            dist.train_sampler(train_set, cell.seed))
    select_loader = None if select_set is None else make_loaders(cell, train_set, dist.shard(select_set),
                                                                 rank_batch, device, generator)[1]
    return CellData(train_set=train_set, val_set=val_set, select_set=select_set, info=dataset_info(val_set),
                    eval_shape=eval_shape, protocol=protocol, epoch_protocol=epoch_protocol, generator=generator,
                    train_loader=train_loader, val_loader=val_loader, select_loader=select_loader)


def model_factory(cell: Cell, num_classes: int, device: torch.device) -> Callable[[], torch.nn.Module]:
    """A function building the cell's model, untrained (its encoder from the cell's pretrained weights or local
    weights file, if any: both from local files, never downloaded), on `device` in the grid's memory format."""
    from segbench.models import build_model

    memory_format = torch.channels_last if cell.train.channels_last else torch.preserve_format

    def new_model() -> torch.nn.Module:
        return build_model(cell.model, encoder=cell.encoder, classes=num_classes, encoder_weights=cell.encoder_weights,
                           weights=cell.weights).to(device, memory_format=memory_format)

    return new_model
