"""How long a cell trains: `train.epochs`, `train.iterations`, or a compute budget `train.budget: {tflops: X}`.

A compute budget gives a heavy and a light architecture the same training compute: the cell trains for
ceil(X x 1e12 / training FLOPs per iteration) iterations, where training FLOPs per iteration are the record's
throughput estimate (segbench.measure.throughput): 3 x forward FLOPs (fvcore, 2 x MACs) of one image at the training
crop x the global batch. The iterations then drive training exactly like `train.iterations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from segbench.errors import ConfigError
from segbench.grid.cells import Cell
from segbench.measure import count_macs

BASIS_EPOCHS, BASIS_ITERATIONS, BASIS_TFLOPS = "epochs", "iterations", "tflops"
METHOD = ("iterations = ceil(tflops x 1e12 / training FLOPs per iteration); training FLOPs per iteration = 3 x "
          "forward FLOPs (fvcore, 2 x MACs) of one image at the training crop, batch 1 x the global batch size")


@dataclass(frozen=True)
class TrainingLength:
    """The iterations a cell trains for and what set them; `train_flops_per_iteration` for a compute budget only."""

    basis: str  # epochs, iterations or tflops
    iterations: int
    tflops: float | None = None
    train_flops_per_iteration: float | None = None

    def record(self) -> dict[str, Any]:
        """The record's `budget`: the basis and the iterations it gave, with the compute budget's terms."""
        if self.basis != BASIS_TFLOPS:
            return {"basis": self.basis, "iterations": self.iterations}
        return {"basis": self.basis, "tflops": self.tflops, "iterations": self.iterations,
                "train_flops_per_iteration": self.train_flops_per_iteration, "method": METHOD}


def budget_iterations(tflops: float, train_flops_per_iteration: float) -> int:
    """ceil(tflops x 1e12 / training FLOPs per iteration), at least 1."""
    return max(1, math.ceil(tflops * 1e12 / train_flops_per_iteration))


def training_length(cell: Cell, model: torch.nn.Module, steps_per_epoch: int, batch_size: int) -> TrainingLength:
    """The cell's training length; for a compute budget counts `model`'s forward MACs at the training crop (batch 1)
    and scales by the global `batch_size` (the one that runs: halved after an out-of-memory retry, so that the
    cell's compute stays the budget). A ConfigError naming the model when fvcore cannot count it."""
    train = cell.train
    if train.iterations is not None:
        return TrainingLength(BASIS_ITERATIONS, train.iterations)
    if train.budget is None:
        return TrainingLength(BASIS_EPOCHS, train.epochs * steps_per_epoch)
    height, width = train.crop
    try:
        macs = count_macs(model, (1, 3, height, width))["macs"]
    except Exception as exc:  # fvcore's tracer raises whatever the model's forward raises under tracing
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"train.budget needs fvcore's MAC count of {cell.model} ({cell.encoder}) at the "
                          f"{height}x{width} training crop, and fvcore could not count it ({reason}); set "
                          "train.epochs or train.iterations for this model") from exc
    if macs <= 0:
        raise ConfigError(f"train.budget needs fvcore's MAC count of {cell.model} ({cell.encoder}) at the "
                          f"{height}x{width} training crop, and fvcore counted none; set train.epochs or "
                          "train.iterations for this model")
    flops_per_iteration = float(3 * 2 * macs * batch_size)
    return TrainingLength(BASIS_TFLOPS, budget_iterations(train.budget.tflops, flops_per_iteration),
                          tflops=train.budget.tflops, train_flops_per_iteration=flops_per_iteration)
