"""Cityscapes (fine annotations), read from the official folder layout.

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (preferred when present)
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (mapped id -> trainId)

Class modes (`classes` option, see `labels.class_mode`): the 19 trainIds (default), the 7 non-void categories, or a
subset of the 19 with the rest ignored or merged into one `background` class (`rest_as`). Pairs are checked when the
dataset is built (file existence only); label values and sizes when an item is loaded.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import ClassVar, Literal

from PIL import Image  # noqa: F401  (tests/test_datasets_cityscapes.py patches Image.open through this module)
from pydantic import Field, ValidationInfo, field_validator

from segbench.datasets.base import DatasetInfo, DatasetParams, PairDataset
from segbench.datasets.labels import (
    IGNORE_INDEX,
    ClassMode,
    LabelMapping,
    check_subset,
    class_mode,
    compose,
    id_to_train_id,
    train_id_identity,
)
from segbench.datasets.pairs import Scan, list_folder
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError

IMAGE_SUFFIX = "_leftImg8bit.png"
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
# Shipped beside the label files and not read by segbench (so not stray files either).
OTHER_GT_SUFFIXES = ("_gtFine_color.png", "_gtFine_instanceIds.png", "_gtFine_polygons.json")


class CityscapesClassesParams(DatasetParams):
    """The class options of every dataset labelled with Cityscapes ids (Cityscapes, KITTI)."""

    classes: str | tuple[str, ...] = Field(
        "trainids",
        description="'trainids' (the 19 evaluated classes), 'categories' (the 7 non-void categories) or a list "
        "of trainId class names such as [road, car]",
    )
    rest_as: Literal["ignore", "background"] = Field(
        "ignore", description="'ignore' or 'background': what the evaluated classes a class list leaves out become"
    )

    @field_validator("classes")
    @classmethod
    def _known_mode(cls, classes: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(classes, str):
            if classes not in ("trainids", "categories"):
                raise ValueError(f"expected 'trainids', 'categories' or a list of class names, got {classes!r}")
        else:
            check_subset(classes, "ignore")
        return classes

    @field_validator("rest_as")
    @classmethod
    def _subset_only(cls, rest_as: str, info: ValidationInfo) -> str:
        classes = info.data.get("classes")
        if rest_as != "ignore" and isinstance(classes, str):
            raise ValueError("rest_as applies to a list of classes only")
        if isinstance(classes, tuple):
            check_subset(classes, rest_as)
        return rest_as


class CityscapesParams(CityscapesClassesParams):
    root: Path = Field(description="the Cityscapes folder that holds leftImg8bit/ and gtFine/")


def cityscapes_class_mode(params: DatasetParams) -> ClassMode:
    # The synthetic dataset reuses the Cityscapes loader with params that have no class options: the 19 trainIds.
    return class_mode(getattr(params, "classes", "trainids"), getattr(params, "rest_as", "ignore"))


def cityscapes_info(name: str, params: DatasetParams) -> DatasetInfo:
    mode = cityscapes_class_mode(params)
    return DatasetInfo(name=name, classes=mode.classes, palette=mode.palette, ignore_index=IGNORE_INDEX)


def label_id_prediction_mapping(params: DatasetParams) -> LabelMapping:
    """Predictions in label ids (0..33) -> targets; an ignored id (e.g. 0, 9 parking) -> ignore, scored as a miss.

    255 is not a label id, so unlike in a ground-truth file it is an error in a prediction (as in cityscapesScripts).
    """
    ids = id_to_train_id()
    valid = ids.valid.copy()
    valid[IGNORE_INDEX] = False
    return compose(LabelMapping(ids.lut, valid), cityscapes_class_mode(params).train_lut)


@DATASETS.register("cityscapes")
class Cityscapes(PairDataset):
    """Items are `(image float32 [3, H, W], label int64 [H, W])` with the mode's classes and 255 = ignore."""

    Params: ClassVar[type[DatasetParams]] = CityscapesParams
    NAME: ClassVar[str] = "cityscapes"
    DISPLAY_NAME: ClassVar[str] = "Cityscapes"
    FIX_HINT: ClassVar[str] = (
        "download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com "
        "and unzip both into the root"
    )
    EXPECTED_ROOT: ClassVar[str] = "leftImg8bit/ and gtFine/"
    PREDICTION_ANY_SUFFIX: ClassVar[bool] = True  # stems have a fixed width: <stem>*.png is unambiguous

    @classmethod
    def info(cls, params: DatasetParams) -> DatasetInfo:
        return cityscapes_info(cls.NAME, params)

    @functools.cached_property
    def mappings(self) -> dict[str, LabelMapping]:
        """Label file suffix -> one table from its values to targets; the first suffix found for an image wins."""
        train_lut = cityscapes_class_mode(self.params).train_lut
        return {
            TRAIN_IDS_SUFFIX: compose(train_id_identity(), train_lut),
            LABEL_IDS_SUFFIX: compose(id_to_train_id(), train_lut),
        }

    def label_mapping(self, label_path: Path) -> LabelMapping:
        return next(mapping for suffix, mapping in self.mappings.items() if label_path.name.endswith(suffix))

    def prediction_mapping(self, pred_format: str) -> LabelMapping:
        if pred_format == "labelids":
            return label_id_prediction_mapping(self.params)
        return super().prediction_mapping(pred_format)

    def sample_id(self, index: int) -> str:
        """The Cityscapes stem of item `index`, e.g. 'aachen_000000_000019'."""
        return self.files[index][0].name[: -len(IMAGE_SUFFIX)]

    # -- discovery ------------------------------------------------------------------------------------------------

    def scan_split(self) -> Scan:
        image_dir = self.root / "leftImg8bit" / self.split
        if not SPLIT_NAME.fullmatch(self.split) or not image_dir.is_dir():
            found = sorted(p.name for p in (self.root / "leftImg8bit").glob("*") if p.is_dir())
            raise DatasetError(
                f"{self.DISPLAY_NAME} root {self.root} has no leftImg8bit/{self.split} folder "
                f"(splits found: {', '.join(found) or 'none'}); expected "
                f"{self.root}/leftImg8bit/{self.split}/<city>/*{IMAGE_SUFFIX} ({self.FIX_HINT})."
            )
        label_dir = self.root / "gtFine" / self.split
        scan = Scan(image_dir, f"{image_dir}/<city>/<city>_<seq>_<frame>{IMAGE_SUFFIX}")
        cities: dict[str, None] = {}
        for folder in (image_dir, label_dir):
            files, subfolders, broken = list_folder(folder)
            scan.broken += broken
            scan.stray += [(path, "a file outside the <city>/ folders") for path in files]
            cities |= dict.fromkeys(path.name for path in subfolders)
        for city in sorted(cities):
            self._scan_city(scan, image_dir / city, label_dir / city)
        return scan

    def _scan_city(self, scan: Scan, image_dir: Path, label_dir: Path) -> None:
        image_files, _, broken = list_folder(image_dir)
        label_files, _, label_broken = list_folder(label_dir)
        scan.broken += broken + label_broken
        images = {p.name[: -len(IMAGE_SUFFIX)]: p for p in image_files if p.name.endswith(IMAGE_SUFFIX)}
        scan.stray += [(p, f"not a *{IMAGE_SUFFIX} image") for p in image_files if not p.name.endswith(IMAGE_SUFFIX)]
        labels: dict[str, dict[str, Path]] = {}
        for path in label_files:
            suffix = next((s for s in self.mappings if path.name.endswith(s)), None)
            if suffix is not None:
                labels.setdefault(path.name[: -len(suffix)], {})[suffix] = path
            elif not path.name.endswith(OTHER_GT_SUFFIXES):
                scan.stray += [(path, f"not a *{LABEL_IDS_SUFFIX} or *{TRAIN_IDS_SUFFIX} label")]
        for stem, image in images.items():
            found = labels.get(stem, {})
            label = next((found[suffix] for suffix in self.mappings if suffix in found), None)
            if label is None:
                scan.missing_labels.append((image, label_dir / f"{stem}{LABEL_IDS_SUFFIX}"))
            else:
                scan.pairs.append((image, label))
        for stem, found in labels.items():
            if stem not in images:
                scan.missing_images += [(path, image_dir / f"{stem}{IMAGE_SUFFIX}") for path in found.values()]
