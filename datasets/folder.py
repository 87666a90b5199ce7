"""The generic `folder` dataset, for users' own data:

    <root>/images/<split>/<name>.<jpg|png|...>   +   <root>/masks/<split>/<name><mask_suffix>.png
    or, with val_fraction set, flat <root>/images/ and <root>/masks/ split deterministically (see `split_names`)

with a classes file (see `palettes.py`), a label offset and an ignore value.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from segbench.datasets.base import ClassFileDataset, DatasetParams
from segbench.datasets.pairs import (
    MASK_EXTENSIONS,
    Scan,
    is_image,
    list_folder,
    match_by_key,
    split_names,
    wanted_files,
)
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError


class FolderParams(DatasetParams):
    root: Path = Field(description="the folder that holds images/ and masks/")
    classes: Path | tuple[str, ...] = Field(
        description="a classes file (CSV with name/id/color columns, YAML or text; relative to root) or a list "
        "of class names in class-index order"
    )
    images: str = Field("images", description="the image folder inside root")
    masks: str = Field("masks", description="the mask folder inside root")
    mask_suffix: str = Field("", description="what a mask's name adds to its image's stem, e.g. '_mask'")
    label_offset: int = Field(
        0,
        ge=-255,
        le=255,
        description="added to mask values to give class indices (-1: 0 is ignored, 1..K are classes 0..K-1)",
    )
    ignore_value: int | None = Field(255, ge=0, le=255, description="the mask value meaning 'not labelled', or null")
    val_fraction: float | None = Field(
        None, ge=0, lt=1, description="for flat images/ and masks/ folders: the share of images in the val split"
    )
    split_seed: int = Field(0, ge=0, description="the seed of the flat-layout split")


@DATASETS.register("folder")
class FolderDataset(ClassFileDataset):
    """Users' own data: images/ and masks/ with per-split subfolders, or flat with a deterministic split."""

    Params: ClassVar[type[DatasetParams]] = FolderParams
    NAME: ClassVar[str] = "folder"
    DISPLAY_NAME: ClassVar[str] = "folder dataset"
    FIX_HINT: ClassVar[str] = "see docs/datasets.md for the folder layout"
    EXPECTED_ROOT: ClassVar[str] = "images/ and masks/"

    def scan_split(self) -> Scan:
        image_root, mask_root = self.root / self.params.images, self.root / self.params.masks
        suffix = self.params.mask_suffix
        if (image_root / self.split).is_dir():
            image_dir, mask_dir, keep = image_root / self.split, mask_root / self.split, None
        elif self.params.val_fraction is not None and self.split in ("train", "val", "trainval"):
            image_dir, mask_dir = image_root, mask_root
            keep = set(
                split_names(
                    [p.stem for p in list_folder(image_root)[0] if is_image(p)],
                    self.split,
                    self.params.val_fraction,
                    self.params.split_seed,
                )
            )
        else:
            found = sorted(p.name for p in list_folder(image_root)[1])
            raise DatasetError(
                f"{self.DISPLAY_NAME} root {self.root} has no {self.params.images}/{self.split} folder (splits found: "
                f"{', '.join(found) or 'none'}); expected {image_root}/{self.split}/<name>.png|jpg, or flat "
                f"{image_root}/ and {mask_root}/ folders with the val_fraction option."
            )
        scan = Scan(image_dir, f"{image_dir}/<name>.png|jpg and {mask_dir}/<name>{suffix}.png")
        images = wanted_files(scan, image_dir, is_image, "not an image file")
        masks = wanted_files(
            scan,
            mask_dir,
            lambda p: p.suffix.lower() in MASK_EXTENSIONS and p.stem.endswith(suffix),
            f"not a <name>{suffix}.png mask",
        )
        if keep is not None:
            images = [p for p in images if p.stem in keep]
            masks = [p for p in masks if p.stem[: len(p.stem) - len(suffix)] in keep]
        match_by_key(
            scan,
            images,
            masks,
            lambda p: p.stem,
            lambda p: p.stem[: len(p.stem) - len(suffix)],
            lambda p: mask_dir / f"{p.stem}{suffix}.png",
            lambda p: image_dir / f"{p.stem}.png",
        )
        return scan

