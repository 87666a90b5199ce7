"""Latency: warm-up then timed forward passes, synchronised, reported as a distribution, next to a fixed reference
workload timed in the same process (their ratio is what regression gates compare across machines), with the
conditions of the measurement. The iteration counts are calibrated to a time budget (`calibrate`), as pytest-benchmark
and timm's benchmark script do, so a model of seconds per call is not timed for minutes; the counts actually run are
recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from segbench.devices import AUTOCAST_DTYPES, autocast_context, synchronize
from segbench.env import device_description
from segbench.grid.schema import MeasureConfig

REFERENCE_WORKLOAD = "conv-stack-v1"
REFERENCE_INPUT_SHAPE = (1, 3, 256, 512)
REFERENCE_DESCRIPTION = "3x3 conv stack (3->32 stride 2, then 4 x 32->32) with ReLUs, fixed 1x3x256x512 input"
WARMUP_SHARE = 0.2  # of a timing phase's budget spent warming up (at least the `warmup` minimum); the rest is timed

Progress = Callable[[str], None]  # receives one line saying what is being measured (segbench profile prints it)


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


def calibrate(call: Callable[[], object], budget_s: float | None, min_warmup: int, min_iters: int,
              clock: Callable[[], float] = time.perf_counter) -> tuple[int, int]:
    """Run the warm-up calls of one timing phase and choose how many timed iterations follow it.

    call: one synchronised iteration of the phase. Without a budget: exactly `min_warmup` calls, then `min_iters`
    iterations. With `budget_s` (seconds for the whole phase): warm up for at least `min_warmup` calls and
    WARMUP_SHARE of the budget, then time as many iterations as fit in the rest at the last warm-up call's duration,
    never fewer than `min_iters`. Returns (warm-up calls run, timed iterations to run).
    """
    if budget_s is None:
        for _ in range(min_warmup):
            call()
        return min_warmup, min_iters
    started = clock()
    warmup = 0
    while True:
        call_started = clock()
        call()
        now = clock()
        warmup += 1
        if warmup >= min_warmup and now - started >= WARMUP_SHARE * budget_s:
            break
    # The last warm-up call is the best guess of a timed one: the first calls carry one-time costs (allocator growth,
    # cuDNN autotuning) that would shrink the count.
    fitting = int((budget_s - (now - started)) / max(now - call_started, 1e-9))
    return warmup, max(min_iters, fitting)


def time_forward(
    models: list[tuple[nn.Module, Tensor]], device: torch.device, warmup: int, iters: int, autocast_dtype: str | None,
    budget_s: float | None = None,
) -> tuple[list[list[float]], int]:
    """Per-iteration forward times (seconds) of each (model, input), in eval mode under inference_mode, and the
    number of warm-up iterations run.

    warmup, iters: the counts, or the minimums when `budget_s` (seconds for warm-up and timing together) calibrates
    them. With several models the timed iterations alternate between them, so that a burst of load from another
    process on a shared machine slows all of them alike and their ratio stays stable.
    """
    times: list[list[float]] = [[] for _ in models]
    for model, _ in models:
        model.eval()

    def one_iteration() -> None:
        for model, example in models:
            model(example)
        synchronize(device)

    with torch.inference_mode(), autocast_context(device, autocast_dtype):
        warmup, iters = calibrate(one_iteration, budget_s, warmup, iters)
        for _ in range(iters):
            for index, (model, example) in enumerate(models):
                start = time.perf_counter()
                model(example)
                synchronize(device)
                times[index].append(time.perf_counter() - start)
    return times, warmup


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


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D weight is stored so (train.channels_last), else contiguous_format."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    if weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def measurement_conditions(model: nn.Module, device: torch.device, precision: str) -> dict[str, Any]:
    """What a latency depends on besides the model: device, threads, dtype, precision (and its autocast dtype),
    memory format, cuDNN autotuning, torch."""
    parameter = next(model.parameters(), None)
    name = device_description(device)["name"]
    return {
        "device": (_cpu_model() or name) if device.type == "cpu" else name,
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "dtype": str(parameter.dtype).removeprefix("torch.") if parameter is not None else None,
        "precision": precision,
        "autocast": AUTOCAST_DTYPES[precision],
        "memory_format": str(model_memory_format(model)).removeprefix("torch."),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "compile": None,
        "mode": "eval + torch.inference_mode()",
        "torch_version": torch.__version__,
    }


def measure_latency(
    model: nn.Module, input_shape: tuple[int, int, int], device: torch.device, settings: MeasureConfig,
    precision: str = "fp32", progress: Progress | None = None,
) -> dict[str, Any]:
    """Latency at batch 1 (timed alternately with the reference workload) and at batch `settings.batch_size`.

    input_shape: (C, H, W) after padding; precision: 'fp32', 'bf16' or 'fp16' (autocast), as the cell trained.
    Inputs take the model's memory format. `settings.budget_s` is shared by the two batch sizes: batch 1 gets half,
    batch N the rest. Returns conditions (with the budget and the minimum counts), `batch_1`, `batch_n` and
    `reference` (each with the warm-up and timed counts run: `warmup`, `n`) and `latency_ratio` = model p50 /
    reference p50 at batch 1, which is comparable across machines. progress receives a line per phase.
    """
    previous_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _measure_latency(model, input_shape, device, settings, precision, progress or (lambda line: None))
    finally:
        torch.set_num_threads(previous_threads)


def _measure_latency(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device,
                     settings: MeasureConfig, precision: str, progress: Progress) -> dict[str, Any]:
    autocast_dtype, memory_format = AUTOCAST_DTYPES[precision], model_memory_format(model)
    started = time.perf_counter()
    budget = settings.budget_s
    half = None if budget is None else budget / 2
    single = torch.randn((1, *input_shape), device=device).contiguous(memory_format=memory_format)
    reference = reference_model(device)
    reference_input = torch.randn(REFERENCE_INPUT_SHAPE, device=device)
    progress(f"latency at batch 1, alternating with the reference workload ({_plan(settings, half)})")
    (model_times, reference_times), warmup_1 = time_forward(
        [(model, single), (reference, reference_input)], device, settings.warmup, settings.iters, autocast_dtype, half
    )
    progress(f"  {warmup_1} warm-up + {len(model_times)} timed iterations, {time.perf_counter() - started:.1f} s")
    rest = None if budget is None else max(budget - (time.perf_counter() - started), 0.0)
    batched = torch.randn((settings.batch_size, *input_shape), device=device).contiguous(memory_format=memory_format)
    progress(f"latency at batch {settings.batch_size} ({_plan(settings, rest)})")
    phase_started = time.perf_counter()
    (batched_times,), warmup_n = time_forward([(model, batched)], device, settings.warmup, settings.iters,
                                              autocast_dtype, rest)
    progress(f"  {warmup_n} warm-up + {len(batched_times)} timed iterations, "
             f"{time.perf_counter() - phase_started:.1f} s")
    batch_1 = {"input_shape": list(single.shape), "warmup": warmup_1, **latency_stats(model_times, 1)}
    reference_stats = {
        "workload": REFERENCE_WORKLOAD,
        "description": REFERENCE_DESCRIPTION,
        "input_shape": list(REFERENCE_INPUT_SHAPE),
        "warmup": warmup_1,
        **latency_stats(reference_times, 1),
    }
    conditions = {**measurement_conditions(model, device, precision), "budget_s": budget,
                  "min_warmup": settings.warmup, "min_iters": settings.iters,
                  "timing_s": time.perf_counter() - started}
    return {
        "conditions": conditions,
        "batch_1": batch_1,
        "batch_n": {"input_shape": list(batched.shape), "warmup": warmup_n,
                    **latency_stats(batched_times, settings.batch_size)},
        "reference": reference_stats,
        "latency_ratio": batch_1["latency_ms_p50"] / reference_stats["latency_ms_p50"],
    }


def _plan(settings: MeasureConfig, budget_s: float | None) -> str:
    """How a phase's counts are chosen, in words."""
    minimum = f"{settings.warmup} warm-up + {settings.iters} timed iterations"
    if budget_s is None:
        return minimum
    if budget_s <= 0:
        return f"the budget is spent: the minimum, {minimum}"
    return f"budget {budget_s:.1f} s, at least {minimum}"
