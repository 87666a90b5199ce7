"""Deployment cost (issue 23): the session's trained cell measured in ONNX Runtime fp32 and INT8 by adding
measure.runtimes and measure.precisions to its finished grid (its saved weights, nothing trains), each form's
recorded accuracy and agreement checked against the test's own scoring; torch.compile on a small model; a model that
cannot be exported; a grid without the deploy extra."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from support.grids import PREDICT_GRID, Sweep

# Deployment settings are evaluation settings: the cell keeps its id (measure.budget_s, which times them, would not)
DEPLOY = {"runtimes": ["torch", "onnxruntime"], "precisions": ["fp32", "int8"], "int8_calibration_images": 2}


@pytest.fixture(scope="module")
def deployed(trained_cell, tmp_path_factory):
    """The trained cell's results copied and run again with the deployment settings (SEGBENCH_FAULT=no_training:
    a training step would fail the run)."""
    document = copy.deepcopy(PREDICT_GRID)
    document["measure"].update(DEPLOY)
    sweep = Sweep(tmp_path_factory.mktemp("deployed"), document)
    shutil.copytree(trained_cell.results, sweep.results)
    scratch = set(Path.cwd().iterdir())
    outcome = sweep.run(fault="no_training=1")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert set(Path.cwd().iterdir()) == scratch  # ONNX Runtime's tools leave nothing in the working directory
    (record,) = sweep.records().values()
    return sweep.results / "cells" / record["cell_id"], record


def scored(cell_dir: Path, record: dict, forward) -> dict:
    """The test's own scoring of `forward` on the cell's val split: mIoU, pixel accuracy and, against the eager
    model of its checkpoint, the share of valid pixels predicted alike."""
    from segbench.cell.data import evaluation_set
    from segbench.grid.cells import Cell
    from segbench.metrics.confusion import ConfusionMatrix, compute_metrics
    from segbench.models import MODELS, build_model

    cell = Cell.model_validate(record["config"])
    val_set = evaluation_set(cell, MODELS.get(cell.model).pad_multiple, None)
    eager = build_model(cell.model, encoder=cell.encoder, classes=19, encoder_weights=None).eval()
    eager.load_state_dict(torch.load(cell_dir / "model.pt", weights_only=True))
    confusion, agreeing, valid_pixels = ConfusionMatrix(19, ignore_index=255), 0, 0
    before = torch.get_num_threads()
    torch.set_num_threads(record["deployment"]["threads"])
    try:
        with torch.inference_mode():
            for images, labels in DataLoader(val_set, batch_size=cell.eval.batch_size):
                predicted, valid = forward(images).argmax(dim=1), labels != 255
                confusion.update(predicted, labels)
                agreeing += int(((predicted == eager(images).argmax(dim=1)) & valid).sum())
                valid_pixels += int(valid.sum())
    finally:
        torch.set_num_threads(before)
    metrics = compute_metrics(confusion.matrix)
    return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
            "agreement": agreeing / valid_pixels, "pixels": valid_pixels}


def session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    runner = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = runner.get_inputs()[0].name
    return lambda images: torch.from_numpy(runner.run(None, {name: images.numpy()})[0])


@pytest.mark.slow
def test_onnxruntime_fp32_keeps_the_eager_predictions_and_the_record_says_so(deployed):
    cell_dir, record = deployed
    deployment = record["deployment"]
    forms = {(form["runtime"], form["precision"]): form for form in deployment["forms"]}
    assert forms["torch", "fp32"]["status"] == "reference"
    assert forms["torch", "int8"]["status"] == "skipped" and "onnxruntime" in forms["torch", "int8"]["reason"]
    fp32 = forms["onnxruntime", "fp32"]
    assert fp32["status"] == "ok" and fp32["file"] == "model.onnx" and (cell_dir / "model.onnx").is_file()
    assert deployment["onnx"]["opset"] == 18 and fp32["max_abs_diff"] < 1e-3
    ours = scored(cell_dir, record, session(cell_dir / "model.onnx", deployment["threads"]))
    assert ours["pixels"] == fp32["pixels"]
    assert 1 - ours["agreement"] <= 1e-4
    assert fp32["agreement"] == pytest.approx(ours["agreement"], abs=1 / ours["pixels"])
    assert fp32["miou"] == pytest.approx(ours["miou"], abs=1e-3)
    one, many = fp32["latency"]["batch_1"], fp32["latency"]["batch_n"]
    assert one["ratio_to_eager"] == pytest.approx(one["latency_ms_p50"] / one["eager_latency_ms_p50"])
    measure = record["config"]["measure"]
    assert many["batch_size"] == measure["batch_size"] and many["n"] >= measure["iters"]
    assert record["history"]  # nothing trained: the history is the training run's
    assert record["reevaluations"][-1]["evaluated"] == ["deployment: torch fp32, torch int8, onnxruntime fp32, "
                                                        "onnxruntime int8"]


@pytest.mark.slow
def test_int8_loads_runs_and_its_recorded_miou_is_its_own(deployed):
    cell_dir, record = deployed
    forms = {(form["runtime"], form["precision"]): form for form in record["deployment"]["forms"]}
    int8, eager = forms["onnxruntime", "int8"], forms["torch", "fp32"]
    assert int8["status"] == "ok" and int8["calibration_images"] == 2 and record["deployment"]["int8"]["images"] == 2
    ours = scored(cell_dir, record, session(cell_dir / "model.int8.onnx", record["deployment"]["threads"]))
    assert int8["miou"] == pytest.approx(ours["miou"], abs=1e-9)
    assert int8["pixel_accuracy"] == pytest.approx(ours["pixel_accuracy"], abs=1e-9)
    assert int8["miou_change"] == pytest.approx(int8["miou"] - eager["miou"])


@pytest.mark.slow
def test_the_summary_and_the_report_show_the_deployed_forms(deployed, tmp_path):
    from segbench.analysis.report import write_report
    from segbench.analysis.summary import summarize_folder

    cell_dir, record = deployed
    (row,) = summarize_folder(cell_dir.parent.parent).cells.values()
    forms = {(form["runtime"], form["precision"]): form for form in record["deployment"]["forms"]}
    assert row.value("miou_onnxruntime_int8") == forms["onnxruntime", "int8"]["miou"]
    assert row.value("latency_ratio_onnxruntime_fp32") == (
        forms["onnxruntime", "fp32"]["latency"]["batch_1"]["ratio_to_eager"])
    assert row.value("int8_miou_drop") == pytest.approx(-forms["onnxruntime", "int8"]["miou_change"])
    assert row.value("miou_tensorrt_fp16") is None
    text = write_report(cell_dir.parent.parent, tmp_path / "report").read_text()
    assert "### Deployment" in text and "| onnxruntime | int8 |" in " ".join(text.split(" "))


class Unexportable(torch.nn.Module):
    """A segmentation head whose forward branches on a tensor's value: torch.export cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 19, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.conv(images)
        if float(out.mean()) > 1e9:  # data-dependent control flow
            return out * 2
        return out


@pytest.mark.slow
def test_a_model_that_cannot_be_exported_records_why_and_the_other_forms_still_run(tmp_path):
    from segbench.cell.deployment import measure_deployment
    from segbench.cell.inference import Protocol
    from segbench.datasets.labels import TRAIN_CLASSES

    from support.records import cell_of

    base = cell_of("unet__resnet18__ce__synthetic__s0")
    cell = base.model_copy(update={"measure": base.measure.model_copy(update={
        "runtimes": ("torch", "onnxruntime", "torch-compile"), "precisions": ("fp32",), "budget_s": None,
        "warmup": 1, "iters": 3, "batch_size": 2})})
    images = torch.randn(3, 3, 16, 32)
    labels = torch.randint(0, 19, (3, 16, 32))
    val_set = list(zip(images, labels, strict=True))
    info = type("Info", (), {"num_classes": 19, "ignore_index": 255, "classes": TRAIN_CLASSES})()
    part = measure_deployment(Unexportable(), cell, tmp_path, val_set, info, Protocol(pad_multiple=1),
                              torch.device("cpu"), (3, 16, 32), None)
    forms = {(form["runtime"], form["precision"]): form for form in part["forms"]}
    failed = forms["onnxruntime", "fp32"]
    assert failed["status"] == "failed" and failed["reason"].startswith("ONNX export failed (")
    assert "\n" not in failed["reason"] and not (tmp_path / "model.onnx").exists()
    assert forms["torch", "fp32"]["status"] == "reference"
    compiled = forms["torch-compile", "fp32"]  # torch.compile breaks the graph at the branch and still runs
    assert compiled["status"] == "ok" and compiled["agreement"] == 1.0 and compiled["max_abs_diff"] < 1e-4


def test_without_the_deploy_extra_a_grid_asking_for_onnxruntime_stops_before_anything_is_written(tmp_path,
                                                                                                monkeypatch):
    from segbench.measure import deploy

    monkeypatch.setattr(deploy, "missing_packages", lambda: ["onnxruntime"])
    document = copy.deepcopy(PREDICT_GRID)
    document["measure"].update(DEPLOY)
    sweep = Sweep(tmp_path, document)
    outcome = sweep.run()
    assert outcome.returncode == 2
    message = " ".join((outcome.stdout + outcome.stderr).split())
    assert "measure.runtimes asks for onnxruntime, which needs onnxruntime (the `deploy` extra)" in message
    assert "pip install 'segbench[deploy]'" in message and not sweep.results.exists()


def test_deployment_settings_are_checked_when_the_grid_is_read():
    from segbench.errors import ConfigError
    from segbench.grid.load import parse_grid

    for measure, words in (({"runtimes": []}, "measure.runtimes is empty"),
                           ({"precisions": ["fp32", "fp32"]}, "lists 'fp32' twice"),
                           ({"runtimes": ["openvino"]}, "openvino")):
        document = copy.deepcopy(PREDICT_GRID)
        document["measure"].update(measure)
        with pytest.raises(ConfigError, match=words):
            parse_grid(document)
