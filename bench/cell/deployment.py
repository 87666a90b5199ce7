"""What a trained cell costs to ship (`measure.runtimes` x `measure.precisions`): each deployed form of its selected
weights (segbench.measure.deploy) timed against eager PyTorch fp32 in the same process, and evaluated on the
reported split under the cell's protocol, beside eager fp32: its own mIoU and pixel accuracy (one confusion matrix),
the fraction of valid pixels whose predicted class equals eager fp32's, and the largest absolute difference of their
outputs (logits; log-probabilities under TTA) over valid pixels. A form that cannot be built, or fails when it runs,
is recorded with the reason; the cell stays ok. The record keeps all of it as `deployment`.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from segbench.cell.evaluate import evaluate_model
from segbench.cell.inference import Protocol, protocol_logits
from segbench.grid.cells import Cell
from segbench.measure.deploy import (
    ONNX_RUNTIMES,
    REFERENCE,
    BuildFailed,
    OnnxForward,
    export_onnx,
    paired_latency,
    plan,
    quantize_int8,
    session_providers,
    torch_form,
)
from segbench.metrics.confusion import ConfusionMatrix, compute_metrics
from segbench.records.paths import INT8_ONNX_FILE, ONNX_FILE

METHOD = ("each form timed alternately with eager PyTorch fp32 in the same process (batch 1 and batch N, the "
          "measurement's warm-up and time budget), ratio of medians; evaluated on the reported split under the "
          "cell's protocol: mIoU and pixel accuracy from its own confusion matrix, agreement = share of valid "
          "pixels whose predicted class equals eager fp32's, max_abs_diff = largest |output - eager output| over "
          "valid pixels")


def wants_deployment(cell: Cell) -> bool:
    """Whether the grid asks for more than today's eager fp32 measurement."""
    return tuple(cell.measure.runtimes) != ("torch",) or tuple(cell.measure.precisions) != ("fp32",)


def forward_shape(protocol: Protocol, eval_shape: tuple[int, int]) -> tuple[int, int, int]:
    """(C, H, W) of one forward pass under the protocol: the sliding window, else the padded evaluation input."""
    return (3, *protocol.crop) if protocol.mode == "slide" else (3, *eval_shape)


def calibration_batches(cell: Cell, pad_multiple: int, shape: tuple[int, int], cache_dir: Path | None
                        ) -> list[np.ndarray]:
    """`measure.int8_calibration_images` training images chosen by the cell's seed (sorted indices), with the
    evaluation transform, resized (bilinear) to the model's input `shape` where they differ: [1, 3, H, W] each."""
    from segbench.cell.data import eval_transform
    from segbench.datasets import build_dataset, parse_dataset_params

    params = parse_dataset_params(cell.dataset.name, cell.dataset.params)
    train = build_dataset(cell.dataset.name, params, "train", eval_transform(cell, pad_multiple), cache_dir)
    count = min(cell.measure.int8_calibration_images, len(train))
    chosen = sorted(np.random.default_rng(cell.seed).choice(len(train), size=count, replace=False).tolist())
    batches = []
    for index in chosen:
        image = train[index][0].unsqueeze(0).float()
        if tuple(image.shape[-2:]) != tuple(shape):
            image = F.interpolate(image, size=tuple(shape), mode="bilinear", align_corners=False)
        batches.append(image.numpy())
    return batches


@torch.inference_mode()
def compare_with_eager(reference: torch.nn.Module, form: torch.nn.Module, loader: DataLoader, info: Any,
                       device: torch.device, protocol: Protocol) -> dict[str, Any]:
    """The deployed form's accuracy on the split and its agreement with eager fp32 (see the module docstring)."""
    confusion = ConfusionMatrix(info.num_classes, ignore_index=info.ignore_index, device=device)
    agreeing = valid_pixels = 0
    largest = 0.0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        eager = protocol_logits(reference, images, protocol).float()
        deployed = protocol_logits(form, images, protocol).float()
        predicted, valid = deployed.argmax(dim=1), labels != info.ignore_index
        confusion.update(predicted, labels)
        agreeing += int(((predicted == eager.argmax(dim=1)) & valid).sum())
        valid_pixels += int(valid.sum())
        if valid.any():
            largest = max(largest, float((deployed - eager).abs().amax(dim=1)[valid].max()))
    metrics = compute_metrics(confusion.matrix.cpu())
    return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
            "agreement": agreeing / valid_pixels if valid_pixels else None, "max_abs_diff": largest,
            "pixels": valid_pixels}


def measure_deployment(model: torch.nn.Module, cell: Cell, cell_dir: Path, val_set: Any, info: Any,
                       protocol: Protocol, device: torch.device, input_shape: tuple[int, int, int],
                       cache_dir: Path | None, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's `deployment` of the selected weights in `model` (see the module docstring). input_shape: (C, H,
    W) of one forward pass (the padded image, or the sliding window). earlier: the `deployment` of an earlier
    evaluation of the same weights under the same protocol; its forms asked again are kept (INT8 only when
    calibrated on as many images)."""
    settings = cell.measure
    threads = settings.threads or torch.get_num_threads()
    model = model.eval()
    loader = DataLoader(val_set, batch_size=cell.eval.batch_size)
    known = {(form["runtime"], form["precision"]): form for form in (earlier or {}).get("forms", [])
             if form.get("precision") != "int8" or form.get("calibration_images") == settings.int8_calibration_images}
    part: dict[str, Any] = {"reference": "eager PyTorch fp32, timed in the same process", "threads": threads,
                            "onnx": (earlier or {}).get("onnx"), "int8": (earlier or {}).get("int8"),
                            "method": METHOD}
    exported: dict[str, Any] = {}  # file name -> BuildFailed, or None once built here

    def onnx_file(name: str, build) -> Path:
        if name not in exported:
            try:
                build()
                exported[name] = None
            except BuildFailed as exc:
                exported[name] = exc
        if exported[name] is not None:
            raise exported[name]
        return cell_dir / name

    def export() -> None:
        part["onnx"] = export_onnx(model.float(), input_shape, cell_dir / ONNX_FILE)

    def quantize() -> None:
        batches = calibration_batches(cell, protocol.pad_multiple, input_shape[1:], cache_dir)
        part["int8"] = quantize_int8(onnx_file(ONNX_FILE, export), cell_dir / INT8_ONNX_FILE, batches)

    forms = []
    for form in plan(settings, device):
        entry: dict[str, Any] = {"runtime": form.runtime, "precision": form.precision}
        if (form.runtime, form.precision) in known:
            forms.append(known[form.runtime, form.precision])
            continue
        if form.skipped:
            forms.append({**entry, "status": "skipped", "reason": form.skipped})
            continue
        if (form.runtime, form.precision) == REFERENCE:
            metrics = evaluate_model(model, loader, info, device, nullcontext(), protocol=protocol).metrics
            forms.append({**entry, "status": "reference", "miou": metrics["miou"],
                          "pixel_accuracy": metrics["pixel_accuracy"], "agreement": 1.0, "max_abs_diff": 0.0})
            continue
        try:
            if form.runtime in ONNX_RUNTIMES:
                path = (onnx_file(INT8_ONNX_FILE, quantize) if form.precision == "int8"
                        else onnx_file(ONNX_FILE, export))
                built = OnnxForward(path, session_providers(form.runtime, form.precision, device), threads)
                entry.update(file=path.name, providers=built.providers)
            else:
                built = torch_form(model, form.runtime, form.precision, device)
            if form.precision == "int8":
                entry["calibration_images"] = settings.int8_calibration_images
            latency = paired_latency(model, built, input_shape, device, settings)
            accuracy = compare_with_eager(model, built, loader, info, device, protocol)
        except BuildFailed as exc:
            forms.append({**entry, "status": "failed", "reason": str(exc)})
            continue
        except Exception as exc:  # a form that builds but fails when it runs (an unsupported shape, a kernel)
            reason = " ".join(str(exc).split())[:300]
            forms.append({**entry, "status": "failed", "reason": f"running it failed ({type(exc).__name__}: "
                                                                   f"{reason})"})
            continue
        forms.append({**entry, "status": "ok", **accuracy, "latency": latency})
    eager = next((form for form in forms if form.get("status") == "reference"), None)
    for form in forms:
        if eager is not None and form.get("status") == "ok" and form.get("miou") is not None:
            form["miou_change"] = form["miou"] - eager["miou"] if eager.get("miou") is not None else None
    part["forms"] = forms
    return part
