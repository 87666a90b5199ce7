"""A cell's datasets and loaders, built from its configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from segbench.grid.cells import Cell


def make_datasets(cell: Cell, pad_multiple: int, cache_dir: Path | None):
    """(train set with the training transform, evaluation set of `eval.split`, cut to `eval.max_images`)."""
    from segbench.datasets import TrainTransform, build_dataset, parse_dataset_params

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    train_tf = TrainTransform(crop=tuple(cell.train.crop), scale_range=tuple(cell.train.scale_range),
                              hflip=cell.train.hflip)
    train_set = build_dataset(cell.dataset.name, params, "train", train_tf, cache_dir)
    if cell.trial is not None:  # a tuning trial reports on a holdout of the training split and never reads val
        return trial_datasets(cell, train_set, pad_multiple, cache_dir)
    return train_set, evaluation_set(cell, pad_multiple, cache_dir)


def evaluation_set(cell: Cell, pad_multiple: int, cache_dir: Path | None):
    """The reported split (`eval.split`) with the evaluation transform, cut to `eval.max_images`."""
    from segbench.datasets import build_dataset, parse_dataset_params

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    val_set = build_dataset(cell.dataset.name, params, cell.eval.split, eval_transform(cell, pad_multiple), cache_dir)
    if cell.eval.max_images is not None and len(val_set) > cell.eval.max_images:
        val_set = Subset(val_set, range(cell.eval.max_images))
    return val_set


def trial_datasets(cell: Cell, train_set, pad_multiple: int, cache_dir: Path | None):
    """(training images, holdout) of a tuning trial: the holdout fraction of the training split carved by the cell's
    seed (the study's), with the evaluation transform, and the rest to train on."""
    from segbench.cell.selection import holdout_indices
    from segbench.datasets import build_dataset, parse_dataset_params

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    train_indices, holdout = holdout_indices(len(train_set), cell.trial.holdout, cell.seed)
    unaugmented = build_dataset(cell.dataset.name, params, "train", eval_transform(cell, pad_multiple), cache_dir)
    return Subset(train_set, train_indices), Subset(unaugmented, holdout)


def eval_transform(cell: Cell, pad_multiple: int):
    """The cell's evaluation preprocessing: optional resize to eval.size, normalisation, padding with ignore."""
    from segbench.datasets import EvalTransform

    return EvalTransform(size=tuple(cell.eval.size) if cell.eval.size else None, pad_multiple=pad_multiple)


def dataset_info(dataset):
    """The DatasetInfo of a dataset or of the dataset under a Subset."""
    return (dataset.dataset if isinstance(dataset, Subset) else dataset).info


# Batches each loader process keeps ready (PyTorch's default, stated so the record can say it).
PREFETCH_FACTOR = 2
MAX_AUTO_WORKERS = 8


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_num_workers(setting: int | str, device: torch.device) -> int:
    """train.num_workers at run time: `auto` is min(8, CPU cores) on CUDA, where loading must keep up with the GPU,
    and 0 on the CPU, where loader processes would compete with training for the same cores."""
    if setting != "auto":
        return int(setting)
    return min(MAX_AUTO_WORKERS, cpu_cores()) if device.type == "cuda" else 0


def loader_settings(cell: Cell, device: torch.device) -> dict[str, Any]:
    """The DataLoader options of a cell on `device`, as recorded: loader processes (persistent, each keeping
    PREFETCH_FACTOR batches ready) and pinned memory on CUDA, so batches are copied without blocking."""
    workers = resolve_num_workers(cell.train.num_workers, device)
    settings: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        settings.update(persistent_workers=True, prefetch_factor=PREFETCH_FACTOR)
    return settings


def make_loaders(cell: Cell, train_set, val_set, batch_size: int, device: torch.device,
                 generator: torch.Generator, sampler: Sampler | None = None) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches (seeded by `generator`, or drawn by `sampler`, e.g. a rank's DistributedSampler;
    last partial batch dropped) and ordered evaluation, with the options of `loader_settings`.

    Loader processes draw their seeds from `generator` once, when they start: an uninterrupted run is reproducible,
    but a run resumed after a crash only repeats its augmentations exactly with num_workers 0 (the CPU default).
    """
    loader_args = loader_settings(cell, device)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                              drop_last=True, generator=generator, **loader_args)
    val_loader = DataLoader(val_set, batch_size=cell.eval.batch_size, shuffle=False, **loader_args)
    return train_loader, val_loader


def make_selection_set(cell: Cell, train_set, pad_multiple: int, cache_dir: Path | None):
    """(training set, selection set or None) for `eval.select: best`: another split of the dataset, or a seeded
    holdout of the training split (with the evaluation transform), which is then removed from the training set."""
    from segbench.cell.selection import RULE_BEST, holdout_indices
    from segbench.datasets import build_dataset, parse_dataset_params

    if cell.eval.select != RULE_BEST:
        return train_set, None
    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    if cell.eval.select_split:
        return train_set, build_dataset(cell.dataset.name, params, cell.eval.select_split,
                                        eval_transform(cell, pad_multiple), cache_dir)
    train_indices, select_indices = holdout_indices(len(train_set), cell.eval.holdout, cell.seed)
    unaugmented = build_dataset(cell.dataset.name, params, "train", eval_transform(cell, pad_multiple), cache_dir)
    return Subset(train_set, train_indices), Subset(unaugmented, select_indices)


def train_class_counts(train_set) -> np.ndarray:
    """Per-image class pixel counts (int64 [N, C]) of the images the cell trains on (a holdout left out)."""
    if isinstance(train_set, Subset):
        return train_set.dataset.class_pixel_counts(per_image=True)[list(train_set.indices)]
    return train_set.class_pixel_counts(per_image=True)
