"""The contract every dataset in segbench follows.

A dataset entry is a class registered in `DATASETS` with:
- `Params`: a pydantic model (extra keys forbidden) of the options a grid file may set under the dataset (with
  `SIZE_OPTIONS` where those options decide the split sizes, so expansion can check batch sizes against them),
- `info(params) -> DatasetInfo`: class names, ignore value and palette, without reading any file,
- `prepare(params, cache_dir) -> None`: one-time work before any worker starts (e.g. generating synthetic data),
- `__init__(params, split, transform, cache_dir)`: a torch Dataset whose items are
  `(image float32 [3, H, W] normalised, label int64 [H, W] with values in 0..C-1 or ignore_index)`,
  with `.info` (DatasetInfo), `.files` (list of (image path, label path)), `.sample_id(i)` (a stable name such as
  the Cityscapes stem), `.load_raw(i)` (PIL RGB image, uint8 label [H, W] already mapped to 0..C-1 / ignore_index,
  before any transform) and `.class_pixel_counts()` (int64 [C] over the split at native resolution, cached).

`PairDataset` implements the contract for every layout of paired image and label files: checked loading
(`load_raw`), label reading, value checks against the class table, cached class pixel counts, and the split scan
that `segbench data check` reports on. A loader only says where its files are (`scan_split`), what its classes are
(`info`) and how a label file's values become targets (`label_mapping`, one lookup table); `ClassFileDataset` adds
the classes-file options. Finding and reading the files is pairs.py's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict
from torch.utils.data import Dataset

from segbench.atomic import atomic_write_json
from segbench.datasets.labels import IGNORE_INDEX, LabelMapping
from segbench.datasets.pairs import Pair, Scan, read_image, read_label_file, target_counts
from segbench.datasets.palettes import ClassTable, describe_values, read_class_table
from segbench.datasets.transforms import EvalTransform
from segbench.errors import DatasetError

PRED_FORMATS = ("trainids", "labelids")  # how prediction PNGs encode classes (see PairDataset.prediction_mapping)

Transform = Callable[[Image.Image, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def default_cache_dir() -> Path:
    """Where generated data and small caches live: `$SEGBENCH_CACHE`, else `~/.cache/segbench`."""
    if os.environ.get("SEGBENCH_CACHE"):
        return Path(os.environ["SEGBENCH_CACHE"]).expanduser()
    return Path.home() / ".cache" / "segbench"


class DatasetParams(BaseModel):
    """Base of every dataset's options; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The options that decide how many images each split has, for a dataset whose options alone decide it (the
    # generated synthetic scenes: {"train": "n_train", ...}); empty where only reading the folder can tell.
    SIZE_OPTIONS: ClassVar[dict[str, str]] = {}

    root: Path | None = None

    def split_sizes(self) -> dict[str, int] | None:
        """Images per split, known from the options before any file exists (every split the dataset has); None
        when only reading the dataset's folder can tell."""
        return {split: getattr(self, option) for split, option in self.SIZE_OPTIONS.items()} or None


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a metric need to know about a dataset's label space."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    image_size: tuple[int, int] | None = None  # (H, W) when every image of the dataset has this size

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class PairDataset(Dataset):
    """Items are `(image float32 [3, H, W], label int64 [H, W])` with classes 0..C-1 and `info.ignore_index`."""

    Params: ClassVar[type[DatasetParams]]
    NAME: ClassVar[str]
    DISPLAY_NAME: ClassVar[str]
    FIX_HINT: ClassVar[str]
    EXPECTED_ROOT: ClassVar[str]  # what the root folder should hold, for the missing-root message
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "val")  # what `segbench data check` reads by default
    # Prediction file names: `<sample id>.png` or `<sample id>_*.png`; True also allows `<sample id>*.png` (the
    # cityscapesScripts rule, safe where sample ids have a fixed width).
    PREDICTION_ANY_SUFFIX: ClassVar[bool] = False

    @classmethod
    def info(cls, params: DatasetParams) -> DatasetInfo:
        raise NotImplementedError

    @classmethod
    def resolve_root(cls, params: DatasetParams, cache_dir: Path) -> Path:
        return Path(params.root).expanduser()

    @classmethod
    def prepare(cls, params: DatasetParams, cache_dir: Path) -> None:
        root = cls.resolve_root(params, cache_dir)
        if not root.is_dir():
            raise DatasetError(
                f"{cls.DISPLAY_NAME} root {root} does not exist or is not a folder; expected a folder holding "
                f"{cls.EXPECTED_ROOT} ({cls.FIX_HINT})."
            )

    def __init__(
        self,
        params: DatasetParams,
        split: str,
        transform: Transform | None = None,
        cache_dir: Path | None = None,
        *,
        strict: bool = True,
    ) -> None:
        """strict=False keeps incomplete pairs and broken entries in `self.scan` instead of raising (data check)."""
        if not isinstance(params, self.Params):
            raise TypeError(f"{type(self).__name__} needs {self.Params.__name__}, got {type(params).__name__}")
        self.params = params
        self.split = split
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.transform = transform if transform is not None else EvalTransform(pad_multiple=1)
        self.info = self.info(params)
        self.root = self.resolve_root(params, self.cache_dir)
        self.prepare(params, self.cache_dir)
        self.scan = self.scan_split()
        if strict:
            self._require_complete()
        self.files: list[Pair] = self.scan.pairs

    # -- what a loader provides -----------------------------------------------------------------------------------

    def scan_split(self) -> Scan:
        """The split's pairs and problems; raises DatasetError only when the split cannot be read at all."""
        raise NotImplementedError

    def label_mapping(self, label_path: Path) -> LabelMapping:
        """How the values of this label file become targets (one lookup table)."""
        raise NotImplementedError

    def prediction_mapping(self, pred_format: str) -> LabelMapping:
        """How prediction PNG values become targets: 'trainids' = class indices 0..C-1 (the ignore value counts as
        a prediction of an ignored label), 'labelids' = the encoding of this dataset's label files."""
        if pred_format == "labelids":
            return self.label_mapping(self.files[0][1])
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        valid = np.zeros(256, dtype=bool)
        lut[: self.info.num_classes] = np.arange(self.info.num_classes)
        valid[: self.info.num_classes] = True
        valid[self.info.ignore_index] = True
        return LabelMapping(lut, valid)

    def sample_id(self, index: int) -> str:
        """A stable name of item `index` (the image file's stem), also the name its prediction file starts with."""
        return self.files[index][0].stem

    # -- items ----------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.files)

    def load_raw(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, uint8 label [H, W] with classes 0..C-1 or the ignore index) at native resolution, checked."""
        image_path, label_path = self.files[index]
        image = read_image(image_path, self.DISPLAY_NAME)
        raw = self.read_label(label_path)
        if (raw.shape[1], raw.shape[0]) != image.size:
            raise DatasetError(
                f"{self.DISPLAY_NAME} label {label_path} is {raw.shape[1]}x{raw.shape[0]} (W x H) but its image "
                f"{image_path} is {image.size[0]}x{image.size[1]}; an image and its label must have the same size."
            )
        self.check_values(label_path, np.bincount(raw.ravel(), minlength=256))
        return image, self.label_mapping(label_path).lut[raw]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.load_raw(index)
        return self.transform(image, label)

    def load_label(self, index: int) -> np.ndarray:
        """uint8 [H, W] targets of item `index` (classes 0..C-1 or the ignore index), without reading its image."""
        label_path = self.files[index][1]
        raw = self.read_label(label_path)
        self.check_values(label_path, np.bincount(raw.ravel(), minlength=256))
        return self.label_mapping(label_path).lut[raw]

    def read_label(self, path: Path) -> np.ndarray:
        """The raw values of a single-channel label file, uint8 [H, W]; DatasetError naming the file otherwise."""
        return read_label_file(path, f"{self.DISPLAY_NAME} label")

    def bad_values(self, label_path: Path, value_counts: np.ndarray) -> list[int]:
        """Values present in the file (value_counts: int [256]) that the class table does not know."""
        return np.flatnonzero((value_counts[:256] > 0) & ~self.label_mapping(label_path).valid).tolist()

    def check_values(self, label_path: Path, value_counts: np.ndarray) -> None:
        bad = self.bad_values(label_path, value_counts)
        if bad:
            valid = describe_values(self.label_mapping(label_path).valid)
            raise DatasetError(
                f"{self.DISPLAY_NAME} label {label_path} holds value(s) {', '.join(map(str, bad))} that are not in "
                f"the class table (valid values: {valid}); re-create the label file or fix the dataset options."
            )

    # -- statistics -----------------------------------------------------------------------------------------------

    def class_pixel_counts(self, progress: Callable[[], None] | None = None, per_image: bool = False) -> np.ndarray:
        """int64 [C] (or [num_images, C] with per_image): pixels of each class over the split's labels at native
        resolution, ignore excluded. Per-image counts are what median-frequency class weights need.

        Cached in `<cache_dir>/class-pixel-counts/` under a hash of the file list (paths, sizes, modification
        times) and the label mappings, so a second call reads no image. progress: called once per label read.
        """
        path = self.cache_dir / "class-pixel-counts" / f"{self.NAME}-{self.split}-{self._files_key()}.json"
        num_classes = self.info.num_classes
        counts = None
        if path.is_file():
            try:
                counts = np.asarray(json.loads(path.read_text())["per_image"], dtype=np.int64)
                if counts.shape != (len(self.files), num_classes):
                    counts = None
            except (OSError, ValueError, KeyError, TypeError):
                counts = None  # a damaged cache file is recomputed and overwritten
        if counts is None:
            counts = np.zeros((len(self.files), num_classes), dtype=np.int64)
            for index, (_, label_path) in enumerate(self.files):
                value_counts = np.bincount(self.read_label(label_path).ravel(), minlength=256)
                self.check_values(label_path, value_counts)
                counts[index] = target_counts(value_counts, self.label_mapping(label_path), num_classes)
                if progress is not None:
                    progress()
            payload: dict[str, Any] = {
                "dataset": self.NAME,
                "split": self.split,
                "files": len(self.files),
                "classes": list(self.info.classes),
                "per_image": counts.tolist(),
            }
            try:
                atomic_write_json(path, payload)
            except OSError as error:
                warnings.warn(f"could not cache class pixel counts in {path}: {error}", stacklevel=2)
        return counts if per_image else counts.sum(axis=0)

    def _files_key(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.info.classes}\n".encode())
        for image_path, label_path in self.files:
            stat_result = label_path.stat()
            digest.update(f"{image_path}|{label_path}|{stat_result.st_size}|{stat_result.st_mtime_ns}|".encode())
            digest.update(f"{self.label_mapping(label_path).key()}\n".encode())
        return digest.hexdigest()[:16]

    def _require_complete(self) -> None:
        scan = self.scan
        if scan.broken:
            path, reason = scan.broken[0]
            raise DatasetError(
                f"{self.DISPLAY_NAME} entry {path} cannot be used ({reason}); remove or repair it "
                f"(`segbench data check` lists every such entry)."
            )
        if scan.missing_labels:
            image, expected = scan.missing_labels[0]
            more = len(scan.missing_labels) - 1
            others = f" ({more} more images lack labels)" if more else ""
            raise DatasetError(
                f"{self.DISPLAY_NAME} image {image} has no label; expected {expected}{others} ({self.FIX_HINT})."
            )
        if not scan.pairs:
            raise DatasetError(
                f"{self.DISPLAY_NAME} folder {scan.image_folder} holds no images; expected {scan.expected} "
                f"({self.FIX_HINT})."
            )


class ClassFileDataset(PairDataset):
    """A layout whose classes come from a classes file (`classes`, `label_offset`, `ignore_value` options)."""

    @classmethod
    def class_table(cls, params: DatasetParams) -> ClassTable:
        return read_class_table(params.classes, params.root, params.label_offset, params.ignore_value)

    @classmethod
    def info(cls, params: DatasetParams) -> DatasetInfo:
        table = cls.class_table(params)
        return DatasetInfo(name=cls.NAME, classes=table.classes, palette=table.palette)

    @functools.cached_property
    def mapping(self) -> LabelMapping:
        return self.class_table(self.params).mapping

    def label_mapping(self, label_path: Path) -> LabelMapping:
        return self.mapping
