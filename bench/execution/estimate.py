"""A rough expected time for a run on the CPU, printed before the first cell starts.

On the CPU training dominates a cell, and a training step's time grows with the pixels it pushes through the
network: iterations x batch x crop height x crop width x a per-model constant. The constants were measured on
segbench's development machine, a 2-core x86 server CPU (2 PyTorch threads, fp32, nothing else running), at batch 4
of 64x128 crops with the data loading of a real run; there U-Net/ResNet-18 takes 0.30-0.35 s per step at batch 8, a
machine whose 0.70 s makes it about twice as slow. At batch 4 the optimizer's per-step cost still weighs, so larger
batches come out a little long, and so do runs with several cells in flight (`--parallel`), whose single-threaded
parts (start-up, evaluation) overlap. The evaluations after training (further datasets, corruptions) are counted
per evaluated pixel, with the inference protocol's windows and TTA passes; a finished cell evaluated again with new
evaluation settings (segbench.cell.attached) counts them all, and the reported split, as if none were kept; the
deployment measurement counts its latency budgets, evaluation passes, export, quantization and compilations. On a GPU
nothing is estimated: speeds there differ by orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from segbench.grid.cells import Cell

_PIXELS = 4 * 64 * 128  # one measured step: batch 4 of 64x128 crops
# Seconds per training pixel (step time / (batch x crop H x crop W)) on the 2-core development CPU: the median step
# time of the quickstart's cells for ResNet-18, of bare steps plus the loading time for MobileNet-V2.
SECONDS_PER_PIXEL: dict[tuple[str, str], float] = {
    (model, encoder): step_s / _PIXELS
    for (model, encoder), step_s in {
        ("unet", "resnet18"): 0.225,
        ("fpn", "resnet18"): 0.19,
        ("unet", "mobilenet_v2"): 0.25,
        ("fpn", "mobilenet_v2"): 0.185,
    }.items()
}
# Any other model or encoder: the dearest known one, since an estimate that is too low wastes more of a user's time.
FALLBACK_SECONDS_PER_PIXEL = max(SECONDS_PER_PIXEL.values())
# Per cell besides training: the worker's start (Python, torch and model imports), the final evaluation, example
# panels and the MAC count; the latency budget and the memory probe (a fresh process on the CPU) come on top.
CELL_OVERHEAD_S = 9.0
MEMORY_PROBE_S = 8.0
# The evaluations after training (eval.datasets, eval.corruptions: one pass over the images each): a forward pass
# costs about a third of a training step per pixel; measured on the development CPU, grids/robustness.yaml's 13
# corrupted evaluations of 60 scenes took U-Net/ResNet-18 2.6e-6 s per evaluated pixel against 6.9e-6 for training.
EVAL_SHARE = 1 / 3
# Deployment (measure.runtimes): measured on the development CPU for U-Net/ResNet-18 at 64x128 and 96x192: the ONNX
# export 5-9 s, INT8 quantization 1.4-4.2 s, torch.compile 44 s for the first shape and 24 s for the second (latency
# times batch 1 and batch N).
ONNX_EXPORT_S = 10.0
INT8_QUANTIZE_S = 5.0
COMPILE_S = 70.0
SLOWER_MACHINES = "slower machines up to 2-3x"


def seconds_per_pixel(model: str, encoder: str) -> float:
    return SECONDS_PER_PIXEL.get((model, encoder), FALLBACK_SECONDS_PER_PIXEL)


def cell_seconds(cell: Cell, iterations: int) -> float:
    """Expected wall seconds of one cell on the development CPU, given its number of training iterations."""
    height, width = cell.train.crop
    train_s = iterations * cell.train.batch_size * height * width * seconds_per_pixel(cell.model, cell.encoder)
    measure_s = 0.0
    if cell.measure.enabled:
        measure_s = (cell.measure.budget_s or 0.0) + (MEMORY_PROBE_S if cell.measure.memory else 0.0)
    return CELL_OVERHEAD_S + train_s + measure_s


def further_evaluations(cell: Cell) -> int:
    """Passes over evaluation images after training: one per further dataset, and the clean one plus one per
    corruption and severity."""
    corruptions = cell.eval.corruptions
    return len(cell.eval.datasets) + (len(corruptions.names) * len(corruptions.severities) + 1 if corruptions else 0)


def protocol_factor(cell: Cell, height: int, width: int) -> float:
    """Pixels the inference protocol pushes through the model per image pixel: overlapping windows, TTA passes."""
    factor = 1.0
    if cell.eval.protocol_mode == "slide":
        (crop_h, crop_w), (stride_h, stride_w) = cell.eval.crop, cell.eval.stride
        rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
        cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
        factor = rows * cols * min(crop_h, height) * min(crop_w, width) / (height * width)
    if cell.eval.tta is not None:
        factor *= sum(scale * scale for scale in cell.eval.tta.scales) * (2 if cell.eval.tta.flip else 1)
    return factor


def further_evaluation_seconds(cell: Cell, cache_dir: Path | None = None, extra_passes: int = 0) -> float:
    """Expected seconds of the evaluations after training and `extra_passes` more over the reported split (0 when
    there are none, or the split cannot be read)."""
    passes = further_evaluations(cell) + extra_passes
    if not passes:
        return 0.0
    limit = cell.eval.corruptions.max_images if cell.eval.corruptions else None
    return passes * pass_seconds(cell, cache_dir, limit)


def pass_seconds(cell: Cell, cache_dir: Path | None = None, limit: int | None = None) -> float:
    """Expected seconds of one evaluation pass over the reported split (its first `limit` images, else
    eval.max_images) under the protocol; 0 when the split cannot be read."""
    try:
        from segbench.datasets import build_dataset, parse_dataset_params

        params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
        split = build_dataset(cell.dataset.name, params, cell.eval.split, None, cache_dir)
        images = len(split)
        size = cell.eval.size or tuple(split[0][1].shape[-2:])  # the first label's size
    except Exception:  # an estimate is never worth failing a run for
        return 0.0
    images = min(images, limit or cell.eval.max_images or images)
    height, width = size
    pixels = images * height * width * protocol_factor(cell, height, width)
    return pixels * EVAL_SHARE * seconds_per_pixel(cell.model, cell.encoder)


def deployment_seconds(cell: Cell, cache_dir: Path | None = None) -> float:
    """Expected seconds of the deployment measurement (measure.runtimes x precisions; 0 when not asked): per measured
    form its latency budget and two passes over the reported split (eager and deployed), one pass for eager fp32,
    the ONNX export and INT8 quantization once, a torch.compile per compiled form."""
    from segbench.cell.deployment import wants_deployment

    if not wants_deployment(cell):
        return 0.0
    forms = [form for form in _deployment_plan(cell) if form.skipped is None]
    measured = [form for form in forms if (form.runtime, form.precision) != ("torch", "fp32")]
    seconds = (1 + 2 * len(measured)) * pass_seconds(cell, cache_dir)
    seconds += len(measured) * (cell.measure.budget_s or 1.0)
    if any(form.runtime in ("onnxruntime", "tensorrt") for form in measured):
        seconds += ONNX_EXPORT_S
    if any(form.precision == "int8" for form in measured):
        seconds += INT8_QUANTIZE_S
    return seconds + COMPILE_S * sum(form.runtime == "torch-compile" for form in measured)


def _deployment_plan(cell: Cell) -> list:
    import torch

    from segbench.measure.deploy import plan

    try:
        return plan(cell.measure, torch.device("cpu"))
    except Exception:  # onnxruntime missing: the runner stops with its own sentence first
        return []


def training_iterations(cell: Cell, cache_dir: Path | None = None) -> int | None:
    """train.iterations, or epochs x full batches of the training split; None when the split cannot be counted or
    the cell trains on a compute budget (train.budget), whose iterations need the model's MAC count: the worker
    counts them, and this process never builds a model."""
    if cell.train.iterations is not None:
        return cell.train.iterations
    if cell.train.epochs is None:
        return None
    try:
        from segbench.datasets import build_dataset, parse_dataset_params

        params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
        images = len(build_dataset(cell.dataset.name, params, "train", None, cache_dir))
    except Exception:  # an estimate is never worth failing a run for
        return None
    if cell.eval.holdout:
        images -= round(images * cell.eval.holdout)
    return cell.train.epochs * (images // cell.train.batch_size)


def estimate_seconds(cells: Iterable[Cell], cache_dir: Path | None = None,
                     evaluated: Iterable[Cell] = ()) -> float | None:
    """Expected wall seconds of running `cells` one after another on the development CPU, and of evaluating the
    finished cells `evaluated` again (their saved weights, nothing trained); None if any cell's iteration count is
    unknown."""
    total = sum(CELL_OVERHEAD_S + further_evaluation_seconds(cell, cache_dir, extra_passes=1)
                + deployment_seconds(cell, cache_dir) for cell in evaluated)
    for cell in cells:
        iterations = training_iterations(cell, cache_dir)
        if iterations is None:
            return None
        total += cell_seconds(cell, iterations) + further_evaluation_seconds(cell, cache_dir)
        total += deployment_seconds(cell, cache_dir)
    return total


def expected_time(cells: list[Cell], device: str, cache_dir: Path | None = None,
                  evaluated: list[Cell] = ()) -> str | None:
    """One line for the start of a run on the CPU, e.g. 'expected time: about 4 min on a 2-core CPU like ours;
    slower machines up to 2-3x'; None on a GPU, with no cells, or when a cell's length is unknown (a compute budget
    among them)."""
    if not (cells or evaluated) or not str(device).startswith("cpu"):
        return None
    seconds = estimate_seconds(cells, cache_dir, evaluated)
    if seconds is None:
        return None
    amount = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{max(seconds, 1):.0f} s"
    return f"expected time: about {amount} on a 2-core CPU like ours; {SLOWER_MACHINES}"


def print_expected_time(console, cells: list[Cell], device: str, cache_dir: Path | None = None,
                        evaluated: list[Cell] = ()) -> None:
    """Print `expected_time`'s line on `console` (a rich Console), when there is one."""
    if line := expected_time(cells, device, cache_dir, evaluated):
        console.print(line, highlight=False)
