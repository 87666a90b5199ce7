"""The one record builder of the tests: records of the real shape, and results folders of them, without training.

`record` returns what the worker writes for a cell (`bench/execution/worker.py` around `bench/cell/pipeline.py`):
identity, the resolved configuration of a real expanded cell, environment, dataset, metrics computed from a confusion
matrix by `segbench.metrics`, the mIoU interval over per-image counts, history, budget, selection, cost (params, MACs,
latency with its conditions and machine fingerprint, memory), precision, throughput and timing. Where the project has
a function that builds a part, the part comes from it, so the shape follows the code. Tests vary what they are about
through keywords (slug, config hash, mIoU or a confusion matrix, status and error kind, latency, machine, ...).

`write_results` writes such records through `segbench.records.store.write_record`, with the files a cell folder holds
beside its record where a test reads them: per-image counts, example PNGs, a checkpoint.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from segbench.records.store import STATUS_INTERRUPTED, STATUS_OK, error_info, new_record, write_record

from support.grids import tiny_grid

SLUG = "unet__resnet18__ce__synthetic__s0"
STARTED_AT = "2026-01-01T00:00:00+00:00"
WRITTEN_AT = "2026-01-01T00:10:00+00:00"
PIXELS_PER_CLASS = 4096  # ground-truth pixels of each class in a built confusion matrix
LATENCY_METHOD = "resnet18-features-v1, 2 rounds"  # the reference workload and rounds of a latency fingerprint
# A CPU description as `segbench.measure.machine.cpu_description` gives it: fingerprints are built from it.
CPU = {"vendor": "GenuineIntel", "family": "6", "model": "106", "stepping": "6",
       "model_name": "Intel(R) Xeon(R) Processor @ 2.80GHz", "vector_flags": ["avx", "avx2", "fma", "avx512f"],
       "caches": {"L1d": "48K", "L1i": "32K", "L2": "1280K", "L3": "49152K"}, "logical_cores": 2}
# What the worker's error carries for a kind, beyond kind and message.
ERROR_MESSAGES = {"exception": "RuntimeError: boom", "oom": "OutOfMemoryError: CUDA out of memory (test)",
                  "diverged": "training loss became nan at iteration 3", "config": "ConfigError: a bad setting",
                  "interrupted": "the run was interrupted; run the grid again to resume"}


@functools.cache
def _base_cell() -> Any:
    """The tiny grid's cell (U-Net, ResNet-18, cross-entropy, synthetic, seed 0) with the memory probe on, as a
    real measured cell records it."""
    from segbench.grid.cells import expand
    from segbench.grid.load import parse_grid

    return expand(parse_grid(tiny_grid("records", measure={"memory": True}))).cells[0]


def cell_of(slug: str, **train: Any) -> Any:
    """The cell of `slug` ("model__encoder__loss__dataset__s<seed>"): the tiny grid's cell with those axes (names
    are not checked against the registries, so a test may name a made-up encoder); train: TrainConfig fields."""
    model, encoder, loss, dataset, seed = slug.split("__")
    base = _base_cell()
    update: dict[str, Any] = {"model": model, "encoder": encoder, "seed": int(seed.removeprefix("s")),
                              "loss": base.loss.model_copy(update={"name": loss}),
                              "dataset": base.dataset.model_copy(update={"name": dataset})}
    if train:
        update["train"] = base.train.model_copy(update=train)
    return base.model_copy(update=update)


@functools.cache
def _environment() -> dict[str, Any]:
    import torch

    from segbench.env import environment

    return environment(torch.device("cpu"))


def dataset_part(cell: Any, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """The record's `dataset`: the synthetic dataset's classes and palette, or `classes` with palette colours."""
    from segbench.datasets import DATASETS, parse_dataset_params

    info = DATASETS.get("synthetic").info(parse_dataset_params("synthetic", cell.dataset.params))
    names = list(info.classes if classes is None else classes)
    palette = [list(info.palette[index % len(info.palette)]) for index in range(len(names))]
    params = cell.dataset.params
    return {"name": cell.dataset.name, "classes": names, "ignore_index": info.ignore_index, "palette": palette,
            "num_train": params.get("n_train"), "num_val": params.get("n_val"), "num_select": None}


def confusion_matrix(num_classes: int, miou: float, absent: Iterable[int] = ()) -> np.ndarray:
    """A [C, C] matrix (rows ground truth, columns prediction) whose every present class has IoU `miou` up to
    rounding: PIXELS_PER_CLASS ground-truth pixels per class, the missed ones predicted as the next present class.
    Classes in `absent` are in neither the ground truth nor the prediction (IoU undefined)."""
    present = [index for index in range(num_classes) if index not in set(absent)]
    # IoU = tp / (tp + fn + fp) with fn = fp = n - tp (a ring of errors): tp = 2 n m / (1 + m)
    hits = round(2 * PIXELS_PER_CLASS * miou / (1 + miou))
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for position, index in enumerate(present):
        matrix[index, index] = hits
        matrix[index, present[(position + 1) % len(present)]] += PIXELS_PER_CLASS - hits
    return matrix


def split_by_image(matrix: np.ndarray, images: int) -> list[np.ndarray]:
    """`matrix` as the sum of `images` per-image matrices that differ in accuracy: image k holds a growing share of
    the hits and a shrinking share of the misses."""
    weights = np.arange(1, images + 1, dtype=np.float64)
    diagonal = np.diag(np.diag(matrix))
    parts = []
    for share_of_hits, share_of_misses in zip(weights / weights.sum(), weights[::-1] / weights.sum(), strict=True):
        parts.append(np.floor(diagonal * share_of_hits).astype(np.int64)
                     + np.floor((matrix - diagonal) * share_of_misses).astype(np.int64))
    parts[-1] += matrix - sum(parts)  # what the rounding left
    return parts


def sample_ids(record: dict[str, Any]) -> list[str]:
    return [row["sample_id"] for row in record["per_image"]]


def history(miou: float, pixel_accuracy: float, shares: Sequence[float] = (0.5, 0.95, 1.0),
            epoch_time_s: float = 2.0, iterations_per_epoch: int = 10, lr: float = 0.002) -> list[dict[str, Any]]:
    """One row per epoch as the training loop writes it; epoch e's val mIoU is shares[e - 1] x `miou`."""
    return [{"epoch": epoch, "iterations": epoch * iterations_per_epoch, "train_loss": 2.0 / epoch,
             "lr": lr * (1 - epoch / (len(shares) + 1)), "epoch_time_s": epoch_time_s, "val_miou": miou * share,
             "val_pixel_accuracy": pixel_accuracy * share, "eval_time_s": 0.5}
            for epoch, share in enumerate(shares, start=1)]


def machine(machine_id: str) -> dict[str, Any]:
    """A latency fingerprint (`segbench.measure.machine.fingerprint` of CPU) under the id `machine_id`."""
    import torch

    from segbench.measure.machine import fingerprint

    return {**fingerprint(torch.device("cpu"), 1, LATENCY_METHOD, CPU), "id": machine_id,
            "label": f"CPU {machine_id}"}


def latency(cell: Any, ratio: float, machine_id: str | None, spread: float | None,
            latency_ms: float) -> dict[str, Any]:
    """The cost's `latency` as `segbench.measure.latency.measure_latency` writes it: two batch-1 rounds whose
    ratios are `spread` apart, the median ratio `ratio` exactly. machine_id None: a record from before machine
    fingerprints; spread None: one from before timing rounds (no `stability`)."""
    import torch

    from segbench.measure.latency import REFERENCE_DESCRIPTION, REFERENCE_WORKLOAD, latency_stats, round_stability

    height, width = cell.dataset.params["height"], cell.dataset.params["width"]
    model_s, reference_s = latency_ms / 1e3, latency_ms / 1e3 / ratio
    rounds = [([model_s] * 3, [reference_s] * 3), ([model_s * (1 + (spread or 0.0))] * 3, [reference_s] * 3)]
    batch = cell.measure.batch_size
    conditions: dict[str, Any] = {
        "device": CPU["model_name"], "device_type": "cpu", "threads": 1, "interop_threads": 2, "dtype": "float32",
        "precision": "fp32", "autocast": None, "memory_format": "contiguous_format", "cudnn_benchmark": False,
        "compile": None, "mode": "eval + torch.inference_mode()", "torch_version": torch.__version__,
    }
    if machine_id is not None:
        conditions["machine"] = machine(machine_id)
    conditions.update(budget_s=cell.measure.budget_s, min_warmup=cell.measure.warmup,
                      min_iters=cell.measure.iters, timing_s=1.0)
    part = {
        "conditions": conditions,
        "batch_1": {"input_shape": [1, 3, height, width], "warmup": 2, **latency_stats([model_s] * 6, 1)},
        "batch_n": {"input_shape": [batch, 3, height, width], "warmup": 1,
                    **latency_stats([model_s * batch / 2] * 3, batch)},
        "reference": {"workload": REFERENCE_WORKLOAD, "description": REFERENCE_DESCRIPTION,
                      "input_shape": [1, 3, height, width], "warmup": 2, **latency_stats([reference_s] * 6, 1)},
        "latency_ratio": ratio,
        "latency_ratio_method": "median over batch-1 iterations of model time / reference time in the same iteration",
    }
    if spread is not None:
        part["stability"] = round_stability(rounds)
    return part


def cost(cell: Any, params: int, macs: int, latency_part: dict[str, Any]) -> dict[str, Any]:
    """The record's `cost` with `params` parameters (a quarter in the decoder) and `macs` MACs at batch 1."""
    from importlib.metadata import version

    height, width = cell.dataset.params["height"], cell.dataset.params["width"]
    batch = [cell.measure.batch_size, 3, height, width]

    def phase(increase: int) -> dict[str, Any]:
        return {"input_shape": batch, "baseline_rss_bytes": 1_000_000_000, "peak_rss_bytes": 1_000_000_000 + increase,
                "increase_bytes": increase, "peak_source": "VmHWM after clear_refs"}

    encoder = params - params // 4
    part = {
        "params": {"total": params, "trainable": params, "encoder": encoder, "decoder": params - encoder},
        "input_shape": [3, height, width],
        "macs": {"counter": "fvcore", "counter_version": version("fvcore"), "input_shape": [1, 3, height, width],
                 "macs": macs, "gmacs": macs / 1e9, "gflops": 2 * macs / 1e9, "unsupported_ops": {"aten::add": 3},
                 "convention": "one fused multiply-add counts as one MAC; GFLOPs = 2 x GMACs"},
        "latency": latency_part,
    }
    if cell.measure.memory:
        part["memory"] = {
            "device_type": "cpu", "method": "peak resident set of a fresh process minus its baseline, per phase",
            "inference": phase(50_000_000), "train_step": phase(200_000_000),
            "estimate": {"tool": "torchinfo", "tool_version": version("torchinfo"), "input_shape": batch,
                         "mult_adds": macs * batch[0], "forward_backward_bytes": 40_000_000,
                         "params_bytes": 4 * params, "input_bytes": 4 * int(np.prod(batch)),
                         "note": "torchinfo estimate (sum of layer output sizes); it ignores activations of "
                                 "parameter-free layers"}}
    return part


def record(slug: str = SLUG, config_hash: str | None = None, *, miou: float | None = 0.5,
           matrix: np.ndarray | None = None, classes: Sequence[str] | None = None, absent: Iterable[int] = (),
           status: str = STATUS_OK, error_kind: str | None = None, error_message: str | None = None,
           history_shares: Sequence[float] | None = None, epoch_time_s: float = 2.0,
           iterations_per_epoch: int = 10, intervals: bool = True, params: int = 1000, macs: int = 2_000_000,
           cost_parts: dict[str, Any] | None = None, latency_ratio: float = 1.0, latency_ms: float = 12.0,
           machine: str | None = "machine-a", spread: float | None = 0.01, train_time_s: float = 10.0,
           written_at: str = WRITTEN_AT, train: dict[str, Any] | None = None, quality: bool = False) -> dict[str, Any]:
    """A record of the cell `slug` as the worker writes it (status ok, failed or interrupted).

    config_hash: the cell's own hash when None (its cell id is `slug-config_hash` either way). miou: the record's
    mIoU, exactly; its other metrics come from a confusion matrix built to have that mIoU (up to rounding), or from
    `matrix` when given (then mIoU is the matrix's own unless `miou` is also given); classes: class names (the
    synthetic dataset's 19 by default); absent: classes in neither ground truth nor prediction (IoU NaN).
    error_kind: the kind of a failed record ("exception" by default; "interrupted" for an interrupted one).
    history_shares: each epoch's val mIoU as a share of the final one (the config's epochs follow; by default a
    rise to the final value over the tiny grid's epochs), epochs of `epoch_time_s` and `iterations_per_epoch`.
    intervals: False for a record without the mIoU interval (written before it existed).
    params, macs: the model's size; cost_parts: parts of `cost` to replace (e.g. real `count_params` and
    `count_macs` results under "params" and "macs"). latency_ratio, latency_ms: batch-1 latency against the
    reference and in milliseconds; machine: the fingerprint id it was timed under (None: before fingerprints);
    spread: how far its two timing rounds agreed (None: timed before rounds). train: TrainConfig fields to change.
    quality: with the final evaluation's calibration and boundary parts (records from issue 22 on).
    """
    train = {**({"epochs": len(history_shares)} if history_shares else {}), **(train or {})}
    cell = cell_of(slug, **train)
    if not history_shares:
        epochs = cell.train.epochs
        history_shares = [0.5 + 0.5 * epoch / epochs for epoch in range(1, epochs + 1)]
    config_hash = config_hash or cell.config_hash
    identity = SimpleNamespace(id=f"{slug}-{config_hash}", slug=slug, config_hash=config_hash, resolved=cell.resolved)
    base = {"attempt": "0123456789abcdef0123456789abcdef", "started_at": STARTED_AT, "environment": _environment(),
            "device": "cpu", "execution": {"executor": "local", "threads": 1, "host": "test-host", "gpu_ids": None}}
    if status != STATUS_OK:
        kind = error_kind or ("interrupted" if status == STATUS_INTERRUPTED else "exception")
        message = error_message or ERROR_MESSAGES.get(kind, f"{kind} (test)")
        details = {"traceback": f"Traceback (most recent call last):\n{message}\n"}
        if status == STATUS_INTERRUPTED:
            details = {}
        return _as_dict(new_record(identity, status, **base, error=error_info(kind, message, **details)), written_at)
    parts = finished_parts(cell, miou, matrix, classes, absent, history_shares, epoch_time_s, iterations_per_epoch,
                           intervals, train_time_s)
    parts["cost"] = {**cost(cell, params, macs, latency(cell, latency_ratio, machine, spread, latency_ms)),
                     **(cost_parts or {})}
    parts["throughput"] = _throughput(cell, parts)
    if quality:
        parts.update(quality_parts(np.asarray(parts["confusion_matrix"])))
    return _as_dict(new_record(identity, STATUS_OK, **base, **parts), written_at)


def quality_parts(matrix: np.ndarray) -> dict[str, Any]:
    """Calibration and boundary parts consistent with `matrix`: the correct pixels at confidence 0.95 (bin 15), the
    wrong ones at 0.70 (bin 11); boundary intersections a quarter of the diagonal, unions a third of each class's
    union."""
    import torch

    from segbench.metrics.boundary import BoundaryIoU
    from segbench.metrics.calibration import BINS, calibration_summary

    correct, wrong = int(np.trace(matrix)), int(matrix.sum() - np.trace(matrix))
    count, confidence, hits = [0] * BINS, [0.0] * BINS, [0] * BINS
    count[14], confidence[14], hits[14] = correct, 0.95 * correct, correct
    count[10], confidence[10] = wrong, 0.70 * wrong
    boundary = BoundaryIoU(len(matrix), 255)
    boundary.intersection = torch.from_numpy(np.diag(matrix) // 4)
    boundary.union = torch.from_numpy((matrix.sum(0) + matrix.sum(1) - np.diag(matrix)) // 3)
    boundary.widths = {3}
    return {"calibration": calibration_summary(count, confidence, hits), "boundary": boundary.compute()}


def _as_dict(built: Any, written_at: str) -> dict[str, Any]:
    """`new_record`'s result as the JSON `write_record` writes (new_record may return a typed record), with the
    times of a finished attempt."""
    data = built.to_json() if hasattr(built, "to_json") else dict(built)
    return {**data, "written_at": written_at, "finished_at": written_at}


def finished_parts(cell: Any, miou: float | None, matrix: np.ndarray | None, classes: Sequence[str] | None,
                   absent: Iterable[int], history_shares: Sequence[float], epoch_time_s: float,
                   iterations_per_epoch: int, intervals: bool, train_time_s: float) -> dict[str, Any]:
    """What `train_and_evaluate` returns for a finished cell, but cost and throughput."""
    from segbench.cell.attached import miou_interval
    from segbench.cell.budget import BASIS_EPOCHS, TrainingLength
    from segbench.cell.data import loader_settings
    from segbench.cell.distributed import SINGLE
    from segbench.cell.selection import SelectionRule
    from segbench.metrics.compute import compute_metrics
    from segbench.records.paths import CHECKPOINT_FILE, PER_IMAGE_COUNTS_FILE

    dataset = dataset_part(cell, classes)
    num_classes = len(dataset["classes"])
    if matrix is None:
        matrix = confusion_matrix(num_classes, 0.5 if miou is None else miou, absent)
    matrix = np.asarray(matrix, dtype=np.int64)
    assert matrix.shape == (num_classes, num_classes), (matrix.shape, num_classes)
    metrics = compute_metrics(matrix)
    if miou is not None:
        metrics["miou"] = miou
    images = split_by_image(matrix, dataset["num_val"])
    ids = [f"synth_{cell.dataset.params.get('seed', 0):06d}_{index:06d}" for index in range(len(images))]
    per_image = [{"index": index, "valid_pixels": int(part.sum()), "correct_pixels": int(np.trace(part)),
                  "sample_id": ids[index]} for index, part in enumerate(images)]
    rows = history(metrics["miou"], metrics["pixel_accuracy"], history_shares, epoch_time_s, iterations_per_epoch,
                   cell.train.lr)
    batch = cell.train.batch_size
    iterations = rows[-1]["iterations"]
    parts = {
        "dataset": dataset,
        "metrics": metrics,
        "confusion_matrix": matrix.tolist(),
        "per_image": per_image,
        "per_image_counts": {"file": PER_IMAGE_COUNTS_FILE, "images": len(images), "classes": num_classes,
                             "arrays": {"intersection": "int64 [images, classes]",
                                        "union": "int64 [images, classes]"}},
        "examples": examples(per_image),
        "history": rows,
        "budget": TrainingLength(BASIS_EPOCHS, iterations).record(),
        "selection": SelectionRule.of(cell.eval).record(rows, len(rows), None),
        "checkpoint": CHECKPOINT_FILE,
        "train_batch_size": batch,
        "distributed": SINGLE.describe(batch),
        "precision": {"requested": cell.train.precision, "used": "fp32", "autocast_dtype": None,
                      "grad_scaler": None, "channels_last": cell.train.channels_last,
                      "compile": cell.train.compile, "deterministic": cell.train.deterministic,
                      "cudnn_benchmark_train": False},
        "timing": {
            "wall_time_s": train_time_s + 5.0, "train_time_s": train_time_s, "eval_time_s": 0.5 * len(rows),
            "train_step_s_median": train_time_s / iterations, "train_images_per_s": batch * iterations / train_time_s,
            "step_time_method": "median over windows of 10 steps (each timed between two reads of the loss, which "
                                "wait for the device) of their mean step time; the first steps of the process are "
                                "timed apart",
            "first_steps": 1, "first_steps_s": 1.0, "compile_time_s": None,
            "data_loader": loader_settings(cell, _cpu()), "iterations": iterations, "epochs": len(rows),
            "resumed_from_epoch": 0,
        },
    }
    if intervals:
        intersection, union = per_image_counts(images)
        parts["intervals"] = {"miou": miou_interval(SimpleNamespace(intersection=intersection, union=union))}
    return parts


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _throughput(cell: Any, parts: dict[str, Any]) -> dict[str, Any]:
    from segbench.env import device_description
    from segbench.measure.throughput import training_throughput

    return training_throughput(parts["cost"]["macs"].get("macs"), parts["timing"]["train_images_per_s"],
                               cell.train.crop, device_description(_cpu()), "fp32")


def examples(per_image: list[dict[str, Any]], per_side: int = 2) -> list[dict[str, Any]]:
    """The record's `examples` as `segbench.cell.examples.save_examples` lists them: the best and worst val
    images by pixel accuracy, with the paths of their image, label and prediction PNGs."""
    scored = sorted((row for row in per_image if row["valid_pixels"] > 0),
                    key=lambda row: row["correct_pixels"] / row["valid_pixels"])
    chosen = [("best", row) for row in reversed(scored[-per_side:])]
    chosen += [("worst", row) for row in scored[:per_side] if row not in scored[-per_side:]]
    return [{"rank": rank, "sample_id": row["sample_id"], "pixel_accuracy": row["correct_pixels"] / row["valid_pixels"],
             **{kind: f"examples/{rank}-{row['sample_id']}-{kind}.png" for kind in ("image", "label", "pred")}}
            for rank, row in chosen]


def per_image_counts(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-class intersection and union (int64 [images, classes]) of per-image confusion matrices."""
    intersection = np.stack([np.diag(part) for part in images])
    union = np.stack([part.sum(axis=0) + part.sum(axis=1) - np.diag(part) for part in images])
    return intersection, union


def write_results(results: Path, records: Iterable[dict[str, Any]], *, files: bool = False,
                  checkpoint: dict[str, Any] | None = None) -> Path:
    """Write each record through `write_record`; with `files`, a finished cell's folder also gets what the worker
    leaves beside its record: the per-image counts (from its confusion matrix, split as `record` split it) and
    example PNGs of the configured image size, and `checkpoint` (a state dict) as its checkpoint file."""
    for item in records:
        write_record(results, item)
        if files and item["status"] == STATUS_OK:
            write_cell_files(results, item, checkpoint)
    return results


def write_cell_files(results: Path, item: dict[str, Any], checkpoint: dict[str, Any] | None = None) -> Path:
    """The files beside a finished record in its cell folder (see write_results); returns the folder."""
    from PIL import Image

    from segbench.atomic import atomic_torch_save, atomic_write_bytes
    from segbench.cell.attached import per_image_counts as counts_file
    from segbench.cell.attached import write_per_image_counts
    from segbench.records.paths import cell_dir

    folder = cell_dir(results, item["cell_id"])
    images = split_by_image(np.asarray(item["confusion_matrix"], dtype=np.int64), item["per_image_counts"]["images"])
    intersection, union = per_image_counts(images)
    counts, _ = counts_file(SimpleNamespace(intersection=intersection, union=union), sample_ids(item))
    write_per_image_counts(folder, counts)
    params = item["config"]["dataset"]["params"]
    num_classes = len(item["dataset"]["classes"])
    generator = np.random.default_rng(0)
    for example in item["examples"]:
        label = generator.integers(0, num_classes, (params["height"], params["width"]), dtype=np.uint8)
        pred = np.where(generator.random(label.shape) < example["pixel_accuracy"], label, (label + 1) % num_classes)
        arrays = {"image": generator.integers(0, 256, (*label.shape, 3), dtype=np.uint8), "label": label,
                  "pred": pred.astype(np.uint8)}
        for kind, array in arrays.items():
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            atomic_write_bytes(folder / example[kind], buffer.getvalue())
    if checkpoint is not None:
        atomic_torch_save(folder / item["checkpoint"], checkpoint)
    return folder

