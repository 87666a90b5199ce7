"""`segbench predict`: image folders, single images and video on a tiny trained cell; the predict-then-evaluate
identity with the recorded confusion matrix; every bad input ends with one sentence, exit code 2 and nothing written."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segbench.cli import app
from segbench.datasets.labels import LABEL_BY_NAME, TRAIN_CLASSES
from segbench.predict.timing import STAGES

WIDE = {"COLUMNS": "200"}
pytestmark = pytest.mark.slow  # the shared trained cell (tests/predict/conftest.py)


@pytest.fixture
def size(trained_cell) -> tuple[int, int]:
    """(W, H) of the cell's images."""
    params = trained_cell.record["config"]["dataset"]["params"]
    return params["width"], params["height"]


def predict(cell_dir: Path, source: Path, out: Path, *extra: str):
    return CliRunner(env=WIDE).invoke(
        app, ["predict", str(cell_dir), "--input", str(source), "--out", str(out), "--device", "cpu", *extra]
    )


def val_images(trained_cell) -> list[Path]:
    return sorted(trained_cell.val_images.rglob("*_leftImg8bit.png"))


@pytest.mark.parametrize("label_format", ["trainids", "labelids"])
def test_predict_then_evaluate_reproduces_the_recorded_confusion_matrix(trained_cell, tmp_path, label_format):
    out = tmp_path / "pred"
    outcome = predict(trained_cell.cell_dir, trained_cell.val_images, out, "--format", label_format, "--overlay")
    assert outcome.exit_code == 0, outcome.output
    images = val_images(trained_cell)
    labels = sorted((out / "labels").rglob("*.png"))
    # Names and sub-folders are kept: labels/<city>/<stem>_leftImg8bit.png, as cityscapesScripts matches them.
    assert [p.relative_to(out / "labels") for p in labels] == [p.relative_to(trained_cell.val_images) for p in images]
    assert len(list((out / "overlays").rglob("*.png"))) == len(images)
    for image, label in zip(images, labels, strict=True):
        with Image.open(image) as source, Image.open(label) as written:
            assert written.mode == "L" and written.size == source.size

    params = [f"-p{key}={value}" for key, value in trained_cell.record["config"]["dataset"]["params"].items()]
    scored = CliRunner(env=WIDE).invoke(app, ["evaluate", "-d", "synthetic", *params, "--pred", str(out / "labels"),
                                              "--pred-format", label_format, "--out", str(tmp_path / "score.json")])
    assert scored.exit_code == 0, scored.output
    score = json.loads((tmp_path / "score.json").read_text())
    assert score["confusion_matrix"] == trained_cell.record["confusion_matrix"]

    manifest = json.loads((out / "predict.json").read_text())
    assert manifest["frames"] == len(images) and manifest["format"] == label_format
    assert manifest["batch_size"] == trained_cell.record["config"]["eval"]["batch_size"]
    assert set(manifest["timing"]["stages"]) == set(STAGES)
    assert manifest["timing"]["model_fps"] > 0 and manifest["timing"]["end_to_end_fps"] > 0
    for stage in STAGES:
        assert stage in outcome.output
    assert "frames/s" in outcome.output


def test_labelids_are_cityscapes_label_ids_of_the_trainids(trained_cell, tmp_path):
    image = val_images(trained_cell)[0]
    assert predict(trained_cell.cell_dir, image, tmp_path / "t", "--format", "trainids").exit_code == 0
    assert predict(trained_cell.cell_dir, image, tmp_path / "l", "--format", "labelids").exit_code == 0
    name = f"{image.stem}.png"
    train_ids = np.asarray(Image.open(tmp_path / "t" / "labels" / name))
    label_ids = np.asarray(Image.open(tmp_path / "l" / "labels" / name))
    expected = np.array([LABEL_BY_NAME[name].id for name in TRAIN_CLASSES], dtype=np.uint8)[train_ids]
    np.testing.assert_array_equal(label_ids, expected)


def test_color_format_of_one_image(trained_cell, tmp_path, size):
    image = val_images(trained_cell)[0]
    out = tmp_path / "colour"
    outcome = predict(trained_cell.cell_dir, image, out, "--format", "color", "--batch-size", "1")
    assert outcome.exit_code == 0, outcome.output
    with Image.open(out / "labels" / f"{image.stem}.png") as written:
        assert written.mode == "RGB" and written.size == size
        colours = {tuple(c) for c in np.asarray(written).reshape(-1, 3)}
    palette = {tuple(c) for c in trained_cell.record["dataset"]["palette"]}
    assert colours <= palette


def test_with_eval_size_predictions_are_resized_back_to_the_image(trained_cell, tmp_path, size):
    cell = tmp_path / "cells" / "resized"
    shutil.copytree(trained_cell.cell_dir, cell)
    record = json.loads((cell / "record.json").read_text())
    record["config"]["eval"]["size"] = [32, 64]  # the model sees 32x64 inputs
    (cell / "record.json").write_text(json.dumps(record))
    image = val_images(trained_cell)[0]
    outcome = predict(cell, image, tmp_path / "out")
    assert outcome.exit_code == 0, outcome.output
    with Image.open(tmp_path / "out" / "labels" / f"{image.stem}.png") as written:
        assert written.size == size
    manifest = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert manifest["preprocessing"]["eval_size"] == [32, 64] and manifest["preprocessing"]["resized_back"]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 8) -> None:
    import imageio.v2 as imageio

    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=2) as writer:
        for frame in frames:
            writer.append_data(frame)


def test_video_gives_a_label_per_frame_and_an_overlay_video(trained_cell, tmp_path, size):
    import imageio.v2 as imageio

    frames = [np.asarray(Image.open(p).convert("RGB")) for p in val_images(trained_cell)] * 2
    video = tmp_path / "drive.mp4"
    write_video(video, frames)
    out = tmp_path / "video-out"
    outcome = predict(trained_cell.cell_dir, video, out, "--batch-size", "4", "--alpha", "0.6")
    assert outcome.exit_code == 0, outcome.output
    labels = sorted((out / "labels").glob("*.png"))
    assert [p.name for p in labels] == [f"drive_{i:06d}.png" for i in range(len(frames))]
    assert all(Image.open(p).size == size for p in labels)
    with imageio.get_reader(out / "drive_overlay.mp4", format="FFMPEG") as reader:
        assert reader.count_frames() == len(frames)
        width, height = reader.get_meta_data()["size"]
    assert width == size[0] and height > size[1]  # the legend sits under the frame
    manifest = json.loads((out / "predict.json").read_text())
    assert manifest["frames"] == len(frames) and manifest["input"]["kind"] == "video"
    assert manifest["video"] == "drive_overlay.mp4" and manifest["input"]["fps"] == pytest.approx(8)


# -- bad input: one sentence, exit code 2, nothing written -------------------------------------------------------


def failed_copy(trained_cell, tmp_path: Path, status: str, keep_checkpoint: bool) -> Path:
    cell = tmp_path / "cells" / "broken-cell"
    shutil.copytree(trained_cell.cell_dir, cell)
    record = json.loads((cell / "record.json").read_text())
    record["status"] = status
    if status != "ok":
        record["error"] = {"kind": "oom", "message": "CUDA out of memory"}
    (cell / "record.json").write_text(json.dumps(record))
    if not keep_checkpoint:
        (cell / record["checkpoint"]).unlink()
    return cell


def bad_inputs(trained_cell, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments after `predict`, a phrase the error sentence must hold)."""
    good = val_images(trained_cell)[0]
    corrupt = tmp_path / "mixed"
    corrupt.mkdir(parents=True)
    shutil.copy(good, corrupt / "a.png")
    shutil.copy(good, corrupt / "b.png")
    (corrupt / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated video")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    twins = tmp_path / "twins"
    twins.mkdir()
    shutil.copy(good, twins / "x.png")
    Image.open(good).convert("RGB").save(twins / "x.jpg")
    foreign = tmp_path / "foreign-out"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("someone else's file")
    cell = str(trained_cell.cell_dir)
    failed = str(failed_copy(trained_cell, tmp_path / "f", "failed", keep_checkpoint=False))
    missing = str(failed_copy(trained_cell, tmp_path / "m", "ok", keep_checkpoint=False))
    damaged = failed_copy(trained_cell, tmp_path / "d", "ok", keep_checkpoint=True)
    (damaged / trained_cell.record["checkpoint"]).write_bytes(b"PK\x03\x04 half a checkpoint")
    return {
        "not a cell": ([str(tmp_path / "empty"), "--input", str(good)], "not a cell folder"),
        "results folder": ([str(trained_cell.results), "--input", str(good)], "is a results folder"),
        "failed cell": ([failed, "--input", str(good)], "status 'failed'"),
        "no checkpoint": ([missing, "--input", str(good)], "has no checkpoint"),
        "damaged checkpoint": ([str(damaged), "--input", str(good)], "cannot be loaded into unet/resnet18"),
        "unreadable image": ([cell, "--input", str(corrupt)], "c.png cannot be read"),
        "unreadable video": ([cell, "--input", str(tmp_path / "broken.mp4")], "broken.mp4 cannot be"),
        "unknown input format": ([cell, "--input", str(tmp_path / "notes.txt")], "unknown format '.txt'"),
        "missing input": ([cell, "--input", str(tmp_path / "nowhere.png")], "does not exist"),
        "two images, one name": ([cell, "--input", str(twins)], "would both be written as x.png"),
        "folder without images": ([cell, "--input", str(tmp_path / "empty")], "holds no images"),
        "unknown --format": ([cell, "--input", str(good), "--format", "rgb"], "--format 'rgb' is unknown"),
        "alpha": ([cell, "--input", str(good), "--overlay", "--alpha", "1.5"], "--alpha"),
        "batch size": ([cell, "--input", str(good), "--batch-size", "0"], "--batch-size"),
        "foreign --out": ([cell, "--input", str(good), "--out-here", str(foreign)], "did not write"),
    }


def test_bad_input_is_one_sentence_exit_2_and_nothing_written(trained_cell, tmp_path):
    cases = bad_inputs(trained_cell, tmp_path / "inputs")
    for name, (arguments, phrase) in cases.items():
        parent = tmp_path / f"out-{name.replace(' ', '-')}"
        parent.mkdir()
        out = parent / "new" / "pred"  # folders made to hold the output are removed too
        if "--out-here" in arguments:
            at = arguments.index("--out-here")
            out = Path(arguments[at + 1])
            arguments = arguments[:at] + arguments[at + 2:]
        before = sorted(out.parent.rglob("*"))
        outcome = CliRunner(env=WIDE).invoke(app, ["predict", *arguments, "--out", str(out), "--device", "cpu"])
        assert outcome.exit_code == 2, (name, outcome.output)
        errors = [line for line in outcome.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and phrase in errors[0], (name, outcome.output)
        assert sorted(out.parent.rglob("*")) == before, f"{name}: something was written"


def test_an_earlier_prediction_is_replaced_only_with_force(trained_cell, tmp_path):
    image = val_images(trained_cell)[0]
    out = tmp_path / "again"
    assert predict(trained_cell.cell_dir, image, out).exit_code == 0
    first = (out / "predict.json").read_text()
    refused = predict(trained_cell.cell_dir, image, out)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert (out / "predict.json").read_text() == first
    replaced = predict(trained_cell.cell_dir, image, out, "--force", "--format", "color")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "predict.json").read_text())["format"] == "color"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no staging or old folder left behind


def test_out_inside_the_input_folder_is_refused(trained_cell, tmp_path):
    source = tmp_path / "images"
    shutil.copytree(trained_cell.val_images, source)
    outcome = predict(trained_cell.cell_dir, source, source / "pred")
    assert outcome.exit_code == 2 and "inside the --input folder" in outcome.output
    assert not (source / "pred").exists()


def test_video_without_the_video_library_says_how_to_install_it(tmp_path, monkeypatch):
    from segbench.errors import ConfigError
    from segbench.predict.inputs import plan_input

    (tmp_path / "clip.mp4").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'segbench\[video\]'"):
        plan_input(tmp_path / "clip.mp4")
