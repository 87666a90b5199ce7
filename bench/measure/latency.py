"""Latency: warm-up then timed forward passes, synchronised, reported as a distribution, next to a fixed reference
workload timed in the same process (their ratio absorbs load from other processes), in two rounds whose agreement is
recorded, with the conditions of the measurement and the fingerprint of the machine (latency is gated only between
equal fingerprints: machine.py). The iteration counts are calibrated to a time budget (`calibrate`), as pytest-benchmark
and timm's benchmark script do, so a model of seconds per call is not timed for minutes; the counts actually run are
recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from segbench.devices import AUTOCAST_DTYPES, autocast_context, synchronize
from segbench.env import device_description
from segbench.grid.schema import MeasureConfig
from segbench.measure.machine import fingerprint

REFERENCE_WORKLOAD = "resnet18-features-v1"
REFERENCE_DESCRIPTION = ("timm resnet18 feature extractor (no pooling, no head; weights seeded with 0) on a 1x3xHxW "
                         "input at the model's own input size, in its memory format and precision")
WARMUP_SHARE = 0.2  # of a timing phase's budget spent warming up (at least the `warmup` minimum); the rest is timed
LATENCY_ROUNDS = 2  # batch-1 timing rounds whose agreement is recorded (`stability`) and checked by `make baseline`

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


def protocol_latency(forward: nn.Module, input_shape: tuple[int, int, int], device: torch.device,
                     settings: MeasureConfig, precision: str, description: str) -> dict[str, Any]:
    """Batch-1 latency of one full evaluation input under the evaluation protocol (sliding windows, TTA passes):
    `forward` is the model wrapped in it. Half the latency budget (when there is one), at least the grid's warm-up
    and iterations."""
    example = torch.randn(1, *input_shape, device=device)
    budget = settings.budget_s / 2 if settings.budget_s else None
    (times,), warmup = time_forward([(forward, example)], device, settings.warmup, settings.iters,
                                    AUTOCAST_DTYPES[precision], budget)
    return {"input_shape": [1, *input_shape], "warmup": warmup, "description": description,
            **latency_stats(times, 1)}


def reference_model(device: torch.device, memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """The reference workload: timm's ResNet-18 as a feature extractor (no global pooling, no classifier), weights
    seeded with 0, so it is the same everywhere. It replaced a fixed 3x3 conv stack whose time alone jumped between
    two levels (about 29 and 38 ms) from one process to the next on one CPU, while the models' did not: a reference
    built of the models' own operations, at their input size, moves with them (docs/report.md)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="")
    return model.to(device, memory_format=memory_format).eval()


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D weight is stored so (train.channels_last), else contiguous_format."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    if weight is not None and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def measurement_conditions(model: nn.Module, device: torch.device, precision: str) -> dict[str, Any]:
    """What a latency depends on besides the model: device, threads, dtype, precision (and its autocast dtype),
    memory format, cuDNN autotuning, torch, and the machine's fingerprint (`machine`, with its `id`)."""
    parameter = next(model.parameters(), None)
    machine = fingerprint(device, torch.get_num_threads(), f"{REFERENCE_WORKLOAD}, {LATENCY_ROUNDS} rounds")
    name = device_description(device)["name"]
    return {
        "device": (machine["cpu"]["model_name"] or name) if device.type == "cpu" else name,
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
        "machine": machine,
    }


def measure_latency(
    model: nn.Module, input_shape: tuple[int, int, int], device: torch.device, settings: MeasureConfig,
    precision: str = "fp32", progress: Progress | None = None,
) -> dict[str, Any]:
    """Latency at batch 1 (timed alternately with the reference workload) and at batch `settings.batch_size`.

    input_shape: (C, H, W) after padding; precision: 'fp32', 'bf16' or 'fp16' (autocast), as the cell trained.
    Inputs take the model's memory format. `settings.budget_s` is shared by the two batch sizes: batch 1 gets half,
    in LATENCY_ROUNDS rounds with the batch-N phase between them, batch N the rest. Returns conditions (with the
    budget, the minimum counts and the machine's fingerprint), `batch_1`, `batch_n` and `reference` (each with the
    warm-up and timed counts run: `warmup`, `n`; batch 1 and the reference pool the rounds), `latency_ratio`, the median
    over batch-1 iterations of model time / reference time of the same iteration (`paired_ratio`), and `stability`
    (each round's ratio, and their spread). progress receives a line per phase.
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
    single = torch.randn((1, *input_shape), device=device).contiguous(memory_format=memory_format)
    reference = reference_model(device, memory_format)
    reference_input = torch.randn((1, 3, *input_shape[1:]), device=device).contiguous(memory_format=memory_format)
    batched = torch.randn((settings.batch_size, *input_shape), device=device).contiguous(memory_format=memory_format)
    rounds: list[tuple[list[float], list[float], int]] = []  # (model times, reference times, warm-up) per round

    def batch_1_round() -> None:
        # Batch 1 gets half the budget, shared by its rounds.
        share = None if budget is None else budget / 2 / LATENCY_ROUNDS
        progress(f"latency at batch 1, round {len(rounds) + 1} of {LATENCY_ROUNDS}, alternating with the reference "
                 f"workload ({_plan(settings, share)})")
        phase_started = time.perf_counter()
        (model_times, reference_times), warmup = time_forward(
            [(model, single), (reference, reference_input)], device, settings.warmup, settings.iters, autocast_dtype,
            share)
        rounds.append((model_times, reference_times, warmup))
        progress(f"  {warmup} warm-up + {len(model_times)} timed iterations, "
                 f"{time.perf_counter() - phase_started:.1f} s")

    # The batch-N phase sits between the batch-1 rounds, so that the rounds are seconds apart: a burst of load from
    # another process shows as rounds that disagree (`stability`), not as one confident number.
    batch_1_round()
    # Batch N gets what is left once the later batch-1 rounds' shares are set aside.
    later_rounds = (LATENCY_ROUNDS - 1) / LATENCY_ROUNDS / 2
    rest = None if budget is None else max(budget * (1 - later_rounds) - (time.perf_counter() - started), 0.0)
    progress(f"latency at batch {settings.batch_size} ({_plan(settings, rest)})")
    phase_started = time.perf_counter()
    (batched_times,), warmup_n = time_forward([(model, batched)], device, settings.warmup, settings.iters,
                                              autocast_dtype, rest)
    progress(f"  {warmup_n} warm-up + {len(batched_times)} timed iterations, "
             f"{time.perf_counter() - phase_started:.1f} s")
    while len(rounds) < LATENCY_ROUNDS:
        batch_1_round()
    model_times = [t for times, _, _ in rounds for t in times]
    reference_times = [t for _, times, _ in rounds for t in times]
    warmup_1 = sum(warmup for _, _, warmup in rounds)
    batch_1 = {"input_shape": list(single.shape), "warmup": warmup_1, **latency_stats(model_times, 1)}
    reference_stats = {
        "workload": REFERENCE_WORKLOAD,
        "description": REFERENCE_DESCRIPTION,
        "input_shape": list(reference_input.shape),
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
        "latency_ratio": paired_ratio(model_times, reference_times),
        "latency_ratio_method": "median over batch-1 iterations of model time / reference time in the same iteration",
        "stability": round_stability([(model, reference) for model, reference, _ in rounds]),
    }


def paired_ratio(model_times: list[float], reference_times: list[float]) -> float:
    """The median of model time / reference time over iterations that timed both back to back: a burst of load that
    slows one iteration slows both of its halves, so the pairs' ratio moves less than a ratio of two medians."""
    return float(np.median(np.asarray(model_times) / np.asarray(reference_times)))


def round_stability(rounds: list[tuple[list[float], list[float]]]) -> dict[str, Any]:
    """How far the batch-1 rounds agree: each round's p50s (ms) and paired ratio, and `spread`, the largest round
    ratio over the smallest minus 1 (0.10: one round's ratio is 10 % above another's)."""
    rows = []
    for model_times, reference_times in rounds:
        rows.append({"n": len(model_times), "latency_ms_p50": float(np.median(model_times)) * 1e3,
                     "reference_ms_p50": float(np.median(reference_times)) * 1e3,
                     "latency_ratio": paired_ratio(model_times, reference_times)})
    ratios = [row["latency_ratio"] for row in rows]
    return {"method": f"{len(rows)} rounds at batch 1, seconds apart (the batch-N phase between them); spread = "
                      "largest round ratio / smallest - 1",
            "rounds": rows, "spread": max(ratios) / min(ratios) - 1 if ratios else None}


def _plan(settings: MeasureConfig, budget_s: float | None) -> str:
    """How a phase's counts are chosen, in words."""
    minimum = f"{settings.warmup} warm-up + {settings.iters} timed iterations"
    if budget_s is None:
        return minimum
    if budget_s <= 0:
        return f"the budget is spent: the minimum, {minimum}"
    return f"budget {budget_s:.1f} s, at least {minimum}"
