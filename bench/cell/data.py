"""A cell's datasets and loaders, built from its configuration."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from segbench.grid.cells import Cell


def make_datasets(cell: Cell, pad_multiple: int, cache_dir: Path | None):
    """(train set with the training transform, evaluation set of `eval.split`, cut to `eval.max_images`)."""
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


def dataset_info(dataset):
    """The DatasetInfo of a dataset or of the dataset under a Subset."""
    return (dataset.dataset if isinstance(dataset, Subset) else dataset).info


def make_loaders(cell: Cell, train_set, val_set, batch_size: int, device: torch.device,
                 generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches (seeded by `generator`, last partial batch dropped) and ordered evaluation."""
    loader_args = {"num_workers": cell.train.num_workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator,
                              **loader_args)
    val_loader = DataLoader(val_set, batch_size=cell.eval.batch_size, shuffle=False, **loader_args)
    return train_loader, val_loader
