"""The expected-time line printed before a run: iterations x batch x crop pixels x the model's constant, plus the
per-cell overhead and latency budget; epochs counted from the training split; nothing on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbench.execution.estimate import (
    CELL_OVERHEAD_S,
    FALLBACK_SECONDS_PER_PIXEL,
    MEMORY_PROBE_S,
    SECONDS_PER_PIXEL,
    cell_seconds,
    estimate_seconds,
    expected_time,
    training_iterations,
)
from segbench.grid.cells import Cell
from segbench.grid.schema import DatasetSpec, EvalConfig, LossSpec, MeasureConfig, TrainConfig


def cell(model: str = "unet", encoder: str = "resnet18", measure: MeasureConfig | None = None, n_train: int = 20,
         **train) -> Cell:
    train = {"iterations": 100, "batch_size": 8, "crop": (64, 128)} | train
    dataset = DatasetSpec(name="synthetic", params={"n_train": n_train, "n_val": 2, "height": 32, "width": 64})
    return Cell(dataset=dataset, model=model, encoder=encoder, loss=LossSpec(name="ce"), seed=0,
                train=TrainConfig(**train), eval=EvalConfig(),
                measure=measure or MeasureConfig(budget_s=3.0, memory=False))


def test_training_time_is_iterations_times_batch_pixels_times_the_model_constant():
    seconds = cell_seconds(cell(), 100)
    train_s = 100 * 8 * 64 * 128 * SECONDS_PER_PIXEL[("unet", "resnet18")]
    assert seconds == pytest.approx(CELL_OVERHEAD_S + train_s + 3.0)
    # Half the crop pixels, half the training time; an unknown model gets the dearest known constant.
    assert cell_seconds(cell(crop=(32, 128)), 100) == pytest.approx(CELL_OVERHEAD_S + train_s / 2 + 3.0)
    unknown = cell_seconds(cell(model="pspnet"), 100)
    assert unknown == pytest.approx(CELL_OVERHEAD_S + 100 * 8 * 64 * 128 * FALLBACK_SECONDS_PER_PIXEL + 3.0)
    probed = cell_seconds(cell(measure=MeasureConfig(budget_s=None)), 100)
    assert probed == pytest.approx(CELL_OVERHEAD_S + train_s + MEMORY_PROBE_S)
    assert cell_seconds(cell(measure=MeasureConfig(enabled=False)), 100) == pytest.approx(CELL_OVERHEAD_S + train_s)


def test_epochs_are_counted_in_full_batches_of_the_training_split(tmp_path: Path):
    from segbench.datasets import parse_dataset_params, prepare_dataset

    by_epochs = cell(iterations=None, epochs=3, batch_size=8, n_train=20)
    prepare_dataset("synthetic", parse_dataset_params("synthetic", by_epochs.dataset.params), tmp_path)
    assert training_iterations(by_epochs, tmp_path) == 3 * (20 // 8)
    assert training_iterations(cell(iterations=7), tmp_path) == 7
    # A dataset folder that is not there: the estimate gives up (the run itself reports the folder).
    missing = cell(iterations=None, epochs=3).model_copy(
        update={"dataset": DatasetSpec(name="cityscapes", params={"root": str(tmp_path / "missing")})})
    assert training_iterations(missing, tmp_path) is None
    assert estimate_seconds([cell(), missing], tmp_path) is None


def test_expected_time_line_on_the_cpu_only():
    cells = [cell(iterations=300), cell(model="fpn", iterations=300)]
    line = expected_time(cells, "cpu")
    minutes = round(estimate_seconds(cells) / 60)
    assert line == f"expected time: about {minutes} min on a 2-core CPU like ours; slower machines up to 2-3x"
    short = expected_time([cell(iterations=1)], "cpu")
    assert short is not None and short.startswith("expected time: about ") and " s on a 2-core CPU" in short
    assert expected_time(cells, "cuda") is None and expected_time([], "cpu") is None


def test_the_evaluations_after_training_are_counted_with_their_protocol(tmp_path):
    """One pass over the val images per further dataset, per corruption and severity, plus the clean pass beside
    the corruptions, each at EVAL_SHARE of a training step per pixel, times the protocol's windows and TTA passes."""
    from segbench.datasets import parse_dataset_params, prepare_dataset
    from segbench.execution.estimate import EVAL_SHARE, further_evaluation_seconds, further_evaluations

    plain = cell()
    prepare_dataset("synthetic", parse_dataset_params("synthetic", plain.dataset.params), tmp_path)
    evaluation = EvalConfig.model_validate({"datasets": [{"name": "synthetic", "params": plain.dataset.params}],
                                            "corruptions": {"names": ["fog", "brightness"], "severities": [1, 3]}})
    evaluated = plain.model_copy(update={"eval": evaluation})
    assert further_evaluations(plain) == 0 and further_evaluations(evaluated) == 1 + 2 * 2 + 1
    one_pass = 2 * 32 * 64 * EVAL_SHARE * SECONDS_PER_PIXEL[("unet", "resnet18")]  # 2 val images of 32x64
    assert further_evaluation_seconds(evaluated, tmp_path) == pytest.approx(6 * one_pass)
    assert estimate_seconds([evaluated], tmp_path) == pytest.approx(estimate_seconds([plain], tmp_path) + 6 * one_pass)
    slid = evaluated.model_copy(update={"eval": EvalConfig.model_validate({
        **evaluation.model_dump(), "mode": "slide", "crop": [32, 32], "stride": [32, 16],
        "tta": {"scales": [1.0, 0.5], "flip": True}})})
    # 3 windows of 32x32 over 32x64 pixels (1.5x), TTA (1 + 0.25) x 2 passes: 3.75x the pixels
    assert further_evaluation_seconds(slid, tmp_path) == pytest.approx(6 * one_pass * 1.5 * 2.5)
    # A finished cell evaluated again (nothing trains): the worker's start, every evaluation and the reported split
    from segbench.execution.estimate import CELL_OVERHEAD_S

    again = estimate_seconds([], tmp_path, evaluated=[evaluated])
    assert again == pytest.approx(CELL_OVERHEAD_S + 7 * one_pass) and again < estimate_seconds([evaluated], tmp_path)


def test_the_deployment_measurement_is_counted_by_its_forms(tmp_path):
    """measure.runtimes [torch, onnxruntime] x precisions [fp32, int8] on the CPU: two measured forms (ONNX Runtime
    fp32 and INT8; torch int8 is skipped), each a latency budget and two passes (eager and deployed), one pass for
    eager fp32, the export and the quantization; torch-compile adds a compilation."""
    from segbench.datasets import parse_dataset_params, prepare_dataset
    from segbench.execution.estimate import (
        COMPILE_S,
        EVAL_SHARE,
        INT8_QUANTIZE_S,
        ONNX_EXPORT_S,
        deployment_seconds,
    )

    plain = cell()
    prepare_dataset("synthetic", parse_dataset_params("synthetic", plain.dataset.params), tmp_path)
    one_pass = 2 * 32 * 64 * EVAL_SHARE * SECONDS_PER_PIXEL[("unet", "resnet18")]  # 2 val images of 32x64
    deployed = cell(measure=MeasureConfig(budget_s=3.0, memory=False, runtimes=("torch", "onnxruntime"),
                                          precisions=("fp32", "int8")))
    assert deployment_seconds(plain, tmp_path) == 0.0
    expected = 5 * one_pass + 2 * 3.0 + ONNX_EXPORT_S + INT8_QUANTIZE_S
    assert deployment_seconds(deployed, tmp_path) == pytest.approx(expected)
    assert estimate_seconds([deployed], tmp_path) == pytest.approx(estimate_seconds([plain], tmp_path) + expected)
    compiled = cell(measure=MeasureConfig(budget_s=3.0, memory=False, runtimes=("torch", "torch-compile")))
    assert deployment_seconds(compiled, tmp_path) == pytest.approx(3 * one_pass + 3.0 + COMPILE_S)
