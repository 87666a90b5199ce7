"""`predict`: run a trained cell on images, a folder of images or a video, and write what it sees.

Output folder (`out`):
    labels/<name>.png            one label PNG per image or frame (see outputs.FORMATS); <name> keeps the input's
                                 relative path and stem (a Cityscapes image keeps its `<city>_<seq>_<frame>_leftImg8bit`
                                 name, which `segbench evaluate` and cityscapesScripts match)
    overlays/<name>.png          with `overlay`: the image blended with the class colours, legend underneath
    <video stem>_overlay.mp4     for a video input: the overlay of every frame
    predict.json                 what ran (cell, checkpoint, runtime and ONNX file, preprocessing, device, batch) and
                                 the timing split

Nothing is half-written: every input and option is checked first, the outputs are written into a temporary folder
beside `out`, which replaces `out` only when every frame is done; on any error the temporary folder is removed.

Preprocessing is the cell's evaluation transform (segbench.datasets.EvalTransform: optional resize to `eval.size`,
ImageNet normalisation, bottom/right padding to the architecture's multiple) in the evaluation's precision, and the
logits follow its inference protocol (eval.mode, eval.tta: segbench.cell.inference); the padding is cropped from the
prediction. With `eval.size` set, the prediction made at that size is resized back to the
input's size by nearest neighbour, so every label PNG has its image's size.

Runtime: `torch` runs the cell's checkpoint eagerly; `onnxruntime` runs its ONNX export (`segbench export onnx`, or
the cell folder's model.onnx of a grid that measured onnxruntime) with ONNX Runtime's CPU provider, in place of the
eager model under the same protocol (export.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segbench.atomic import atomic_write_json
from segbench.cell.inference import protocol_logits
from segbench.cell.trained import TrainedCell, load_trained_cell, prediction_dataset, trained_record
from segbench.devices import resolve_device, synchronize
from segbench.errors import ConfigError
from segbench.measure.deploy import BuildFailed
from segbench.predict.export import RUNTIMES, onnx_forward, onnx_model_file
from segbench.predict.inputs import Frame, InputPlan, plan_input, read_frames
from segbench.predict.outputs import Overlay, VideoWriter, encode_labels, label_value_table, resize_to, write_png
from segbench.predict.staging import check_out, staged
from segbench.predict.timing import FrameTimes, TimingSplit
from segbench.records.store import now_iso

LABELS_DIR = "labels"
OVERLAYS_DIR = "overlays"
MANIFEST_FILE = "predict.json"


@dataclass
class Prediction:
    out: Path
    frames: int
    video: Path | None  # the overlay video, for a video input
    manifest: dict[str, Any]  # the content of predict.json


@dataclass
class _Pending:
    frame: Frame
    tensor: torch.Tensor  # float32 [3, H', W'], padded
    size: tuple[int, int]  # (H, W) of the model input before padding
    times: FrameTimes


@dataclass
class _Outputs:
    """Where and how each frame's prediction is written (all under the staging folder)."""

    folder: Path
    table: np.ndarray | None  # class index -> written value; None for colours
    painter: Overlay | None  # overlays for PNGs and/or the video
    overlay_pngs: bool
    video: VideoWriter | None


def predict(cell_dir: Path, input_path: Path, out: Path, label_format: str = "trainids", overlay: bool = False,
            alpha: float = 0.5, batch_size: int | None = None, device: str = "auto", force: bool = False,
            progress: Callable[[int], None] | None = None, runtime: str = "torch",
            onnx: Path | None = None) -> Prediction:
    """Predict every frame of `input_path` with the cell in `cell_dir` into `out` (layout: module docstring).

    batch_size: frames per forward pass (default: the cell's eval.batch_size); consecutive frames of one size are
    batched. progress: called with the number of frames done. runtime: 'torch' or 'onnxruntime'; onnx: the ONNX
    file for onnxruntime (default: the cell folder's model.onnx). Raises SegbenchError for bad input, before writing.
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {batch_size}.")
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime '{runtime}' is unknown; choose {' or '.join(RUNTIMES)}.")
    if onnx is not None and runtime != "onnxruntime":
        raise ConfigError("--onnx runs with --runtime onnxruntime; add --runtime onnxruntime or leave --onnx out.")
    if runtime == "onnxruntime" and device not in ("auto", "cpu"):
        raise ConfigError(f"--runtime onnxruntime runs on ONNX Runtime's CPU provider, not --device {device}; pass "
                          "--device cpu or leave --device out.")
    torch_device = torch.device("cpu" if runtime == "onnxruntime" else resolve_device(device))
    # The cheap checks first, so that a typo is reported at once and not after loading the model.
    record = trained_record(cell_dir)
    onnx_file = onnx_model_file(cell_dir, record, onnx) if runtime == "onnxruntime" else None
    dataset = prediction_dataset(record, cell_dir)
    table = label_value_table(record, label_format)
    plan = plan_input(input_path)
    out = Path(out)
    _check_out(out, plan, force)
    painter = Overlay(dataset.classes, dataset.palette, dataset.ignore_index, alpha,
                      fixed_legend=plan.is_video) if overlay or plan.is_video else None
    trained = load_trained_cell(cell_dir, torch_device)
    if onnx_file is not None:  # the exported model in place of the eager one, under the same protocol
        trained = dataclasses.replace(trained, model=onnx_forward(onnx_file))
    batch_size = batch_size or trained.cell.eval.batch_size

    with staged(out) as staging:
        video = None
        try:
            if plan.is_video:
                video = VideoWriter(staging / f"{plan.video.stem}_overlay.mp4", plan.fps)
            outputs = _Outputs(staging, table, painter, overlay, video)
            try:
                timing = _predict_frames(trained, plan, outputs, batch_size, progress)
            except BuildFailed as exc:  # the ONNX model did not run on these images
                raise ConfigError(f"{exc}; a model exported with a fixed input size runs only images of that size: "
                                  "export the cell again with segbench export onnx, or predict with --runtime "
                                  "torch.") from None
            manifest = _manifest(trained, plan, label_format, overlay, alpha, batch_size, video, timing, onnx_file)
            atomic_write_json(staging / MANIFEST_FILE, manifest)
        except BaseException:
            if video is not None:
                video.close()
            raise
    return Prediction(out, manifest["frames"], out / video.path.name if video else None, manifest)


def _check_out(out: Path, plan: InputPlan, force: bool) -> None:
    """Refuse an --out that holds other files, or that lies inside the input folder (a rerun would read it)."""
    check_out(out, MANIFEST_FILE, force, "predict", "prediction")
    if plan.source.is_dir() and out.resolve().is_relative_to(plan.source.resolve()):
        raise ConfigError(f"--out {out} is inside the --input folder {plan.source}; a later run would read the "
                          "predictions as input, so choose a folder outside it.")


def _predict_frames(trained: TrainedCell, plan: InputPlan, outputs: _Outputs, batch_size: int,
                    progress: Callable[[int], None] | None) -> TimingSplit:
    """Decode, preprocess and batch the frames; consecutive frames of one padded shape share a forward pass."""
    timing = TimingSplit()
    pending: list[_Pending] = []

    def flush() -> None:
        if len(timing.rows) == len(pending):  # untimed warm-up: lazy initialisation, cuDNN autotuning
            _forward(trained, torch.stack([item.tensor for item in pending]).to(trained.device))
        _run_batch(trained, pending, outputs)
        pending.clear()
        if progress is not None:
            progress(len(timing.rows))

    for frame in read_frames(plan):
        times = timing.new_frame()
        times["decode"] = frame.decode_s
        start = time.perf_counter()
        width, height = frame.image.size
        # EvalTransform works on (image, label) pairs, so it gets an unused all-zero label of the image's size.
        tensor, _ = trained.transform(frame.image, np.zeros((height, width), dtype=np.uint8))
        size = trained.transform.size or (height, width)
        times["preprocess"] = time.perf_counter() - start
        if pending and (tensor.shape != pending[0].tensor.shape or len(pending) == batch_size):
            flush()
        pending.append(_Pending(frame, tensor, size, times))
    if pending:
        flush()
    if outputs.video is not None:
        start = time.perf_counter()
        outputs.video.close()  # finishing the file is part of writing the last frame
        timing.rows[-1]["write"] += time.perf_counter() - start
    return timing


@torch.inference_mode()
def _forward(trained: TrainedCell, images: torch.Tensor) -> torch.Tensor:
    """Logits [N, C, H', W'] of a batch already on the device, in the evaluation's precision and under its inference
    protocol (one forward pass, sliding windows, TTA: segbench.cell.inference)."""
    with trained.autocast():
        return protocol_logits(trained.model, images, trained.protocol)


def _run_batch(trained: TrainedCell, batch: list[_Pending], outputs: _Outputs) -> None:
    """Predict one batch and write each frame's outputs, adding each stage's time to the frames' rows."""
    rows = [item.times for item in batch]
    device = trained.device
    start = time.perf_counter()
    images = torch.stack([item.tensor for item in batch]).to(device)
    synchronize(device)
    TimingSplit.share(rows, "preprocess", time.perf_counter() - start)

    start = time.perf_counter()
    logits = _forward(trained, images)
    synchronize(device)
    TimingSplit.share(rows, "model", time.perf_counter() - start)

    start = time.perf_counter()
    classes = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
    TimingSplit.share(rows, "postprocess", time.perf_counter() - start)

    for item, pred in zip(batch, classes, strict=True):
        start = time.perf_counter()
        height, width = item.size
        native = (item.frame.image.size[1], item.frame.image.size[0])
        pred = resize_to(np.ascontiguousarray(pred[:height, :width]), native)
        values = encode_labels(pred, outputs.table, trained.palette, trained.ignore_index)
        rendered = outputs.painter.render(item.frame.image, pred) if outputs.painter is not None else None
        item.times["postprocess"] += time.perf_counter() - start

        start = time.perf_counter()
        write_png(outputs.folder / LABELS_DIR / f"{item.frame.name}.png", values)
        if outputs.overlay_pngs:
            write_png(outputs.folder / OVERLAYS_DIR / f"{item.frame.name}.png", rendered)
        if outputs.video is not None:
            outputs.video.append(rendered)
        item.times["write"] += time.perf_counter() - start


def _manifest(trained: TrainedCell, plan: InputPlan, label_format: str, overlay: bool, alpha: float,
              batch_size: int, video: VideoWriter | None, timing: TimingSplit,
              onnx_file: Path | None) -> dict[str, Any]:
    cell = trained.cell
    summary = timing.summary()
    return {
        "written_at": now_iso(),
        "cell_id": trained.record.cell_id,
        "cell_dir": str(trained.cell_dir),
        "checkpoint": str(trained.checkpoint),
        "runtime": "torch" if onnx_file is None else "onnxruntime",
        "onnx": None if onnx_file is None else {"file": str(onnx_file), "providers": trained.model.providers,
                                                "threads": torch.get_num_threads()},
        "input": {"path": str(plan.source), "kind": "video" if plan.is_video else "images", "fps": plan.fps},
        "frames": summary["frames"],
        "format": label_format,
        "labels": LABELS_DIR,
        "overlays": OVERLAYS_DIR if overlay else None,
        "alpha": alpha if overlay or plan.is_video else None,
        "video": video.path.name if video is not None else None,
        "classes": trained.classes,
        "preprocessing": {
            "transform": repr(trained.transform),
            "eval_size": list(cell.eval.size) if cell.eval.size else None,
            "resized_back": cell.eval.size is not None,
        },
        "device": str(trained.device),
        "autocast": trained.autocast_dtype,
        "batch_size": batch_size,
        "timing": summary,
    }
