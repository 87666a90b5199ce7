"""Where the work runs: choosing the device, waiting for it, and the mixed-precision context.

Training, evaluation, example predictions and cost measurement all take their autocast context and their
synchronisation from here, so a cell is timed under the same precision it was trained under.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from segbench.errors import ConfigError

if TYPE_CHECKING:
    from segbench.grid.schema import TrainConfig


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when PyTorch sees a GPU, else 'cpu'; 'cpu' and 'cuda' are checked and returned as they are."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but PyTorch sees no CUDA GPU; use --device cpu or auto.")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, not '{device}'.")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a host clock read after it times the work and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_dtype(train: TrainConfig, device: torch.device) -> str | None:
    """The autocast dtype ('bfloat16' or 'float16') a cell's `train` settings ask for on `device`: None on the CPU
    or with autocast off."""
    return train.autocast_dtype if train.autocast and device.type == "cuda" else None


def autocast_context(device: torch.device, dtype: str | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on CUDA; a null context (full precision) on the CPU or when dtype is None.

    The returned object can be entered again and again (the training loop enters it once per step).
    """
    if dtype and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, dtype))
    return contextlib.nullcontext()
