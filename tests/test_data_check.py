"""`segbench data check|stats|synth` on replicas broken on purpose: every problem is found and names its file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from segbench.cli import app
from segbench.losses import class_weights_from_counts

from support.replicas import cityscapes_stems, random_rgb, save_image, write_camvid, write_cityscapes

WIDE = {"COLUMNS": "400"}  # rich wraps tables to the terminal width; keep paths on one line
H, W = 12, 20


def clean_camvid(root: Path) -> dict[str, np.ndarray]:
    """A clean CamVid replica, three pairs in train and three in val; returns the train annotations by sample id."""
    rng = np.random.default_rng(0)
    train = write_camvid(root, "train", 3, rng, size=(H, W))
    write_camvid(root, "val", 3, rng, size=(H, W))
    return train


def run(*args: str):
    return CliRunner(env=WIDE).invoke(app, [str(arg) for arg in args])


def test_clean_replica_passes(tmp_path):
    clean_camvid(tmp_path / "camvid")
    outcome = run(
        "data",
        "check",
        "--dataset",
        "camvid",
        "--root",
        tmp_path / "camvid",
        "-s",
        "train",
        "-s",
        "val",
        "--json",
        tmp_path / "r.json",
    )
    assert outcome.exit_code == 0, outcome.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and [s["pairs"] for s in report["splits"]] == [3, 3]
    assert "6 image/label pairs, no problem" in outcome.output


def test_every_kind_of_problem_is_found_with_its_file(tmp_path):
    root = tmp_path / "camvid"
    clean_camvid(root)
    train, annot = root / "train", root / "trainannot"
    rng = np.random.default_rng(1)
    # missing pair: an image without its annotation, and an annotation without its image
    save_image(train / "0016E5_00100.png", random_rgb(rng, H, W))
    save_image(annot / "0016E5_00200.png", np.zeros((H, W), dtype=np.uint8))
    # truncated image
    save_image(train / "0016E5_00300.png", random_rgb(rng, H, W))
    save_image(annot / "0016E5_00300.png", np.zeros((H, W), dtype=np.uint8))
    data = (train / "0016E5_00300.png").read_bytes()
    (train / "0016E5_00300.png").write_bytes(data[: len(data) // 2])
    # size mismatch
    save_image(annot / "0016E5_00000.png", np.zeros((H + 1, W), dtype=np.uint8))
    # label value outside the class table
    bad = np.zeros((H, W), dtype=np.uint8)
    bad[2, 3], bad[4, 5] = 40, 77
    save_image(annot / "0016E5_00001.png", bad)
    # label of the wrong mode (a colour rendering)
    save_image(annot / "0016E5_00002.png", random_rgb(rng, H, W))
    # a non-image file with an image name, and its annotation
    (train / "0016E5_00400.png").write_text("not a picture")
    save_image(annot / "0016E5_00400.png", np.zeros((H, W), dtype=np.uint8))
    # a stray file and a symlink loop
    (train / "notes.txt").write_text("hello")
    os.symlink("0016E5_00500.png", train / "0016E5_00500.png")

    outcome = run(
        "data",
        "check",
        "-d",
        "camvid",
        "--root",
        root,
        "--split",
        "train",
        "--split",
        "val",
        "--json",
        tmp_path / "report.json",
    )
    assert outcome.exit_code == 1, outcome.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert not report["ok"]
    found = {(p["kind"], Path(p["path"]).name): p["detail"] for s in report["splits"] for p in s["problems"]}
    expected = {
        ("missing_label", "0016E5_00100.png"),
        ("missing_image", "0016E5_00200.png"),
        ("truncated", "0016E5_00300.png"),
        ("size_mismatch", "0016E5_00000.png"),
        ("bad_values", "0016E5_00001.png"),
        ("wrong_mode", "0016E5_00002.png"),
        ("not_an_image", "0016E5_00400.png"),
        ("stray_file", "notes.txt"),
        ("symlink_loop", "0016E5_00500.png"),
    }
    assert set(found) == expected, found
    assert "40, 77" in found[("bad_values", "0016E5_00001.png")]
    assert "mode RGB" in found[("wrong_mode", "0016E5_00002.png")]
    assert "20x13" in found[("size_mismatch", "0016E5_00000.png")]
    assert [s["problems"] for s in report["splits"] if s["split"] == "val"] == [[]]
    for _, name in expected:  # the console listing names every file too
        assert name in outcome.output


def test_cityscapes_layout_problems(tmp_path):
    root = tmp_path / "cityscapes"
    for stem in write_cityscapes(root, "val", cityscapes_stems("ulm", 2), seed=2, size=(H, W), values=(7,)):
        (root / "gtFine" / "val" / "ulm" / f"{stem}_gtFine_polygons.json").write_text("{}")  # shipped: not stray
    save_image(root / "gtFine" / "val" / "ulm" / "ulm_000000_000009_gtFine_labelIds.png", np.zeros((H, W), np.uint8))
    (root / "gtFine" / "val" / "ulm" / "readme.md").write_text("x")
    os.symlink("..", root / "leftImg8bit" / "val" / "ulm" / "up")  # a folder link to its own parent
    outcome = run("data", "check", "-d", "cityscapes", "--root", root, "--split", "val", "--json", tmp_path / "r.json")
    assert outcome.exit_code == 1, outcome.output
    problems = json.loads((tmp_path / "r.json").read_text())["splits"][0]["problems"]
    kinds = {(p["kind"], Path(p["path"]).name) for p in problems}
    assert kinds == {
        ("missing_image", "ulm_000000_000009_gtFine_labelIds.png"),
        ("stray_file", "readme.md"),
        ("symlink_loop", "up"),
    }


def test_unusable_input_exits_2(tmp_path):
    outcome = run("data", "check", "-d", "bdd100k", "--root", tmp_path / "nowhere")
    assert outcome.exit_code == 2 and "does not exist" in outcome.output and "nowhere" in outcome.output
    outcome = run("data", "check", "-d", "bdd100k", "--root", tmp_path, "--param", "unknown_as_clas=true")
    assert outcome.exit_code == 2 and "did you mean 'unknown_as_class'" in outcome.output
    outcome = run("data", "check", "-d", "bdd100k", "--root", tmp_path, "--param", "novalue")
    assert outcome.exit_code == 2 and "key=value" in outcome.output
    outcome = run("data", "check", "-d", "bdd100k", "--root", tmp_path, "--param", "unknown_as_class=[true")
    assert outcome.exit_code == 2 and "not valid YAML" in outcome.output


def test_missing_split_folder_is_a_problem_naming_the_split(tmp_path):
    clean_camvid(tmp_path / "camvid")
    outcome = run("data", "check", "-d", "camvid", "--root", tmp_path / "camvid", "--json", tmp_path / "r.json")
    assert outcome.exit_code == 1
    test_split = json.loads((tmp_path / "r.json").read_text())["splits"][2]
    assert test_split["split"] == "test" and test_split["problems"][0]["kind"] == "split"
    assert "no test/ folder" in test_split["problems"][0]["detail"]


def test_stats_counts_shares_weights_and_plot(tmp_path):
    written = clean_camvid(tmp_path / "camvid")
    outcome = run(
        "data",
        "stats",
        "-d",
        "camvid",
        "--root",
        tmp_path / "camvid",
        "-s",
        "train",
        "-s",
        "val",
        "--plot",
        tmp_path / "shares.png",
        "--json",
        tmp_path / "stats.json",
        "--cache-dir",
        tmp_path,
    )
    assert outcome.exit_code == 0, outcome.output
    stats = json.loads((tmp_path / "stats.json").read_text())
    expected = np.zeros(11, dtype=np.int64)
    for annotation in written.values():
        expected += np.bincount(annotation[annotation != 11], minlength=11)
    assert stats["counts"]["train"] == expected.tolist()
    for method in ("inverse_freq", "median_freq"):
        assert np.allclose(stats["weights"][method], class_weights_from_counts(expected, method))
    assert (tmp_path / "shares.png").read_bytes()[:4] == b"\x89PNG"
    assert "pedestrian" in outcome.output and "inverse_freq" in outcome.output


def test_stats_refuses_a_broken_label(tmp_path):
    clean_camvid(tmp_path / "camvid")
    save_image(tmp_path / "camvid" / "valannot" / "0016E5_00001.png", np.full((H, W), 99, dtype=np.uint8))
    outcome = run("data", "stats", "-d", "camvid", "--root", tmp_path / "camvid", "--cache-dir", tmp_path)
    assert outcome.exit_code == 2 and "0016E5_00001.png" in outcome.output and "99" in outcome.output


def test_synth_writes_scenes_that_check_clean(tmp_path):
    out = tmp_path / "scenes"
    outcome = run("data", "synth", "--out", out, "--n", "3", "--n-val", "1", "--size", "32x64", "--seed", "5")
    assert outcome.exit_code == 0, outcome.output
    images = sorted((out / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))
    assert len(images) == 3 and Image.open(images[0]).size == (64, 32)
    assert len(list((out / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))) == 1
    assert run("data", "check", "-d", "cityscapes", "--root", out).exit_code == 0
    again = tmp_path / "again"
    outcome = run("data", "synth", "--out", again, "--n", "3", "--n-val", "1", "--size", "32x64", "--seed", "5")
    assert outcome.exit_code == 0, outcome.output
    assert images[0].read_bytes() == (again / images[0].relative_to(out)).read_bytes()
    outcome = run("data", "synth", "--out", tmp_path / "x", "--n", "2", "--size", "32by64")
    assert outcome.exit_code == 2 and "HxW" in outcome.output


@pytest.mark.parametrize("size", ["8x64", "32x99999"])
def test_synth_rejects_sizes_out_of_range(tmp_path, size):
    outcome = run("data", "synth", "--out", tmp_path / "x", "--n", "2", "--size", size)
    assert outcome.exit_code == 2 and "option" in outcome.output
