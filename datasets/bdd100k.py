"""BDD100K semantic segmentation (the 10K release), read from the official folder layout.

    <root>/images/10k/<split>/<name>.jpg
    <root>/labels/sem_seg/masks/<split>/<name>.png     single channel: trainIds 0..18 as Cityscapes, 255 = unknown

By default 255 is ignored. `unknown_as_class: true` trains and scores it as a 20th class "unknown" (index 19), as
one seed study did; this changes what mIoU means, so it is never the default.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from segbench.datasets.base import DatasetInfo, DatasetParams, PairDataset
from segbench.datasets.labels import IGNORE_INDEX, TRAIN_CLASSES, TRAIN_PALETTE, LabelMapping, train_id_identity
from segbench.datasets.pairs import Scan, list_folder, match_by_key, wanted_files
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError

UNKNOWN = "unknown"
UNKNOWN_COLOR = (0, 0, 0)  # the colour of 255 in BDD100K's own colormaps


class BDD100KParams(DatasetParams):
    root: Path = Field(description="the BDD100K folder that holds images/10k/ and labels/sem_seg/masks/")
    unknown_as_class: bool = Field(False, description="true to train and score 255 (unknown) as class 19 'unknown'")


@functools.cache
def bdd_mapping(unknown_as_class: bool) -> LabelMapping:
    """Mask values 0..18 -> themselves; 255 -> ignore, or -> 19 with unknown_as_class."""
    identity = train_id_identity()
    lut = identity.lut.copy()
    if unknown_as_class:
        lut[IGNORE_INDEX] = len(TRAIN_CLASSES)
    lut.flags.writeable = False
    return LabelMapping(lut, identity.valid)


@DATASETS.register("bdd100k")
class BDD100K(PairDataset):
    """Items are `(image, label)` with the 19 Cityscapes trainIds (plus 'unknown' = 19 when asked) and 255 = ignore."""

    Params: ClassVar[type[DatasetParams]] = BDD100KParams
    NAME: ClassVar[str] = "bdd100k"
    DISPLAY_NAME: ClassVar[str] = "BDD100K"
    FIX_HINT: ClassVar[str] = (
        "download the 10K images (bdd100k_images_10k.zip) and the semantic segmentation labels "
        "(bdd100k_sem_seg_labels_trainval.zip) from bdd-data.berkeley.edu and unzip both into the root"
    )
    EXPECTED_ROOT: ClassVar[str] = "images/10k/ and labels/sem_seg/masks/"

    @classmethod
    def info(cls, params: DatasetParams) -> DatasetInfo:
        if params.unknown_as_class:
            return DatasetInfo(cls.NAME, (*TRAIN_CLASSES, UNKNOWN), (*TRAIN_PALETTE, UNKNOWN_COLOR))
        return DatasetInfo(cls.NAME, TRAIN_CLASSES, TRAIN_PALETTE)

    def label_mapping(self, label_path: Path) -> LabelMapping:
        return bdd_mapping(self.params.unknown_as_class)

    def scan_split(self) -> Scan:
        image_dir = self.root / "images" / "10k" / self.split
        mask_dir = self.root / "labels" / "sem_seg" / "masks" / self.split
        if not image_dir.is_dir():
            found = sorted(p.name for p in list_folder(self.root / "images" / "10k")[1])
            raise DatasetError(
                f"{self.DISPLAY_NAME} root {self.root} has no images/10k/{self.split} folder (splits found: "
                f"{', '.join(found) or 'none'}); expected {image_dir}/<name>.jpg ({self.FIX_HINT})."
            )
        scan = Scan(image_dir, f"{image_dir}/<name>.jpg with masks {mask_dir}/<name>.png")
        images = wanted_files(scan, image_dir, lambda p: p.suffix.lower() in (".jpg", ".jpeg"), "not a .jpg image")
        masks = wanted_files(scan, mask_dir, lambda p: p.suffix.lower() == ".png", "not a .png mask")
        match_by_key(
            scan,
            images,
            masks,
            lambda p: p.stem,
            lambda p: p.stem,
            lambda p: mask_dir / f"{p.stem}.png",
            lambda p: image_dir / f"{p.stem}.jpg",
        )
        return scan
