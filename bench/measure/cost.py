"""Cost measurements as small pure functions, each returning the number with the conditions it was taken under.

Conventions (see the project's measurement reference): unique parameters; MACs counted by fvcore at batch 1, GFLOPs
derived as 2 x GMACs; latency in eval mode under `torch.inference_mode()`, warm-up then timed iterations,
synchronised on CUDA, reported as a distribution; a fixed reference workload timed in the same process gives
`latency_ratio`, the number regression gates compare across machines; peak memory per phase (one training step, one
inference batch), from the CUDA allocator or, on the CPU, from the resident set of a fresh process.
Raw numbers only: integers for parameters and MACs, bytes for memory, milliseconds where the key says `_ms`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from segbench.grid.schema import MeasureConfig

REFERENCE_WORKLOAD = "conv-stack-v1"
REFERENCE_INPUT_SHAPE = (1, 3, 256, 512)
REFERENCE_DESCRIPTION = "3x3 conv stack (3->32 stride 2, then 4 x 32->32) with ReLUs, fixed 1x3x256x512 input"
TORCHINFO_NOTE = "torchinfo estimate (sum of layer output sizes); it ignores activations of parameter-free layers"


def _unique_count(parameters, trainable_only: bool = False) -> int:
    seen: set[int] = set()
    total = 0
    for parameter in parameters:
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def count_params(model: nn.Module) -> dict[str, Any]:
    """Unique parameters: total, trainable, and the encoder / decoder split when the model has an `encoder`.

    `model.parameters()` yields each shared tensor once, unlike summaries that walk modules and count a reused
    convolution once per use.
    """
    total = _unique_count(model.parameters())
    counts: dict[str, Any] = {"total": total, "trainable": _unique_count(model.parameters(), trainable_only=True)}
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module):
        counts["encoder"] = _unique_count(encoder.parameters())
        counts["decoder"] = total - counts["encoder"]
    else:
        counts["encoder"] = None
        counts["decoder"] = None
    return counts


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Multiply-accumulates of one forward pass, counted by fvcore on an input of `input_shape` ([1, C, H, W]).

    fvcore counts one fused multiply-add as one "flop", so its total is MACs; it skips the operators it has no
    formula for (listed under `unsupported_ops` with their call counts) and ignores ReLU.
    """
    parameter = next(model.parameters(), None)
    example = torch.zeros(input_shape, device=parameter.device if parameter is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings; skipped operators are recorded below
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, example)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
            unsupported = dict(sorted(analysis.unsupported_ops().items()))
    finally:
        model.train(was_training)
    return {
        "counter": "fvcore",
        "counter_version": _version("fvcore"),
        "input_shape": list(input_shape),
        "macs": macs,
        "gmacs": macs / 1e9,
        "gflops": 2 * macs / 1e9,
        "unsupported_ops": unsupported,
        "convention": "one fused multiply-add counts as one MAC; GFLOPs = 2 x GMACs",
    }


def torchinfo_estimate(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """torchinfo's mult-adds and memory estimate for an input of `input_shape` ([B, C, H, W]); labelled an estimate."""
    import torchinfo

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = torchinfo.summary(model, input_size=tuple(input_shape), device=device, verbose=0, mode="eval")
    finally:
        model.train(was_training)
    return {
        "tool": "torchinfo",
        "tool_version": _version("torchinfo"),
        "input_shape": list(input_shape),
        "mult_adds": int(stats.total_mult_adds),
        "forward_backward_bytes": int(stats.total_output_bytes),
        "params_bytes": int(stats.total_param_bytes),
        "input_bytes": int(stats.total_input),
        "note": TORCHINFO_NOTE,
    }


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


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a host clock read after it times the work and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(device: torch.device, autocast_dtype: str | None):
    if autocast_dtype and device.type == "cuda":
        return torch.autocast("cuda", dtype=getattr(torch, autocast_dtype))
    return contextlib.nullcontext()


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
    with torch.inference_mode(), autocast_for(device, autocast_dtype):
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
    from segbench.env import device_description

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


def inference_phase(model: nn.Module, shape: tuple[int, ...], device: torch.device,
                    autocast_dtype: str | None) -> Callable[[], None]:
    """One inference batch of `shape` ([B, C, H, W]) as a callable, for a peak-memory measurement."""
    images = torch.randn(shape, device=device)

    def run() -> None:
        model.eval()
        with torch.inference_mode(), autocast_for(device, autocast_dtype):
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
        optimizer_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}.get(optimizer, torch.optim.AdamW)
        step_optimizer = optimizer_class(model.parameters(), lr=1e-4)
        with autocast_for(device, autocast_dtype):
            logits = model(images)
        labels = torch.randint(0, logits.shape[1], (shape[0], *logits.shape[2:]), device=device)
        nn.functional.cross_entropy(logits.float(), labels).backward()
        step_optimizer.step()
        step_optimizer.zero_grad(set_to_none=True)

    return run


def cuda_peak_memory(phase: Callable[[], None], device: torch.device) -> dict[str, int]:
    """Peak CUDA memory of one phase: peak statistics are reset first, so earlier phases do not leak into it."""
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
    """Resident set before a phase and its peak during it, in this process (Linux). Meant for a fresh process: the
    high-water mark is reset through /proc/self/clear_refs, else the peak since the process started is used."""
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
            [sys.executable, "-m", "segbench.measure.cost", json.dumps(task)], capture_output=True, text=True,
            timeout=timeout_s, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-1:] or [f"exit code {completed.returncode}"]
        raise RuntimeError(f"the memory probe process failed: {tail[0]}")
    measured = json.loads(lines[-1])
    return {name: {"input_shape": list(shape), **measured[name]} for name, shape in phases.items()}


def _memory_probe(task: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(int(task["threads"]))
    model = torch.load(task["model"], weights_only=False)  # written a moment ago by cpu_peak_memory
    device = torch.device("cpu")
    measured = {}
    for name, shape in task["phases"].items():
        if name == "inference":
            run = inference_phase(model, tuple(shape), device, None)
        else:
            run = train_step_phase(model, tuple(shape), device, None, task["optimizer"])
        measured[name] = rss_peak_of(run)
        del run
    return measured


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


def measure_model(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device, settings: MeasureConfig,
                  train_shape: tuple[int, ...] | None = None, autocast_dtype: str | None = None,
                  optimizer: str = "adamw") -> dict[str, Any]:
    """Parameters, MACs (batch 1), latency (batch 1 and N, with the reference ratio) and peak memory of `model`.

    input_shape: (C, H, W) of one evaluation input after padding; train_shape: [B, C, H, W] of a training batch
    (defaults to `settings.batch_size` inputs of `input_shape`).
    """
    model = model.to(device).eval()
    train_shape = tuple(train_shape or (settings.batch_size, *input_shape))
    cost: dict[str, Any] = {"params": count_params(model), "input_shape": list(input_shape)}
    if settings.macs:
        try:
            cost["macs"] = count_macs(model, (1, *input_shape))
        except Exception as exc:  # a model fvcore cannot trace still gets its other measurements
            cost["macs"] = {"counter": "fvcore", "error": f"{type(exc).__name__}: {exc}"}
    cost["latency"] = measure_latency(model, input_shape, device, settings, autocast_dtype)
    if settings.memory:
        cost["memory"] = measure_memory(model, (settings.batch_size, *input_shape), train_shape, device,
                                        autocast_dtype, optimizer)
    model.eval()
    return cost


def cell_cost(model: nn.Module, cell: Any, input_shape: tuple[int, int, int], device: Any) -> dict[str, Any]:
    """Everything segbench records about the cost of a trained cell's model.

    input_shape: (channels, height, width) of one evaluation input after padding. `cell.measure` holds the
    measurement settings (warm-up, iterations, throughput batch size, whether to count MACs and memory). The
    training-step memory uses the cell's training batch size and crop.
    """
    device = torch.device(device)
    autocast_dtype = cell.train.autocast_dtype if cell.train.autocast and device.type == "cuda" else None
    train_shape = (cell.train.batch_size, input_shape[0], *cell.train.crop)
    return measure_model(model, tuple(input_shape), device, cell.measure, train_shape, autocast_dtype,
                         cell.train.optimizer)


if __name__ == "__main__":  # the memory probe: `python -m segbench.measure.cost TASK_JSON`, started by cpu_peak_memory
    sys.stdout.write(json.dumps(_memory_probe(json.loads(sys.argv[1]))) + "\n")
