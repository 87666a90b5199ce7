"""Where the work runs: choosing the device, waiting for it, precision and the autocast context, determinism.

Training, evaluation, example predictions and cost measurement all take their autocast context and their
synchronisation from here, so a cell is timed under the same precision it was trained under.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


# Mixed precision as grid files name it (train.precision), and the autocast dtype each one runs under.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, str | None] = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
# Set before the first cuBLAS call: cuBLAS picks its workspace then, and only this setting makes its results
# reproducible (https://docs.nvidia.com/cuda/cublas/#results-reproducibility).
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def native_bf16(device: torch.device) -> bool:
    """Whether `device` is a CUDA GPU with bfloat16 tensor cores (compute capability 8.0, Ampere, or newer)."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(requested: str, device: torch.device) -> str:
    """The precision a run uses: 'auto' is bf16 on a CUDA GPU with bfloat16 tensor cores and fp32 elsewhere (the
    CPU, older GPUs); fp32, bf16 and fp16 are taken as asked, also on the CPU (CPU autocast)."""
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not '{requested}'.")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and device.type == "cuda" and not native_bf16(device):
        raise ConfigError(f"precision bf16 needs a GPU with bfloat16 tensor cores (Ampere or newer), and "
                          f"{torch.cuda.get_device_name(device)} has none; use fp16, fp32 or auto.")
    return requested


def autocast_dtype(train: TrainConfig, device: torch.device) -> str | None:
    """The autocast dtype ('bfloat16' or 'float16') of a cell's `train.precision` on `device`; None for fp32."""
    return AUTOCAST_DTYPES[resolve_precision(train.precision, device)]


def autocast_context(device: torch.device, dtype: str | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` ('bfloat16' or 'float16') on `device`, CUDA or CPU; a null context (full precision)
    when dtype is None.

    The returned object can be entered again and again (the training loop enters it once per step).
    """
    if dtype:
        return torch.autocast(device.type, dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


def configure_determinism(deterministic: bool) -> None:
    """train.deterministic: deterministic algorithms (an operation without a deterministic implementation raises),
    cuDNN deterministic and not autotuned, and the cuBLAS workspace setting; otherwise PyTorch's defaults.

    Call it before the process's first cuBLAS call (the worker calls it first thing in the cell).
    """
    if deterministic:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC_WORKSPACE
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        # Only when it changes: the setter imports torch._inductor (and dynamo), 1-2 s of every cell's start on a CPU.
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def training_autotune(enabled: bool) -> Iterator[None]:
    """cuDNN autotuning (cudnn.benchmark) while training, restored afterwards.

    Training crops all have one shape, so the convolution algorithms tuned on the first step serve every step;
    evaluation and cost measurement keep PyTorch's default (off), since evaluation images may differ in size and
    each new shape would be tuned again.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
