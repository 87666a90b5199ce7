"""The built-in synthetic street scenes: determinism, class balance, Cityscapes format, atomic preparation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segbench.datasets.synthetic as synthetic_module
from segbench.datasets import EvalTransform, build_dataset, dataset_info, parse_dataset_params, prepare_dataset
from segbench.errors import ConfigError, DatasetError

from support.cityscapes_labels import TRAIN_ID_OF, by_pixel

TINY = {"n_train": 4, "n_val": 2, "height": 64, "width": 128}
# Cityscapes label ids of the classes checked below (written out, not taken from the loader's table).
ROAD, SIDEWALK, BUILDING, POLE, LIGHT, SIGN, VEGETATION, SKY, PERSON = 7, 8, 11, 17, 19, 20, 21, 23, 24
LABEL_IDS = set(range(34)) | {255}


def tiny(**overrides):
    return parse_dataset_params("synthetic", TINY | overrides)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """(cache folder, dataset root) of one tiny generated set, shared by the read-only tests."""
    cache = tmp_path_factory.mktemp("cache")
    prepare_dataset("synthetic", tiny(), cache)
    (root,) = [path for path in cache.iterdir() if path.name.startswith("synthetic-")]
    return cache, root


def raw_labels(root: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path)) for path in sorted(root.glob("gtFine/*/synth/*_gtFine_labelIds.png"))]


def test_cityscapes_layout_with_label_ids_on_disk(generated):
    _, root = generated
    images = sorted(path.name for path in root.glob("leftImg8bit/train/synth/*.png"))
    assert images == [f"synth_000000_{i:06d}_leftImg8bit.png" for i in range(4)]
    assert len(list(root.glob("leftImg8bit/val/synth/*_leftImg8bit.png"))) == 2
    labels = raw_labels(root)
    assert len(labels) == 6 and all(label.dtype == np.uint8 and label.shape == (64, 128) for label in labels)
    values = set(np.unique(np.concatenate([label.ravel() for label in labels])).tolist())
    assert values <= LABEL_IDS and {ROAD, SKY, BUILDING} <= values  # ids (road = 7), not trainIds


def test_labels_read_back_as_train_ids(generated):
    cache, root = generated
    dataset = build_dataset("synthetic", tiny(), "train", EvalTransform(pad_multiple=32), cache)
    assert len(dataset) == 4 and dataset.info.name == "synthetic" and dataset.info.num_classes == 19
    for index in range(len(dataset)):
        raw = np.asarray(Image.open(dataset.files[index][1]))
        _, label = dataset.load_raw(index)
        assert np.array_equal(label, by_pixel(raw, TRAIN_ID_OF))
        image, tensor_label = dataset[index]
        assert image.shape == (3, 64, 128) and image.dtype == torch.float32 and tensor_label.dtype == torch.int64


def test_at_least_twelve_classes_with_realistic_imbalance(generated):
    _, root = generated
    pixels = np.concatenate([label.ravel() for label in raw_labels(root)])
    share = {value: count / pixels.size for value, count in zip(*np.unique(pixels, return_counts=True), strict=True)}
    present = {value for value in share if value in TRAIN_ID_OF}
    assert len(present) >= 12, sorted(present)
    assert share.get(ROAD, 0) + share.get(SKY, 0) + share.get(BUILDING, 0) + share.get(VEGETATION, 0) > 0.55
    assert share.get(ROAD, 0) > 0.15 and share.get(BUILDING, 0) > 0.05
    for small in (POLE, SIGN, LIGHT, PERSON):  # thin or small things stay at a few percent at most
        assert share.get(small, 0) < 0.05 and share.get(small, 0) < share[ROAD] / 6, small


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(generated, tmp_path):
    _, first = generated
    prepare_dataset("synthetic", tiny(root=tmp_path / "again"), tmp_path)
    assert files_of(first) == files_of(tmp_path / "again")
    prepare_dataset("synthetic", tiny(root=tmp_path / "other", seed=1), tmp_path)
    other = files_of(tmp_path / "other")
    assert other.keys() == files_of(first).keys()
    assert all(other[name] != data for name, data in files_of(first).items())


@pytest.mark.slow  # worker processes (3 s)
def test_parallel_generation_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_module, "PARALLEL_MIN_IMAGES", 0)
    params = tiny(n_train=3, n_val=2, height=32, width=64)
    (tmp_path / "serial").mkdir()
    (tmp_path / "parallel").mkdir()
    synthetic_module.generate(tmp_path / "serial", params, workers=1)
    synthetic_module.generate(tmp_path / "parallel", params, workers=2)
    assert files_of(tmp_path / "serial") == files_of(tmp_path / "parallel")


def test_prepare_runs_once_and_leaves_no_partial_folder(generated):
    cache, root = generated
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["params"]["n_train"] == 4
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*.png")}
    prepare_dataset("synthetic", tiny(), cache)
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*.png")} == stamps
    assert [path.name for path in cache.iterdir() if "partial" in path.name] == []


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = synthetic_module.render_files
    monkeypatch.setattr(synthetic_module, "render_files", failing_render)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("synthetic", tiny(), tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the dataset folder nor its partial copy
    monkeypatch.setattr(synthetic_module, "render_files", original)
    prepare_dataset("synthetic", tiny(), tmp_path)
    assert len(build_dataset("synthetic", tiny(), "val", None, tmp_path)) == 2


def test_concurrent_preparers_produce_one_complete_folder(tmp_path):
    errors = []

    def prepare() -> None:
        try:
            prepare_dataset("synthetic", tiny(n_train=2, n_val=1), tmp_path)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=prepare) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (root,) = list(tmp_path.iterdir())
    assert len(list(root.rglob("*.png"))) == 6 and (root / "synthetic.json").is_file()


def test_a_foreign_folder_is_not_mistaken_for_a_dataset(tmp_path):
    root = tmp_path / "mine"
    (root / "leftImg8bit").mkdir(parents=True)
    with pytest.raises(DatasetError, match="synthetic.json") as error:
        prepare_dataset("synthetic", tiny(root=root), tmp_path)
    assert str(root) in str(error.value)


def test_a_folder_generated_with_other_settings_is_rejected(generated, tmp_path):
    _, root = generated
    with pytest.raises(DatasetError, match="other settings") as error:
        build_dataset("synthetic", tiny(root=root, seed=5), "train", None, tmp_path)
    assert str(root) in str(error.value)


def test_class_pixel_counts_match_the_labels(generated):
    cache, root = generated
    dataset = build_dataset("synthetic", tiny(), "val", None, cache)
    expected = np.zeros(19, dtype=np.int64)
    for _, label_path in dataset.files:
        raw = np.asarray(Image.open(label_path))
        for label_id, train_id in TRAIN_ID_OF.items():
            expected[train_id] += int((raw == label_id).sum())
    assert np.array_equal(dataset.class_pixel_counts(), expected)


def test_default_root_is_in_the_cache_and_depends_on_the_params(tmp_path):
    cls = synthetic_module.SyntheticStreets
    first, second = cls.resolve_root(tiny(), tmp_path), cls.resolve_root(tiny(seed=3), tmp_path)
    assert first.parent == tmp_path and first.name.startswith("synthetic-") and first != second
    assert dataset_info("synthetic", tiny()).classes[0] == "road"


def test_default_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    from segbench.datasets import default_cache_dir

    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("SEGBENCH_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "segbench"


@pytest.mark.parametrize(
    ("options", "pieces"),
    [
        ({"n_train": -1}, ["'synthetic'", "'n_train'", "-1", "from 1 to 100000"]),
        ({"height": "tall"}, ["'height'", "'tall'", "pixels"]),
        ({"n_trian": 5}, ["has no option 'n_trian'", "did you mean 'n_train'"]),
    ],
)
def test_bad_params_become_one_config_error_sentence(options, pieces):
    with pytest.raises(ConfigError) as error:
        parse_dataset_params("synthetic", options)
    message = str(error.value)
    assert all(piece in message for piece in pieces), message
    assert message.count(". ") == 0 and message.endswith(".")


def test_defaults():
    params = parse_dataset_params("synthetic", None)
    assert (params.n_train, params.n_val, params.seed, params.root) == (300, 60, 0, None)
