"""One cell on several processes (data-parallel training, launched by torchrun): the process group, and every place
where the ranks of a cell meet.

`Dist` describes this process's place in the cell; `SINGLE`, the one-process cell, turns every helper into the
identity, so a cell with `train.world_size: 1` runs exactly the single-process code. With several ranks:
- training batches come from a DistributedSampler (reshuffled per epoch by `set_epoch`), batch_size / world_size
  images per rank and step, gradients averaged by DistributedDataParallel;
- evaluation is sharded without padding (rank r scores images r, r + W, r + 2W, ...: each image exactly once, unlike
  DistributedSampler, which repeats images to even out the shards), the confusion matrices are summed by one
  all-reduce and the per-image rows and counts gathered to rank 0 in dataset order;
- rank 0 alone writes files (training state with every rank's random-number state, checkpoint, examples, parts).
"""

from __future__ import annotations

import datetime
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Subset

from segbench.cell.evaluate import EvaluationResult
from segbench.errors import ConfigError
from segbench.grid.schema import resolve_sync_bn
from segbench.metrics.compute import compute_metrics

# How long a rank waits in a collective (gradient all-reduce, evaluation sums, gathers) before it fails. A peer that
# died is noticed by torchrun within a second; this bounds a peer that hangs. Rank 0 saving the training state is
# the longest a healthy rank keeps the others waiting.
COLLECTIVE_TIMEOUT_S = 600
# Ranks seed their augmentations apart (seed + stride x rank): different crops and flips on every rank, and no
# collision with the next cell seeds of a grid.
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Dist:
    """This process's place in its cell: rank of world_size, the backend (None for one process) and its device."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    device: torch.device = torch.device("cpu")
    sync_bn: bool = False
    threads_per_rank: int | None = None  # torch threads of each rank: the cell's threads split between its ranks
    cell_threads: int | None = None  # the cell's threads, taken back by rank 0 once the other ranks are done

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def per_process_batch(self, batch_size: int) -> int:
        """Images per rank and step of a global `batch_size` (ConfigError when it does not divide)."""
        if batch_size % self.world_size:
            raise ConfigError(f"batch size {batch_size} does not divide by world size {self.world_size}; use a "
                              f"multiple of {self.world_size}.")
        return batch_size // self.world_size

    def describe(self, batch_size: int) -> dict[str, Any]:
        """The record's `distributed` part: what is global and what is per process."""
        return {"world_size": self.world_size, "backend": self.backend, "global_batch_size": batch_size,
                "batch_size_per_process": batch_size // self.world_size, "sync_bn": self.sync_bn,
                "threads_per_rank": self.threads_per_rank,
                "launcher": "torch.distributed.run --standalone" if self.enabled else None}

    def train_sampler(self, dataset: Any, seed: int) -> DistributedSampler | None:
        """A DistributedSampler over the training set (seeded; incomplete last rounds dropped); None for one
        process, whose loader shuffles with its own generator."""
        if not self.enabled:
            return None
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed,
                                  drop_last=True)

    def shard(self, dataset: Any) -> Any:
        """This rank's evaluation images: r, r + W, r + 2W, ... of `dataset`, no image repeated or left out."""
        if not self.enabled:
            return dataset
        return Subset(dataset, range(self.rank, len(dataset), self.world_size))

    def seed_rank(self, seed: int) -> None:
        """Seed this rank's own augmentations (after the model is built: every rank starts from the same weights)."""
        if self.enabled:
            from segbench.cell.state import seed_everything

            seed_everything(seed + RANK_SEED_STRIDE * self.rank)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """SyncBatchNorm in place of BatchNorm when this cell uses it (before the optimizer and DDP see it)."""
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if self.sync_bn else model

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call: DistributedDataParallel around `model`, or `model` itself."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def loss_reduction(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The mean of a tensor of losses over the ranks (one all-reduce per check window of the loop), so that every
        rank reports, and stops at, the same values; None for one process."""
        if not self.enabled:
            return None

        def mean(losses: torch.Tensor) -> torch.Tensor:
            torch.distributed.all_reduce(losses)
            return losses / self.world_size

        return mean

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank before an evaluation: DDP broadcasts them
        at the start of each training forward, after which every rank updates its own copy."""
        if self.enabled:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def merge(self, result: EvaluationResult) -> EvaluationResult:
        """The whole split's evaluation from this rank's shard: the summed confusion matrix (and its metrics) on every
        rank; the per-image rows and counts, in dataset order, on rank 0 only (empty elsewhere)."""
        if not self.enabled:
            return result
        matrix = result.matrix.to(self.device)
        torch.distributed.all_reduce(matrix)
        matrix = matrix.cpu()
        shard = ([{**row, "index": self.rank + row["index"] * self.world_size} for row in result.per_image],
                 result.intersection, result.union)
        shards = self.gather(shard)
        per_image, intersection, union = interleave(shards) if self.is_main else ([], result.intersection[:0],
                                                                                    result.union[:0])
        for accumulator in (result.calibration, result.boundary):  # the final evaluation's: sums over the ranks
            if accumulator is not None:
                state = accumulator.state().to(self.device)
                torch.distributed.all_reduce(state)
                accumulator.load_state(state.cpu())
        return EvaluationResult(matrix=matrix, metrics=compute_metrics(matrix), per_image=per_image,
                                intersection=intersection, union=union, seconds=result.seconds,
                                calibration=result.calibration, boundary=result.boundary)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value` on rank 0, in rank order (None on the other ranks).

        Values travel as torch.save bytes: gather_object's own pickling cannot carry tensors (the random-number
        states) in every PyTorch version. They come from this cell's own ranks, hence weights_only=False."""
        buffer = io.BytesIO()
        torch.save(value, buffer)
        values = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(buffer.getvalue(), values, dst=0)
        if values is None:
            return None
        return [torch.load(io.BytesIO(data), weights_only=False) for data in values]

    def take_cell_threads(self) -> None:
        """Rank 0, alone after the final evaluation, computes with the whole cell's threads again (its examples and
        cost measurement then run as in a one-process cell)."""
        if self.cell_threads:
            torch.set_num_threads(self.cell_threads)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def leave(self) -> None:
        """Leave the process group, every rank at the same point, after the cell's last collective."""
        if self.enabled:
            torch.distributed.destroy_process_group()


SINGLE = Dist()


def interleave(shards: list[tuple[list[dict[str, Any]], np.ndarray, np.ndarray]]
               ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Per-image rows (with dataset indices) and their [N, C] intersection and union counts from every rank, put
    back in dataset order."""
    rows = [row for shard in shards for row in shard[0]]
    order = np.argsort([row["index"] for row in rows], kind="stable")
    intersection = np.concatenate([shard[1] for shard in shards])[order]
    union = np.concatenate([shard[2] for shard in shards])[order]
    return [rows[i] for i in order], intersection, union


def init_process_group(device_type: str, sync_bn: bool | str, cell_threads: int) -> Dist:
    """Join the cell's process group from torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT):
    NCCL on CUDA (one GPU per rank, by local rank), gloo on the CPU; collectives time out after
    COLLECTIVE_TIMEOUT_S. Sets this rank's torch threads: its share of the cell's `cell_threads` (at least 1)."""
    rank, local_rank, world_size = (int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    threads_per_rank = rank_threads(cell_threads, world_size)
    torch.set_num_threads(threads_per_rank)
    if device_type == "cuda":
        backend, device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    torch.distributed.init_process_group(backend, rank=rank, world_size=world_size,
                                         timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    return Dist(rank, world_size, backend, device, resolve_sync_bn(sync_bn, backend), threads_per_rank, cell_threads)


def rank_threads(cell_threads: int, world_size: int) -> int:
    """Torch threads of each rank of a cell: the cell's threads split evenly, at least 1."""
    return max(1, cell_threads // world_size)
