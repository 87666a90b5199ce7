"""`segbench export onnx` and `segbench predict --runtime onnxruntime` on the tiny trained cell: export.json's
figures are those of scoring the exported models' predictions with `segbench evaluate`; every bad input ends with
one sentence, exit code 2 and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segbench.cli import app
from segbench.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from segbench.measure.deploy import ONNX_OPSET

WIDE = {"COLUMNS": "200"}
pytestmark = pytest.mark.slow  # the shared trained cell (tests/predict/conftest.py) and ONNX exports
CALIBRATION_IMAGES = 3


def invoke(*arguments: str):
    return CliRunner(env=WIDE).invoke(app, [*map(str, arguments)])


@pytest.fixture(scope="module")
def exported(trained_cell, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cell exported once, with its INT8 model."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    with pytest.MonkeyPatch.context() as patched:
        # ONNX Runtime's symbolic shape inference, when it fails before quantization, leaves its model in the working
        # directory (sym_shape_infer_temp.onnx and a .data file): keep it out of the checkout.
        patched.chdir(tmp_path_factory.mktemp("working-directory"))
        outcome = invoke("export", "onnx", trained_cell.cell_dir, "--out", out, "--int8", "--calibration-images",
                         CALIBRATION_IMAGES)
    assert outcome.exit_code == 0, outcome.output
    assert "model.int8.onnx" in outcome.output and "agreement" in outcome.output
    return out


def test_export_json_says_how_to_feed_the_model(trained_cell, exported):
    assert sorted(path.name for path in exported.iterdir()) == ["export.json", "model.int8.onnx", "model.onnx"]
    manifest = json.loads((exported / "export.json").read_text())
    record = trained_cell.record
    assert manifest["cell_id"] == record["cell_id"] and manifest["opset"] == ONNX_OPSET
    assert manifest["input"]["shape"] == ["batch", 3, "height", "width"]
    assert manifest["output"]["shape"] == ["batch", len(record["dataset"]["classes"]), "height", "width"]
    preprocessing = manifest["preprocessing"]
    assert preprocessing["mean"] == list(IMAGENET_MEAN) and preprocessing["std"] == list(IMAGENET_STD)
    assert preprocessing["resize"] is None and preprocessing["pad_multiple"] == 32  # unet on 56x120 images
    dataset = record["dataset"]
    assert (manifest["classes"], manifest["palette"]) == (dataset["classes"], dataset["palette"])
    assert manifest["ignore_index"] == dataset["ignore_index"]
    fp32, int8 = manifest["models"]
    assert (fp32["file"], int8["file"]) == ("model.onnx", "model.int8.onnx")
    assert fp32["agreement"] >= 0.9999 and fp32["max_abs_diff"] < 1e-3
    assert fp32["miou"] == pytest.approx(manifest["eager"]["miou"], abs=1e-3)
    assert int8["quantization"]["images"] == CALIBRATION_IMAGES and 0 < int8["agreement"] <= 1
    assert fp32["pixels"] == int8["pixels"] == sum(sum(row) for row in record["confusion_matrix"])


@pytest.mark.parametrize("index", [0, 1], ids=["fp32", "int8"])
def test_predict_with_onnxruntime_then_evaluate_gives_the_recorded_miou(trained_cell, exported, tmp_path, index):
    model = json.loads((exported / "export.json").read_text())["models"][index]
    out = tmp_path / "pred"
    outcome = invoke("predict", trained_cell.cell_dir, "--input", trained_cell.val_images, "--out", out,
                     "--runtime", "onnxruntime", "--onnx", exported / model["file"])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads((out / "predict.json").read_text())
    assert manifest["runtime"] == "onnxruntime" and manifest["onnx"]["file"] == str(exported / model["file"])

    params = [f"-p{key}={value}" for key, value in trained_cell.record["config"]["dataset"]["params"].items()]
    scored = invoke("evaluate", "-d", "synthetic", *params, "--pred", out / "labels", "--out", tmp_path / "score.json")
    assert scored.exit_code == 0, scored.output
    score = json.loads((tmp_path / "score.json").read_text())
    assert score["metrics"]["miou"] == pytest.approx(model["miou"], abs=1e-9)
    assert score["metrics"]["pixel_accuracy"] == pytest.approx(model["pixel_accuracy"], abs=1e-9)


# -- bad input: one sentence, exit code 2, nothing written -------------------------------------------------------


def assert_refused(outcome, phrase: str) -> None:
    assert outcome.exit_code == 2, outcome.output
    errors = [line for line in outcome.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and phrase in errors[0], outcome.output


def test_bad_input_is_one_sentence_exit_2_and_nothing_written(trained_cell, tmp_path, monkeypatch):
    from segbench.measure import deploy
    from segbench.measure.deploy import BuildFailed

    (tmp_path / "empty").mkdir()
    failed = tmp_path / "cells" / "failed"
    shutil.copytree(trained_cell.cell_dir, failed)
    record = json.loads((failed / "record.json").read_text())
    record |= {"status": "failed", "error": {"kind": "oom", "message": "CUDA out of memory"}}
    (failed / "record.json").write_text(json.dumps(record))
    cell = trained_cell.cell_dir

    def refuse(*_args, **_kwargs):
        raise BuildFailed("ONNX export failed (UnsupportedOperatorError: aten::fancy_op)")

    cases = {
        "not a cell": ([tmp_path / "empty"], "not a cell folder", None),
        "failed cell": ([failed], "status 'failed'", None),
        "calibration without int8": ([cell, "--calibration-images", "4"], "add --int8", None),
        "missing extra": ([cell], "pip install 'segbench[deploy]'", ("missing_packages", lambda: ["onnxruntime"])),
        "export fails": ([cell], "cannot be exported: ONNX export failed (UnsupportedOperatorError", ("export_onnx",
                                                                                                    refuse)),
    }
    for name, (arguments, phrase, patch) in cases.items():
        out = tmp_path / f"out-{name.replace(' ', '-')}" / "new" / "onnx"
        with monkeypatch.context() as patched:
            if patch is not None:
                patched.setattr(deploy, *patch)
            outcome = invoke("export", "onnx", *arguments, "--out", out)
        assert_refused(outcome, phrase)
        assert not out.parent.parent.exists(), f"{name}: something was written"


def test_an_earlier_export_is_kept_without_force(trained_cell, exported, tmp_path):
    before = {path.name: path.read_bytes() for path in exported.iterdir()}
    assert_refused(invoke("export", "onnx", trained_cell.cell_dir, "--out", exported), "--force")
    assert {path.name: path.read_bytes() for path in exported.iterdir()} == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "model.onnx").write_bytes(b"someone else's model")
    assert_refused(invoke("export", "onnx", trained_cell.cell_dir, "--out", foreign, "--force"), "did not write")
    assert [path.name for path in foreign.iterdir()] == ["model.onnx"]


def test_predict_with_onnxruntime_needs_an_onnx_file(trained_cell, tmp_path):
    image = sorted(trained_cell.val_images.rglob("*.png"))[0]
    out = tmp_path / "pred"
    outcome = invoke("predict", trained_cell.cell_dir, "--input", image, "--out", out, "--runtime", "onnxruntime")
    assert_refused(outcome, f"segbench export onnx {trained_cell.cell_dir} --out DIR")
    assert "--onnx DIR/model.onnx" in outcome.output and not out.exists()


def test_predict_refuses_an_onnx_file_exported_from_another_cell(trained_cell, exported, tmp_path):
    other = tmp_path / "other-export"
    other.mkdir()
    shutil.copy(exported / "model.onnx", other / "model.onnx")
    (other / "export.json").write_text(json.dumps({"cell_id": "fpn__resnet18__ce__synthetic__s1-0000000000"}))
    image = sorted(trained_cell.val_images.rglob("*.png"))[0]
    outcome = invoke("predict", trained_cell.cell_dir, "--input", image, "--out", tmp_path / "pred", "--runtime",
                     "onnxruntime", "--onnx", other / "model.onnx")
    assert_refused(outcome, "was exported from cell fpn__resnet18__ce__synthetic__s1-0000000000")
    assert not (tmp_path / "pred").exists()


def test_predict_with_an_onnx_model_of_a_fixed_other_size_is_one_sentence(trained_cell, tmp_path):
    """An ONNX model whose input size is fixed (as the exporter leaves an architecture whose graph needs it) given
    images of another size: ONNX Runtime's error becomes one sentence, exit 2, and no output folder."""
    import warnings

    import torch

    classes = len(trained_cell.record["dataset"]["classes"])
    fixed = tmp_path / "fixed" / "model.onnx"
    fixed.parent.mkdir()
    with warnings.catch_warnings():  # the TorchScript exporter, deprecated, is the one that fixes every size
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(torch.nn.Conv2d(3, classes, 1).eval(), (torch.zeros(1, 3, 8, 8),), str(fixed),
                          input_names=["image"], output_names=["logits"], dynamo=False)
    image = sorted(trained_cell.val_images.rglob("*.png"))[0]
    out = tmp_path / "pred"
    outcome = invoke("predict", trained_cell.cell_dir, "--input", image, "--out", out, "--runtime", "onnxruntime",
                     "--onnx", fixed)
    assert_refused(outcome, "ONNX Runtime cannot run model.onnx on a 1x3x")
    assert "--runtime torch" in outcome.output and not out.exists()
