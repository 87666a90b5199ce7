"""The resumable state of one cell's training: what the loop carries from epoch to epoch, saved after every epoch.

A saved state holds the model, the optimizer, the step, every random-number state, the history and the selected
checkpoint, so a worker that dies mid-run resumes from its last epoch and ends with the same result as an
uninterrupted run (on the CPU, with the same seed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.atomic import atomic_torch_save
from segbench.grid.cells import Cell


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    skipped_steps: int = 0  # fp16: steps the gradient scaler skipped (inf/NaN gradients)
    grad_scaler: dict[str, Any] | None = None  # fp16: the GradScaler's state_dict at the end of the last epoch


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random-number state of this process: torch (CPU and CUDA), the loader's generator, NumPy, Python."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": generator.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }


def restore_rng_state(rng: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    generator.set_state(rng["loader"])
    numpy_state = rng["numpy"]
    np.random.set_state((numpy_state[0], numpy_state[1].numpy(), *numpy_state[2:]))
    random.setstate(_to_tuples(rng["python"]))


def save_train_state(path: Path, cell: Cell, batch_size: int, state: TrainState, model, optimizer, generator,
                     rank_rngs: list[dict[str, Any]] | None = None) -> None:
    """rank_rngs: with several ranks, every rank's rng_state in rank order (rank 0 writes them all)."""
    payload = {
        "config_hash": cell.config_hash,
        "batch_size": batch_size,
        "loop": vars(state),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(generator),
    }
    if rank_rngs is not None:
        payload["rank_rngs"] = rank_rngs
    # durable=False: a state lost to a power cut only means starting the cell over; load_train_state checks it
    atomic_torch_save(path, payload, durable=False)


def load_train_state(path: Path, cell: Cell, batch_size: int, model, optimizer, generator, rank: int = 0,
                     world_size: int = 1) -> TrainState | None:
    """Restore a saved state of this very cell (same config hash, batch size and world size); None when there is
    none. With several ranks each restores its own random-number state."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged state file means starting over, never a wrong resume
        return None
    if saved.get("config_hash") != cell.config_hash or saved.get("batch_size") != batch_size:
        return None
    if world_size > 1 and len(saved.get("rank_rngs") or []) != world_size:
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    restore_rng_state(saved["rank_rngs"][rank] if world_size > 1 else saved["rng"], generator)
    return TrainState(**saved["loop"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(item) for item in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(item) for item in value) if isinstance(value, list) else value
