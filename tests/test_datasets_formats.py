"""Every dataset format on a tiny replica of its real layout, written here: mappings checked pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segbench.cell.evaluate import evaluate_model
from segbench.datasets import DATASETS, EvalTransform, build_dataset, dataset_info, parse_dataset_params
from segbench.datasets.base import DatasetInfo
from segbench.errors import ConfigError, DatasetError

from support.cityscapes_labels import CATEGORIES, CATEGORY_OF_ID, CLASSES, TRAIN_ID_OF, by_pixel
from support.replicas import (
    cityscapes_stems,
    save_image,
    shuffled,
    write_bdd100k,
    write_camvid,
    write_cityscapes,
    write_folder,
    write_kitti,
    write_odgt,
)

CAMVID = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
H, W = 12, 20


def build(name: str, split: str = "val", transform=None, cache: Path | None = None, **options):
    return build_dataset(name, parse_dataset_params(name, options), split, transform, cache)


def raw_labels(dataset) -> dict[str, np.ndarray]:
    return {dataset.sample_id(i): np.asarray(Image.open(dataset.files[i][1])) for i in range(len(dataset))}


# -- Cityscapes class modes ----------------------------------------------------------------------------------------


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "cityscapes"
    for split in ("train", "val"):
        write_cityscapes(root, split, cityscapes_stems("bonn", 2), rng, size=(H, W))
    return root


def test_cityscapes_categories_pixel_by_pixel(cityscapes, tmp_path):
    dataset = build("cityscapes", cache=tmp_path, root=cityscapes, classes="categories")
    assert dataset.info.classes == CATEGORIES and len(dataset.info.palette) == 7
    table = {label_id: CATEGORIES.index(CATEGORY_OF_ID[label_id]) for label_id in TRAIN_ID_OF}
    for index, raw in enumerate(raw_labels(dataset).values()):
        label = dataset.load_raw(index)[1]
        assert np.array_equal(label, by_pixel(raw, table))
        assert np.all(label[np.isin(raw, [0, 1, 2, 3, 4, 5, 6])] == 255)  # void is ignored
        assert np.all(label[np.isin(raw, [9, 10, 14, 15, 16, 18, 29, 30])] == 255)  # so are ignoreInEval ids


def test_cityscapes_subset_with_rest_ignored(cityscapes, tmp_path):
    dataset = build("cityscapes", cache=tmp_path, root=cityscapes, classes=["car", "road"])
    assert dataset.info.classes == ("car", "road")
    assert dataset.info.palette == ((0, 0, 142), (128, 64, 128))
    for index, raw in enumerate(raw_labels(dataset).values()):
        assert np.array_equal(dataset.load_raw(index)[1], by_pixel(raw, {26: 0, 7: 1}))


def test_cityscapes_subset_with_rest_as_background(cityscapes, tmp_path):
    dataset = build("cityscapes", cache=tmp_path, root=cityscapes, classes=["road"], rest_as="background")
    assert dataset.info.classes == ("road", "background")
    table = {label_id: 0 if label_id == 7 else 1 for label_id in TRAIN_ID_OF}  # void and ignored ids stay 255
    expected_counts = np.zeros(2, dtype=np.int64)
    for index, raw in enumerate(raw_labels(dataset).values()):
        expected = by_pixel(raw, table)
        assert np.array_equal(dataset.load_raw(index)[1], expected)
        expected_counts += np.bincount(expected[expected != 255], minlength=2)
    assert np.array_equal(dataset.class_pixel_counts(), expected_counts)


def test_cityscapes_train_id_files_give_the_same_targets_in_every_mode(cityscapes, tmp_path):
    stem = "bonn_000000_000019"
    label_dir = cityscapes / "gtFine" / "val" / "bonn"
    ids = np.asarray(Image.open(label_dir / f"{stem}_gtFine_labelIds.png"))
    save_image(label_dir / f"{stem}_gtFine_labelTrainIds.png", by_pixel(ids, TRAIN_ID_OF))
    for options in ({"classes": "categories"}, {"classes": ["road", "sky"], "rest_as": "background"}, {}):
        with_train_ids = build("cityscapes", cache=tmp_path, root=cityscapes, **options)
        assert with_train_ids.files[0][1].name.endswith("_labelTrainIds.png")
        (label_dir / f"{stem}_gtFine_labelTrainIds.png").rename(tmp_path / "aside.png")
        with_ids = build("cityscapes", cache=tmp_path, root=cityscapes, **options)
        (tmp_path / "aside.png").rename(label_dir / f"{stem}_gtFine_labelTrainIds.png")
        assert np.array_equal(with_train_ids.load_raw(0)[1], with_ids.load_raw(0)[1])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"classes": "category"}, "expected 'trainids', 'categories'"),
        ({"classes": ["road", "roads"]}, "'roads' is not one of the 19 evaluated classes"),
        ({"classes": ["road", "road"]}, "listed twice"),
        ({"classes": []}, "at least one class"),
        ({"classes": "categories", "rest_as": "background"}, "applies to a list of classes only"),
        ({"classes": ["road"], "rest_as": "rest"}, "option 'rest_as'"),
        ({"classes": list(CLASSES), "rest_as": "background"}, "no pixel is rest"),
    ],
)
def test_cityscapes_class_option_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        parse_dataset_params("cityscapes", {"root": "/nowhere", **options})


# -- BDD100K -------------------------------------------------------------------------------------------------------


@pytest.fixture
def bdd(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "bdd100k"
    for split in ("train", "val"):
        write_bdd100k(root, split, ("0a0a0b1a-7c39d841", "0a0c3694-24b5193a"), rng, size=(H, W))
    return root


def test_bdd100k_default_ignores_unknown(bdd, tmp_path):
    dataset = build("bdd100k", cache=tmp_path, root=bdd)
    assert dataset.info.num_classes == 19 and dataset.info.classes[0] == "road" and len(dataset.info.palette) == 19
    assert [path.suffix for path, _ in dataset.files] == [".jpg", ".jpg"]
    identity = {value: value for value in range(19)}
    for index, raw in enumerate(raw_labels(dataset).values()):
        image, label = dataset.load_raw(index)
        assert image.size == (W, H) and np.array_equal(label, by_pixel(raw, identity))


def test_bdd100k_unknown_as_class(bdd, tmp_path):
    dataset = build("bdd100k", cache=tmp_path, root=bdd, unknown_as_class=True)
    assert dataset.info.classes[-1] == "unknown" and dataset.info.num_classes == 20 and len(dataset.info.palette) == 20
    table = {value: value for value in range(19)} | {255: 19}
    for index, raw in enumerate(raw_labels(dataset).values()):
        label = dataset.load_raw(index)[1]
        assert np.array_equal(label, by_pixel(raw, table)) and not np.any(label == 255)
    counts = dataset.class_pixel_counts()
    assert counts.shape == (20,) and counts[19] == sum(int((raw == 255).sum()) for raw in raw_labels(dataset).values())


def test_bdd100k_value_outside_the_table_names_file_and_value(bdd, tmp_path):
    mask = bdd / "labels" / "sem_seg" / "masks" / "val" / "0a0c3694-24b5193a.png"
    bad = np.asarray(Image.open(mask)).copy()
    bad[0, 0] = 19  # 19 is not a BDD100K trainId (only with unknown_as_class is it produced, never read)
    save_image(mask, bad)
    dataset = build("bdd100k", cache=tmp_path, root=bdd)
    with pytest.raises(DatasetError, match=r"value\(s\) 19 .*valid values: 0-18, 255") as error:
        dataset.load_raw(1)
    assert str(mask) in str(error.value)


def test_bdd100k_missing_mask_and_missing_split(bdd, tmp_path):
    (bdd / "labels" / "sem_seg" / "masks" / "val" / "0a0a0b1a-7c39d841.png").unlink()
    with pytest.raises(DatasetError, match="has no label; expected .*masks/val/0a0a0b1a-7c39d841.png"):
        build("bdd100k", cache=tmp_path, root=bdd)
    with pytest.raises(DatasetError, match=r"no images/10k/test folder \(splits found: train, val\)"):
        build("bdd100k", "test", cache=tmp_path, root=bdd)


# -- KITTI ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def kitti(tmp_path: Path) -> Path:
    root = tmp_path / "kitti"
    write_kitti(root, 10, seed=2, size=(15, 41))  # KITTI frames are wide and short
    return root


def test_kitti_maps_cityscapes_ids(kitti, tmp_path):
    dataset = build("kitti", "trainval", cache=tmp_path, root=kitti)
    assert len(dataset) == 10 and dataset.info.num_classes == 19
    for index, raw in enumerate(raw_labels(dataset).values()):
        assert np.array_equal(dataset.load_raw(index)[1], by_pixel(raw, TRAIN_ID_OF))
    road = build("kitti", "trainval", cache=tmp_path, root=kitti, classes=["road"], rest_as="background")
    assert road.info.classes == ("road", "background")
    raw = raw_labels(road)[road.sample_id(0)]
    assert np.array_equal(road.load_raw(0)[1], by_pixel(raw, {i: int(i != 7) for i in TRAIN_ID_OF}))


def test_kitti_split_is_deterministic_and_configurable(kitti, tmp_path):
    def names(split: str, **options) -> list[str]:
        dataset = build("kitti", split, cache=tmp_path, root=kitti, **options)
        return [dataset.sample_id(i) for i in range(len(dataset))]

    val, train = names("val", val_fraction=0.3), names("train", val_fraction=0.3)
    assert len(val) == 3 and len(train) == 7 and not set(val) & set(train)
    assert sorted(val + train) == [f"{i:06d}_10" for i in range(10)]
    assert names("val", val_fraction=0.3) == val  # same settings, same split
    assert any(names("val", val_fraction=0.3, split_seed=seed) != val for seed in (1, 2, 3))
    explicit = names("val", val_images=["000004_10.png", "000007_10"])
    assert explicit == ["000004_10", "000007_10"]
    assert "000004_10" not in names("train", val_images=["000004_10.png", "000007_10"])
    with pytest.raises(DatasetError, match="val_images names 000099_10.png"):
        build("kitti", "val", cache=tmp_path, root=kitti, val_images=["000099_10"])
    with pytest.raises(DatasetError, match="no split 'test'"):
        build("kitti", "test", cache=tmp_path, root=kitti)


# -- CamVid --------------------------------------------------------------------------------------------------------


def test_camvid_eleven_classes_and_unlabelled_ignored(tmp_path):
    root = tmp_path / "camvid"
    write_camvid(root, "test", seed=3, size=(H, W))
    dataset = build("camvid", "test", cache=tmp_path, root=root)
    assert dataset.info.classes == CAMVID and dataset.info.palette[3] == (128, 64, 128)
    for index, raw in enumerate(raw_labels(dataset).values()):
        assert np.array_equal(dataset.load_raw(index)[1], by_pixel(raw, {v: v for v in range(11)}))
    annotation = dataset.files[0][1]
    save_image(annotation, np.full((H, W), 12, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"value\(s\) 12 ") as error:
        dataset.load_raw(0)
    assert str(annotation) in str(error.value)


class ConstantModel(torch.nn.Module):
    """Predicts class 2 everywhere, padding included; one dummy parameter so that .to() works."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], self.num_classes, *images.shape[2:])
        logits[:, 2] = 1.0
        return logits + self.dummy


def test_camvid_360x480_is_padded_with_ignore_and_padding_is_never_scored(tmp_path):
    root = tmp_path / "camvid"
    write_camvid(root, "val", seed=3, size=(360, 480))
    dataset = build("camvid", "val", EvalTransform(pad_multiple=32), tmp_path, root=root)
    image, label = dataset[0]
    assert image.shape == (3, 384, 480) and label.shape == (384, 480)
    assert torch.all(label[360:] == 255) and torch.all(image[:, 360:] == 0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    result = evaluate_model(ConstantModel(11), loader, dataset.info, torch.device("cpu"), torch.no_grad())
    expected = np.zeros((11, 11), dtype=np.int64)  # scored on the original 360x480 pixels only
    for raw in raw_labels(dataset).values():
        expected[:, 2] += np.bincount(raw[raw != 11].ravel(), minlength=11)
    assert np.array_equal(result.matrix.numpy(), expected)
    assert result.metrics["num_pixels"] == sum(int((raw != 11).sum()) for raw in raw_labels(dataset).values())


# -- CSAIL .odgt manifests -----------------------------------------------------------------------------------------


def test_odgt_csail_convention_with_offset_minus_one(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "ade"
    root.mkdir()
    (root / "object_info.csv").write_text(
        "Idx,Ratio,Train,Val,Name\n1,0.1,1,1,wall\n2,0.1,1,1,building\n3,0.1,1,1,sky\n"
    )
    masks = [shuffled(np.arange(4), rng, H, W) for _ in range(2)]  # 0 = other, 1..3 = classes
    write_odgt(
        root,
        "validation.odgt",
        [(f"images/val/a{i}.jpg", f"annotations/val/a{i}.png", m) for i, m in enumerate(masks)],
        rng,
    )
    options = {"root": root, "classes": "object_info.csv", "label_offset": -1, "manifests": {"val": "validation.odgt"}}
    dataset = build("odgt", cache=tmp_path, **options)
    assert dataset.info.classes == ("wall", "building", "sky") and len(dataset.info.palette) == 3
    for index, mask in enumerate(masks):
        assert np.array_equal(dataset.load_raw(index)[1], by_pixel(mask, {1: 0, 2: 1, 3: 2}))
    save_image(root / "annotations/val/a1.png", np.full((H, W), 4, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"a1.png holds value\(s\) 4 "):
        dataset.load_raw(1)


def test_odgt_zero_based_ids_with_a_class_list_csv(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "bdd-csail"
    (root / "classes.csv").parent.mkdir(parents=True)
    (root / "classes.csv").write_text(
        "class_name,train_id,category,hasInstances,ignoreInEval,color\n"
        'unlabeled,255,void,0,1,"(0, 0, 0)"\nroad,0,flat,0,0,"(128, 64, 128)"\ncar,2,vehicle,1,0,#00008e\n'
        'sidewalk,1,flat,0,0,"244,35,232"\n'
    )
    mask = shuffled((0, 1, 2, 255), rng, H, W)
    write_odgt(root, "train.odgt", [("img/x.jpg", "seg/x.png", mask)], rng)
    dataset = build("odgt", "train", cache=tmp_path, root=root, classes="classes.csv")
    assert dataset.info.classes == ("road", "sidewalk", "car")  # ordered by id, the 255 row dropped
    assert dataset.info.palette == ((128, 64, 128), (244, 35, 232), (0, 0, 142))
    assert np.array_equal(dataset.load_raw(0)[1], mask)
    assert dataset.sample_id(0) == "x"


def test_odgt_yaml_classes_and_manifest_errors(tmp_path):
    rng = np.random.default_rng(6)
    root = tmp_path / "odgt"
    root.mkdir()
    (root / "classes.yaml").write_text("classes:\n  - {name: road, color: [1, 2, 3]}\n  - car\n")
    write_odgt(root, "val.odgt", [("i/a.png", "s/a.png", shuffled((0, 1, 255), rng, H, W))], rng)
    dataset = build("odgt", cache=tmp_path, root=root, classes="classes.yaml")
    assert dataset.info.classes == ("road", "car") and dataset.info.palette[0] == (1, 2, 3)
    with pytest.raises(DatasetError, match=r"no manifest .*train.odgt"):
        build("odgt", "train", cache=tmp_path, root=root, classes="classes.yaml")
    (root / "val.odgt").write_text('{"fpath_img": "i/a.png"}\n')
    with pytest.raises(DatasetError, match="val.odgt line 1 is not a JSON object"):
        build("odgt", cache=tmp_path, root=root, classes="classes.yaml")
    with pytest.raises(DatasetError, match=r"classes file .*missing.csv does not exist"):
        dataset_info("odgt", parse_dataset_params("odgt", {"root": str(root), "classes": "missing.csv"}))
    (root / "ids.csv").write_text("name,id\nroad,0\ncar,5\n")
    with pytest.raises(DatasetError, match="expected each of 0..1 exactly once"):
        dataset_info("odgt", parse_dataset_params("odgt", {"root": str(root), "classes": "ids.csv"}))


# -- generic folder ------------------------------------------------------------------------------------------------


def test_folder_with_split_folders_and_mask_suffix(tmp_path):
    root = tmp_path / "mine"
    masks = write_folder(root, ("b", "a"), (0, 1, 255), seed=7, split="val", mask_suffix="_mask", size=(H, W))
    (root / "classes.txt").write_text("# my classes\nlane\nbackground\n")
    dataset = build("folder", cache=tmp_path, root=root, classes="classes.txt", mask_suffix="_mask")
    assert dataset.info.classes == ("lane", "background") and len(dataset.info.palette) == 2
    assert [dataset.sample_id(i) for i in range(2)] == ["a", "b"]
    assert np.array_equal(dataset.load_raw(0)[1], masks["a"])
    with pytest.raises(DatasetError, match="no images/train folder"):
        build("folder", "train", cache=tmp_path, root=root, classes="classes.txt")


def test_folder_flat_layout_with_offset_and_a_deterministic_split(tmp_path):
    root = tmp_path / "flat"
    write_folder(root, [f"im{index}" for index in range(5)], (0, 1, 2), seed=8, size=(H, W))
    options = {"root": root, "classes": ["lane", "curb"], "label_offset": -1, "ignore_value": None, "val_fraction": 0.4}
    val, train = build("folder", "val", cache=tmp_path, **options), build("folder", "train", cache=tmp_path, **options)
    assert len(val) == 2 and len(train) == 3
    assert not {val.sample_id(i) for i in range(2)} & {train.sample_id(i) for i in range(3)}
    raw = np.asarray(Image.open(val.files[0][1]))
    assert np.array_equal(val.load_raw(0)[1], by_pixel(raw, {1: 0, 2: 1}))  # 0 - 1 < 0: ignored


# -- every registered dataset --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bdd100k", "camvid", "cityscapes", "folder", "kitti", "odgt"])
def test_missing_root_names_the_path(name, tmp_path):
    missing = tmp_path / "not-there"
    options = {"root": str(missing)} | ({"classes": ["a", "b"]} if name in ("folder", "odgt") else {})
    params = parse_dataset_params(name, options)
    info = dataset_info(name, params)
    assert isinstance(info, DatasetInfo) and len(info.palette) == info.num_classes and info.ignore_index == 255
    with pytest.raises(DatasetError, match="does not exist") as error:
        build_dataset(name, params, "val", None, tmp_path)
    assert str(missing) in str(error.value)
    assert name in DATASETS
