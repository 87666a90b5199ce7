"""`segbench export onnx`: a trained cell's selected weights as the ONNX model the benchmark measures, optionally
quantized to INT8, with what a deployment needs to know and how far each exported model agrees with the eager one.

Output folder (`out`):
    model.onnx         the export of segbench.measure.deploy.export_onnx (opset ONNX_OPSET, dynamic batch, height and
                       width where the architecture allows): one forward pass, float32 NCHW in, logits out
    model.int8.onnx    with int8: its static INT8 quantization (quantize_int8), calibrated on training images chosen
                       by the cell's seed (segbench.cell.deployment.calibration_batches)
    export.json        the cell, the exporter, the model's input and output, the preprocessing, the classes, palette
                       and ignore index, the inference protocol, and per model its accuracy and parity figures

Parity is measured as the benchmark measures it (segbench.cell.deployment.compare_with_eager): each exported model
runs through ONNX Runtime on the cell's evaluated split (the record's dataset, split and parameters) under the cell's
protocol, beside the eager model in fp32. The output folder is written whole or not at all (staging.py).

`segbench predict --runtime onnxruntime` runs such a model in place of the eager one (onnx_model_file, onnx_forward).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from segbench.atomic import atomic_write_json
from segbench.cell.data import dataset_info, evaluation_set
from segbench.cell.deployment import calibration_batches, compare_with_eager, forward_shape
from segbench.cell.evaluate import evaluate_model
from segbench.cell.trained import TrainedCell, load_trained_cell, prediction_dataset, trained_record
from segbench.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from segbench.devices import resolve_device
from segbench.errors import ConfigError, SegbenchError
from segbench.measure import deploy
from segbench.measure.deploy import BuildFailed, OnnxForward
from segbench.predict.staging import check_out, staged
from segbench.records.paths import INT8_ONNX_FILE, ONNX_FILE
from segbench.records.schema import Record
from segbench.records.store import now_iso

EXPORT_FILE = "export.json"
RUNTIMES = ("torch", "onnxruntime")  # segbench predict --runtime
PARITY = ("each exported model run by ONNX Runtime on the evaluated split under the cell's protocol, beside the "
          "eager model in fp32: mIoU and pixel accuracy from its own confusion matrix, agreement = share of valid "
          "pixels whose predicted class equals eager fp32's, max_abs_diff = largest |output - eager output| over "
          "valid pixels (logits; log-probabilities under TTA), pixels = valid pixels compared")


class ExportFailed(SegbenchError):
    """The exporter or the quantizer refused the cell's model (segbench.measure.deploy.BuildFailed)."""


@dataclass
class Export:
    out: Path
    manifest: dict[str, Any]  # the content of export.json


def export_cell(cell_dir: Path, out: Path, int8: bool = False, calibration_images: int | None = None,
                device: str = "cpu", force: bool = False, cache_dir: Path | None = None) -> Export:
    """Export the cell in `cell_dir` into `out` (layout: module docstring) and measure each model's parity.

    calibration_images: training images calibrating INT8 (default: the cell's measure.int8_calibration_images).
    Raises SegbenchError for bad input before writing, ExportFailed when the exporter or quantizer refuses the model
    (nothing is left in `out`).
    """
    if calibration_images is not None and not int8:
        raise ConfigError("--calibration-images calibrates the INT8 model; add --int8 or leave it out.")
    if calibration_images is not None and calibration_images < 1:
        raise ConfigError(f"--calibration-images must be at least 1, not {calibration_images}.")
    deploy.require_deploy_extra("segbench export onnx")
    torch_device = torch.device(resolve_device(device))
    record = trained_record(cell_dir)  # the cheap checks before loading anything
    prediction_dataset(record, cell_dir)
    out = Path(out)
    check_out(out, EXPORT_FILE, force, "segbench export", "export")
    trained = load_trained_cell(cell_dir, torch_device)
    cell = trained.cell
    if int8 and calibration_images is not None:
        cell = cell.model_copy(update={"measure": cell.measure.model_copy(
            update={"int8_calibration_images": calibration_images})})
    pad_multiple, protocol = trained.transform.pad_multiple, trained.protocol
    val_set = evaluation_set(cell, pad_multiple, cache_dir)
    info = dataset_info(val_set)
    input_shape = forward_shape(protocol, tuple(val_set[0][0].shape[1:]))
    loader = DataLoader(val_set, batch_size=cell.eval.batch_size)
    model = trained.model.float().eval()
    eager = evaluate_model(model, loader, info, torch_device, nullcontext(), protocol=protocol).metrics

    def parity(path: Path, precision: str) -> tuple[OnnxForward, dict[str, Any]]:
        session = OnnxForward(path, deploy.session_providers("onnxruntime", precision, torch_device),
                              torch.get_num_threads())
        figures = compare_with_eager(model, session, loader, info, torch_device, protocol)
        return session, {"file": path.name, "precision": precision, "providers": session.providers, **figures}

    with staged(out) as staging:
        try:
            exported = deploy.export_onnx(model, input_shape, staging / ONNX_FILE)
            session, fp32 = parity(staging / ONNX_FILE, "fp32")
            models = [{**fp32, "build_seconds": exported["seconds"]}]
            if int8:
                batches = calibration_batches(cell, pad_multiple, input_shape[1:], cache_dir)
                quantized = deploy.quantize_int8(staging / ONNX_FILE, staging / INT8_ONNX_FILE, batches)
                models.append({**parity(staging / INT8_ONNX_FILE, "int8")[1], "build_seconds": quantized.pop("seconds"),
                               "quantization": quantized})
        except BuildFailed as exc:
            raise ExportFailed(f"cell {record.cell_id} cannot be exported: {exc}.") from None
        manifest = _manifest(trained, record, cell, exported, session, models, eager, len(val_set), torch_device)
        atomic_write_json(staging / EXPORT_FILE, manifest)
    return Export(out, manifest)


def preprocessing(transform: Any) -> dict[str, Any]:
    """What the cell's evaluation transform (segbench.datasets.EvalTransform) does to an RGB image, for a deployment
    to do the same."""
    return {
        "resize": list(transform.size) if transform.size else None,  # (H, W), bilinear; None: native size
        "scale": "RGB values / 255",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "pad_multiple": transform.pad_multiple,
        "padding": "bottom and right, with 0 after normalisation (the mean colour); crop the prediction back",
        "transform": repr(transform),
    }


def _manifest(trained: TrainedCell, record: Record, cell: Any, exported: dict[str, Any], session: OnnxForward,
              models: list[dict[str, Any]], eager: dict[str, Any], images: int, device: torch.device
              ) -> dict[str, Any]:
    import onnxruntime

    return {
        "written_at": now_iso(),
        "cell_id": record.cell_id,
        "cell_dir": str(trained.cell_dir),
        "checkpoint": str(trained.checkpoint),
        "opset": exported["opset"],
        "exporter": exported["exporter"],
        "versions": {**exported["versions"], "onnxruntime": onnxruntime.__version__},
        "input": {"name": session.input_name, "shape": exported["input"], "dtype": "float32", "layout": "NCHW, RGB"},
        "output": {"name": session.session.get_outputs()[0].name,  # logits at the input's size, as protocols need
                   "shape": [exported["input"][0], len(trained.classes), *exported["input"][2:]],
                   "what": "logits per class; the argmax is the class index"},
        "preprocessing": preprocessing(trained.transform),
        "protocol": trained.protocol.describe(),  # model.onnx is one forward pass; slide and TTA combine several
        "classes": trained.classes,
        "palette": trained.palette,
        "ignore_index": trained.ignore_index,
        "evaluated_on": {"dataset": cell.dataset.name, "params": cell.dataset.params, "split": cell.eval.split,
                         "images": images},
        "device": str(device),
        "threads": torch.get_num_threads(),
        "eager": {"miou": eager["miou"], "pixel_accuracy": eager["pixel_accuracy"]},
        "models": models,
        "method": PARITY,
    }


def onnx_model_file(cell_dir: Path, record: Record, onnx: Path | None) -> Path:
    """The ONNX model `segbench predict --runtime onnxruntime` runs: `onnx`, else the cell folder's model.onnx;
    ConfigError when there is none, or when `onnx` sits beside an export.json of another cell."""
    deploy.require_deploy_extra("--runtime onnxruntime")
    if onnx is None:
        if (Path(cell_dir) / ONNX_FILE).is_file():
            return Path(cell_dir) / ONNX_FILE
        raise ConfigError(f"cell {record.cell_id} has no {ONNX_FILE} to run with --runtime onnxruntime; export it "
                          f"with segbench export onnx {cell_dir} --out DIR and pass --onnx DIR/{ONNX_FILE}.")
    onnx = Path(onnx)
    if not onnx.is_file():
        raise ConfigError(f"--onnx {onnx} does not exist; export the cell with segbench export onnx {cell_dir} "
                          f"--out DIR and pass --onnx DIR/{ONNX_FILE}.")
    try:
        exported_from = json.loads((onnx.parent / EXPORT_FILE).read_text(encoding="utf-8")).get("cell_id")
    except (OSError, ValueError, AttributeError):  # no export.json beside it: a file exported elsewhere
        exported_from = None
    if exported_from not in (None, record.cell_id):
        raise ConfigError(f"--onnx {onnx} was exported from cell {exported_from}, not {record.cell_id}; pass the "
                          "cell it was exported from, or export this one with segbench export onnx.")
    return onnx


def onnx_forward(path: Path) -> OnnxForward:
    """An ONNX Runtime session of `path` on its CPU provider, with the process's torch threads."""
    try:
        return OnnxForward(path, ["CPUExecutionProvider"], torch.get_num_threads())
    except BuildFailed as exc:
        raise ConfigError(f"{exc}; pass an ONNX model exported by segbench export onnx.") from None
