"""The optimizer and the learning-rate schedule of a training run, shared by the training loop and the memory
probe of a training step (segbench.measure), so both step the same kind of optimizer."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from segbench.grid.cells import Cell

OPTIMIZERS = ("adamw", "adam", "sgd")


def build_optimizer(parameters: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.0) -> torch.optim.Optimizer:
    """`name` ('adamw', 'adam' or 'sgd') over `parameters`; momentum applies to SGD only."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer '{name}'; expected one of {', '.join(OPTIMIZERS)}")


def make_optimizer(cell: Cell, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of a cell's `train` settings (optimizer, lr, weight_decay, momentum) over `model`'s parameters."""
    cfg = cell.train
    return build_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)


def lr_factor(schedule: str, iteration: int, total: int, power: float) -> float:
    """Multiplier of the base learning rate at `iteration` (0-based) of `total`: 'poly' (1 - t)^power, 'cosine'
    (1 + cos(pi t)) / 2, 'constant' 1, with t = iteration / total clipped to 1."""
    progress = min(iteration / max(total, 1), 1.0)
    if schedule == "poly":
        return (1.0 - progress) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
