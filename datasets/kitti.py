"""KITTI semantic segmentation (data_semantics), read from the official folder layout.

    <root>/training/image_2/<name>.png      about 1242x375 (varies by a few pixels)
    <root>/training/semantic/<name>.png     uint8 Cityscapes label *ids*, mapped through the Cityscapes table

KITTI has 200 labelled images and no val split, so segbench splits them deterministically (`split_names`): `val`
is `val_images` when given, else round(200 * val_fraction) images drawn with `split_seed` from the sorted names;
`train` is the rest and `trainval` all of them. The Cityscapes class modes (`classes`, `rest_as`) apply unchanged.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from segbench.datasets.base import DatasetInfo, DatasetParams, PairDataset
from segbench.datasets.cityscapes import (
    CityscapesClassesParams,
    cityscapes_class_mode,
    cityscapes_info,
    label_id_prediction_mapping,
)
from segbench.datasets.labels import LabelMapping, compose, id_to_train_id
from segbench.datasets.pairs import Scan, match_by_key, split_names, wanted_files
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError

SPLITS = ("train", "val", "trainval")


class KittiParams(CityscapesClassesParams):
    root: Path = Field(description="the KITTI data_semantics folder that holds training/image_2 and training/semantic")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="the share of the 200 labelled images in the val split")
    split_seed: int = Field(0, ge=0, description="the seed that draws the val images")
    val_images: tuple[str, ...] | None = Field(
        None, description="explicit val image names (e.g. 000000_10.png or 000000_10), instead of val_fraction"
    )

    @field_validator("val_images")
    @classmethod
    def _stems(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if names is None else tuple(name.removesuffix(".png") for name in names)


@DATASETS.register("kitti")
class Kitti(PairDataset):
    """Items are `(image, label)` with the Cityscapes class mode's classes and 255 = ignore."""

    Params: ClassVar[type[DatasetParams]] = KittiParams
    NAME: ClassVar[str] = "kitti"
    DISPLAY_NAME: ClassVar[str] = "KITTI"
    FIX_HINT: ClassVar[str] = "download data_semantics.zip from cvlibs.net/datasets/kitti and unzip it into the root"
    EXPECTED_ROOT: ClassVar[str] = "training/image_2/ and training/semantic/"

    @classmethod
    def info(cls, params: DatasetParams) -> DatasetInfo:
        return cityscapes_info(cls.NAME, params)

    @functools.cached_property
    def mapping(self) -> LabelMapping:
        return compose(id_to_train_id(), cityscapes_class_mode(self.params).train_lut)

    def label_mapping(self, label_path: Path) -> LabelMapping:
        return self.mapping

    def prediction_mapping(self, pred_format: str) -> LabelMapping:
        if pred_format == "labelids":
            return label_id_prediction_mapping(self.params)
        return super().prediction_mapping(pred_format)

    def scan_split(self) -> Scan:
        image_dir = self.root / "training" / "image_2"
        label_dir = self.root / "training" / "semantic"
        if self.split not in SPLITS:
            raise DatasetError(
                f"{self.DISPLAY_NAME} has no split '{self.split}'; its 200 labelled images form the splits "
                f"{', '.join(SPLITS)} (testing/ has no labels)."
            )
        if not image_dir.is_dir():
            raise DatasetError(
                f"{self.DISPLAY_NAME} root {self.root} has no training/image_2 folder; expected "
                f"{image_dir}/<name>.png ({self.FIX_HINT})."
            )
        scan = Scan(image_dir, f"{image_dir}/<name>.png with labels {label_dir}/<name>.png")
        images = wanted_files(scan, image_dir, lambda p: p.suffix == ".png", "not a .png image")
        labels = wanted_files(scan, label_dir, lambda p: p.suffix == ".png", "not a .png label")
        stems = [p.stem for p in images]
        unknown = sorted(set(self.params.val_images or ()) - set(stems))
        if unknown:
            raise DatasetError(
                f"{self.DISPLAY_NAME} option val_images names {unknown[0]}.png, which is not in {image_dir} "
                f"({len(unknown)} unknown name(s)); list names such as {stems[0] if stems else '000000_10'}.png."
            )
        keep = set(
            split_names(stems, self.split, self.params.val_fraction, self.params.split_seed, self.params.val_images)
        )
        match_by_key(
            scan,
            [p for p in images if p.stem in keep],
            [p for p in labels if p.stem in keep or p.stem not in stems],
            lambda p: p.stem,
            lambda p: p.stem,
            lambda p: label_dir / p.name,
            lambda p: image_dir / p.name,
        )
        return scan
