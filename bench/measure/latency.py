"""Latency: warm-up then timed forward passes, synchronised, reported as a distribution, next to a fixed reference
workload timed in the same process (their ratio is what regression gates compare across machines), with the
conditions of the measurement."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from segbench.devices import autocast_context, synchronize
from segbench.env import device_description
from segbench.grid.schema import MeasureConfig

REFERENCE_WORKLOAD = "conv-stack-v1"
REFERENCE_INPUT_SHAPE = (1, 3, 256, 512)
REFERENCE_DESCRIPTION = "3x3 conv stack (3->32 stride 2, then 4 x 32->32) with ReLUs, fixed 1x3x256x512 input"


def latency_stats(times_s: list[float], batch_size: int) -> dict[str, Any]:
    """Distribution of per-iteration times (seconds) in milliseconds, and throughput in images/s at the median."""
    if not times_s:
        raise ValueError("latency_stats needs at least one timed iteration")
    values = np.asarray(times_s, dtype=np.float64)
    median = float(np.median(values))
    return {
        "batch_size": batch_size,
        "n": int(values.size),
        "latency_ms_p50": median * 1e3,
        "latency_ms_p90": float(np.percentile(values, 90)) * 1e3,
        "latency_ms_mean": float(values.mean()) * 1e3,
        "latency_ms_std": float(values.std(ddof=1)) * 1e3 if values.size > 1 else 0.0,
        "latency_ms_min": float(values.min()) * 1e3,
        "throughput_images_per_s": batch_size / median if median > 0 else None,
    }


def time_forward(
    models: list[tuple[nn.Module, Tensor]], device: torch.device, warmup: int, iters: int, autocast_dtype: str | None
) -> list[list[float]]:
    """Per-iteration forward times (seconds) of each (model, input), in eval mode under inference_mode.

    With several models the timed iterations alternate between them, so that a burst of load from another process
    on a shared machine slows all of them alike and their ratio stays stable.
    """
    times: list[list[float]] = [[] for _ in models]
    for model, _ in models:
        model.eval()
    with torch.inference_mode(), autocast_context(device, autocast_dtype):
        for _ in range(warmup):
            for model, example in models:
                model(example)
        synchronize(device)
        for _ in range(iters):
            for index, (model, example) in enumerate(models):
                start = time.perf_counter()
                model(example)
                synchronize(device)
                times[index].append(time.perf_counter() - start)
    return times


def reference_model(device: torch.device) -> nn.Module:
    """The fixed reference workload: a 3x3 conv stack (3->32 stride 2, then 4 x 32->32) with ReLUs, about 0.93 GMACs
    on its fixed 1x3x256x512 input. Its weights are seeded, so it is the same everywhere."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU()]
        for _ in range(4):
            layers += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers).to(device).eval()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def measurement_conditions(model: nn.Module, device: torch.device, autocast_dtype: str | None) -> dict[str, Any]:
    """What a latency depends on besides the model: device, threads, dtype, autocast, cuDNN autotuning, torch."""
    parameter = next(model.parameters(), None)
    name = device_description(device)["name"]
    return {
        "device": (_cpu_model() or name) if device.type == "cpu" else name,
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "dtype": str(parameter.dtype).removeprefix("torch.") if parameter is not None else None,
        "autocast": autocast_dtype if device.type == "cuda" else None,
        "memory_format": "contiguous_format",
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "compile": None,
        "mode": "eval + torch.inference_mode()",
        "torch_version": torch.__version__,
    }


def measure_latency(
    model: nn.Module, input_shape: tuple[int, int, int], device: torch.device, settings: MeasureConfig,
    autocast_dtype: str | None = None,
) -> dict[str, Any]:
    """Latency at batch 1 (timed alternately with the reference workload) and at batch `settings.batch_size`.

    input_shape: (C, H, W) after padding. Returns conditions, `batch_1`, `batch_n`, `reference` and
    `latency_ratio` = model p50 / reference p50 at batch 1, which is comparable across machines.
    """
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _measure_latency(model, input_shape, device, settings, autocast_dtype)
    finally:
        torch.set_num_threads(previous_threads)


def _measure_latency(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device,
                     settings: MeasureConfig, autocast_dtype: str | None) -> dict[str, Any]:
    single = torch.randn((1, *input_shape), device=device)
    reference = reference_model(device)
    reference_input = torch.randn(REFERENCE_INPUT_SHAPE, device=device)
    model_times, reference_times = time_forward(
        [(model, single), (reference, reference_input)], device, settings.warmup, settings.iters, autocast_dtype
    )
    batched = torch.randn((settings.batch_size, *input_shape), device=device)
    (batched_times,) = time_forward([(model, batched)], device, settings.warmup, settings.iters, autocast_dtype)
    batch_1 = {"input_shape": list(single.shape), **latency_stats(model_times, 1)}
    reference_stats = {
        "workload": REFERENCE_WORKLOAD,
        "description": REFERENCE_DESCRIPTION,
        "input_shape": list(REFERENCE_INPUT_SHAPE),
        **latency_stats(reference_times, 1),
    }
    return {
        "conditions": {**measurement_conditions(model, device, autocast_dtype), "warmup": settings.warmup},
        "batch_1": batch_1,
        "batch_n": {"input_shape": list(batched.shape), **latency_stats(batched_times, settings.batch_size)},
        "reference": reference_stats,
        "latency_ratio": batch_1["latency_ms_p50"] / reference_stats["latency_ms_p50"],
    }
