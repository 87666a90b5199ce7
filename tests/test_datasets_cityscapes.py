"""The Cityscapes loader on a tiny replica of the official layout, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import segbench.datasets.cityscapes as cityscapes_module
from segbench.datasets import (
    DATASETS,
    DatasetParams,
    EvalTransform,
    build_dataset,
    dataset_info,
    parse_dataset_params,
    prepare_dataset,
)
from segbench.errors import ConfigError, DatasetError, UnknownNameError

from support.cityscapes_labels import CLASSES, IGNORED_IN_EVAL, TRAIN_ID_OF, by_pixel
from support.replicas import cityscapes_stems, save_image, write_cityscapes

H, W = 16, 32


@pytest.fixture
def replica(tmp_path: Path) -> tuple[Path, dict]:
    """Three val frames (every id, void ones included, in each) and one train frame; returns (root, val labels)."""
    root = tmp_path / "cityscapes"
    written = write_cityscapes(
        root, "val", [*cityscapes_stems("frankfurt", 2), *cityscapes_stems("lindau", 1)], size=(H, W)
    )
    write_cityscapes(root, "train", cityscapes_stems("aachen", 1), seed=1, size=(H, W))
    return root, written


def params(root: Path) -> DatasetParams:
    return parse_dataset_params("cityscapes", {"root": str(root)})


def test_registered_with_the_dataset_contract():
    entry = DATASETS.get("cityscapes")
    assert issubclass(entry.Params, DatasetParams)
    info = dataset_info("cityscapes", params(Path("/nowhere")))  # reads no file
    assert info.classes == CLASSES and info.num_classes == 19 and info.ignore_index == 255
    assert (
        info.palette[0] == (128, 64, 128) and info.palette[10] == (70, 130, 180) and info.palette[18] == (119, 11, 32)
    )


def test_label_ids_map_to_train_ids_pixel_by_pixel(replica, tmp_path):
    root, written = replica
    dataset = build_dataset("cityscapes", params(root), "val", EvalTransform(pad_multiple=32), cache_dir=tmp_path)
    assert len(dataset) == 3
    assert [dataset.sample_id(i) for i in range(3)] == sorted(written)
    assert dataset.files[0][1].name.endswith("_gtFine_labelIds.png")
    for index in range(len(dataset)):
        image, label = dataset.load_raw(index)
        assert image.mode == "RGB" and image.size == (W, H)
        assert label.dtype == np.uint8
        assert np.array_equal(label, by_pixel(written[dataset.sample_id(index)], TRAIN_ID_OF))
        tensor_image, tensor_label = dataset[index]
        assert tensor_image.shape == (3, 32, 32) and tensor_image.dtype == torch.float32
        assert tensor_label.dtype == torch.int64
        assert np.array_equal(tensor_label[:H, :W].numpy(), label)
        assert torch.all(tensor_label[H:] == 255)


def test_void_ids_become_ignore_and_evaluated_ids_keep_their_order(replica, tmp_path):
    root, written = replica
    dataset = build_dataset("cityscapes", params(root), "val", None, cache_dir=tmp_path)
    raw = written[dataset.sample_id(0)]
    _, label = dataset.load_raw(0)
    assert np.all(label[np.isin(raw, list(IGNORED_IN_EVAL))] == 255)
    for label_id, train_id in TRAIN_ID_OF.items():
        assert np.all(label[raw == label_id] == train_id)


def test_label_train_ids_are_preferred_when_present(replica, tmp_path):
    root, written = replica
    stem = sorted(written)[0]
    train_ids = write_cityscapes(root, "val", [stem], seed=5, size=(H, W), kind="labelTrainIds")[stem]
    dataset = build_dataset("cityscapes", params(root), "val", None, cache_dir=tmp_path)
    assert dataset.files[0][1].name == f"{stem}_gtFine_labelTrainIds.png"
    assert np.array_equal(dataset.load_raw(0)[1], train_ids)  # used as they are, not mapped again
    assert dataset.files[1][1].name.endswith("_gtFine_labelIds.png")


def test_class_pixel_counts_are_exact_and_cached(replica, tmp_path, monkeypatch):
    root, written = replica
    dataset = build_dataset("cityscapes", params(root), "val", None, cache_dir=tmp_path)
    expected = np.zeros(19, dtype=np.int64)
    for label in written.values():
        mapped = by_pixel(label, TRAIN_ID_OF)
        expected += np.bincount(mapped[mapped != 255], minlength=19)
    counts = dataset.class_pixel_counts()
    assert counts.dtype == np.int64 and np.array_equal(counts, expected)
    assert len(list((tmp_path / "class-pixel-counts").glob("cityscapes-val-*.json"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("a cached call must not open any image")

    monkeypatch.setattr(cityscapes_module.Image, "open", no_reading)
    again = build_dataset("cityscapes", params(root), "val", None, cache_dir=tmp_path)
    assert np.array_equal(again.class_pixel_counts(), expected)
    per_image = again.class_pixel_counts(per_image=True)  # what median-frequency weights need
    assert per_image.shape == (len(again), 19) and np.array_equal(per_image.sum(axis=0), expected)
    by_stem = {again.sample_id(i): row for i, row in enumerate(per_image)}
    for stem, label in written.items():
        mapped = by_pixel(label, TRAIN_ID_OF)
        assert np.array_equal(by_stem[stem], np.bincount(mapped[mapped != 255], minlength=19))


def test_class_pixel_counts_cache_follows_file_changes(replica, tmp_path):
    root, written = replica
    dataset = build_dataset("cityscapes", params(root), "val", None, cache_dir=tmp_path)
    before = dataset.class_pixel_counts()
    stem = sorted(written)[0]
    save_image(dataset.files[0][1], np.full((H, W), 7, dtype=np.uint8))  # all road
    after = build_dataset("cityscapes", params(root), "val", None, cache_dir=tmp_path).class_pixel_counts()
    assert after[0] == before[0] - (written[stem] == 7).sum() + H * W


# -- errors: one DatasetError sentence naming the path -------------------------------------------------------------


def test_missing_root(tmp_path):
    root = tmp_path / "not-there"
    for call in (
        lambda: prepare_dataset("cityscapes", params(root), tmp_path),
        lambda: build_dataset("cityscapes", params(root), "val", None, tmp_path),
    ):
        with pytest.raises(DatasetError, match="does not exist") as error:
            call()
        assert str(root) in str(error.value)


def test_missing_split(replica, tmp_path):
    root, _ = replica
    with pytest.raises(DatasetError, match="no leftImg8bit/test folder") as error:
        build_dataset("cityscapes", params(root), "test", None, tmp_path)
    message = str(error.value)
    assert str(root) in message and "splits found: train, val" in message and "gtFine_trainvaltest.zip" in message


def test_empty_split(replica, tmp_path):
    root, _ = replica
    (root / "leftImg8bit" / "test" / "berlin").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images") as error:
        build_dataset("cityscapes", params(root), "test", None, tmp_path)
    assert str(root / "leftImg8bit" / "test") in str(error.value)


def test_image_without_label(replica, tmp_path):
    root, written = replica
    stem = sorted(written)[1]
    city = stem.split("_")[0]
    (root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match="has no label") as error:
        build_dataset("cityscapes", params(root), "val", None, tmp_path)
    assert str(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png") in str(error.value)
    assert f"{stem}_gtFine_labelIds.png" in str(error.value)


def test_label_value_outside_the_table(replica, tmp_path):
    root, written = replica
    dataset = build_dataset("cityscapes", params(root), "val", None, tmp_path)  # values are checked at load time
    bad = written[dataset.sample_id(1)].copy()
    bad[3, 4] = 77
    save_image(dataset.files[1][1], bad)
    dataset.load_raw(0)
    for call in (lambda: dataset.load_raw(1), lambda: dataset[1], dataset.class_pixel_counts):
        with pytest.raises(DatasetError, match="value") as error:
            call()
        assert str(dataset.files[1][1]) in str(error.value) and "77" in str(error.value)


def test_train_id_file_with_a_label_id_value(replica, tmp_path):
    root, written = replica
    stem = sorted(written)[0]
    path = root / "gtFine" / "val" / stem.split("_")[0] / f"{stem}_gtFine_labelTrainIds.png"
    save_image(path, np.full((H, W), 26, dtype=np.uint8))  # a label id (car) in a trainIds file
    dataset = build_dataset("cityscapes", params(root), "val", None, tmp_path)
    with pytest.raises(DatasetError, match="26") as error:
        dataset.load_raw(0)
    assert str(path) in str(error.value)


def test_image_label_size_mismatch(replica, tmp_path):
    root, _ = replica
    dataset = build_dataset("cityscapes", params(root), "val", None, tmp_path)
    save_image(dataset.files[2][1], np.full((H, W + 2), 7, dtype=np.uint8))
    with pytest.raises(DatasetError, match="same size") as error:
        dataset.load_raw(2)
    assert str(dataset.files[2][1]) in str(error.value) and str(dataset.files[2][0]) in str(error.value)


# -- parameters ----------------------------------------------------------------------------------------------------


def test_params_are_typed_and_frozen(tmp_path):
    parsed = params(tmp_path)
    assert parsed.root == tmp_path
    with pytest.raises(Exception):  # noqa: B017  (pydantic's frozen-instance error)
        parsed.root = Path("/elsewhere")


def test_params_errors_are_one_config_error_sentence():
    with pytest.raises(ConfigError, match="needs option 'root'"):
        parse_dataset_params("cityscapes", {})
    with pytest.raises(ConfigError, match="has no option 'rot' \\(did you mean 'root'\\?\\)"):
        parse_dataset_params("cityscapes", {"root": "/data", "rot": 1})
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_dataset_params("cityscapes", ["root"])
    with pytest.raises(UnknownNameError, match="did you mean 'cityscapes'"):
        parse_dataset_params("citiscapes", {})
