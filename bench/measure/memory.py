"""Peak memory of one training step and of one inference batch, measured separately.

CUDA: the allocator's peak statistics, reset before each phase. CPU: the peak resident set of each phase in a
fresh Python process (segbench.measure.probe), minus the resident set just before it, because the resident set of
a long-lived process keeps the high-water mark of everything it did before.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segbench.devices import autocast_context, synchronize
from segbench.measure.macs import torchinfo_estimate
from segbench.optim import build_optimizer

PROBE_MODULE = "segbench.measure.probe"
PROBE_LR = 1e-4  # one step on random data: the value changes no allocation


def inference_phase(model: nn.Module, shape: tuple[int, ...], device: torch.device,
                    autocast_dtype: str | None) -> Callable[[], None]:
    """One inference batch of `shape` ([B, C, H, W]) as a callable, for a peak-memory measurement."""
    images = torch.randn(shape, device=device)

    def run() -> None:
        model.eval()
        with torch.inference_mode(), autocast_context(device, autocast_dtype):
            model(images)

    return run


def train_step_phase(model: nn.Module, shape: tuple[int, ...], device: torch.device, autocast_dtype: str | None,
                     optimizer: str = "adamw") -> Callable[[], None]:
    """One training step (forward, cross-entropy on random labels, backward, optimizer step) on `shape` inputs.

    The optimizer's first step allocates its state, as a steady-state training step holds it. The step changes the
    model's weights: run it on a copy, or restore the weights afterwards.
    """
    images = torch.randn(shape, device=device)

    def run() -> None:
        model.train()
        step_optimizer = build_optimizer(model.parameters(), optimizer, lr=PROBE_LR)
        with autocast_context(device, autocast_dtype):
            logits = model(images)
        labels = torch.randint(0, logits.shape[1], (shape[0], *logits.shape[2:]), device=device)
        nn.functional.cross_entropy(logits.float(), labels).backward()
        step_optimizer.step()
        step_optimizer.zero_grad(set_to_none=True)

    return run


def cuda_peak_memory(phase: Callable[[], None], device: torch.device) -> dict[str, int]:
    """Peak CUDA memory (bytes) of one phase: peak statistics are reset first, so earlier phases do not leak in."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    phase()
    synchronize(device)
    return {
        "allocated_before_bytes": int(before),
        "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
        "peak_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
    }


def _read_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc), so the next phase's baseline is not inflated by cached memory."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_peak_of(phase: Callable[[], None]) -> dict[str, Any]:
    """Resident set (bytes) before a phase and its peak during it, in this process (Linux). Meant for a fresh
    process: the high-water mark is reset through /proc/self/clear_refs, else the peak since the process started
    is used."""
    import resource

    _release_freed_memory()
    baseline_kib = _read_status_kib("VmRSS") or 0
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        peak_source = "VmHWM after clear_refs"
    except OSError:
        peak_source = "ru_maxrss (process lifetime peak)"
    phase()
    peak_kib = _read_status_kib("VmHWM") if peak_source.startswith("VmHWM") else None
    if peak_kib is None:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"baseline_rss_bytes": baseline_kib * 1024, "peak_rss_bytes": peak_kib * 1024,
            "increase_bytes": (peak_kib - baseline_kib) * 1024, "peak_source": peak_source}


def cpu_peak_memory(model: nn.Module, phases: dict[str, tuple[int, ...]], optimizer: str = "adamw",
                    timeout_s: float = 600.0) -> dict[str, dict[str, Any]]:
    """Peak resident memory of each phase ('inference', 'train_step': input shape [B, C, H, W]) in one fresh Python
    process, each minus the resident set just before it (after loading the model and allocating the inputs). The
    phases run one after the other, with freed memory returned to the OS in between. The model is handed over
    pickled; one process for all phases because starting one (importing torch) takes seconds."""
    with tempfile.TemporaryDirectory(prefix="segbench-memory-") as tmp:
        model_path = Path(tmp) / "model.pt"
        torch.save(copy.deepcopy(model).cpu(), model_path)
        task = {"model": str(model_path), "phases": {name: list(shape) for name, shape in phases.items()},
                "optimizer": optimizer, "threads": torch.get_num_threads()}
        completed = subprocess.run(
            [sys.executable, "-m", PROBE_MODULE, json.dumps(task)], capture_output=True, text=True,
            timeout=timeout_s, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or [f"exit code {completed.returncode}"]
        raise RuntimeError(f"the memory probe process failed: {tail[0]}")
    measured = json.loads(lines[-1])
    return {name: {"input_shape": list(shape), **measured[name]} for name, shape in phases.items()}


def measure_memory(model: nn.Module, inference_shape: tuple[int, ...], train_shape: tuple[int, ...],
                   device: torch.device, autocast_dtype: str | None, optimizer: str = "adamw") -> dict[str, Any]:
    """Peak memory of one training step and of one inference batch, measured separately, plus torchinfo's estimate.

    CUDA: allocator peaks (allocated and reserved) after resetting the peak statistics before each phase; the
    model's weights are restored after the training step. CPU: peak resident set per phase in a fresh process.
    """
    memory: dict[str, Any] = {"device_type": device.type}
    if device.type == "cuda":
        memory["method"] = "torch.cuda peak statistics, reset before each phase"
        saved = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
        try:
            memory["train_step"] = {"input_shape": list(train_shape), **cuda_peak_memory(
                train_step_phase(model, train_shape, device, autocast_dtype, optimizer), device)}
        finally:
            model.load_state_dict(saved)
            model.zero_grad(set_to_none=True)
            model.eval()
        memory["inference"] = {"input_shape": list(inference_shape), **cuda_peak_memory(
            inference_phase(model, inference_shape, device, autocast_dtype), device)}
    else:
        memory["method"] = "peak resident set of a fresh process minus its baseline, per phase"
        phases = {"inference": inference_shape, "train_step": train_shape}
        try:
            memory.update(cpu_peak_memory(model, phases, optimizer))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            memory.update({name: {"input_shape": list(shape), "error": str(exc)} for name, shape in phases.items()})
    memory["estimate"] = torchinfo_estimate(model, train_shape)
    return memory
