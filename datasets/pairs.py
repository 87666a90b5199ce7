"""Finding and reading image/label pairs: folder listing that reports broken entries, pairing by key, deterministic
train/val splits of unsplit layouts, and checked reading of image and label files.

The dataset base class that uses them (`PairDataset`) lives in base.py with the contract it implements.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.datasets.labels import IGNORE_INDEX, LabelMapping
from segbench.errors import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG invents values at class boundaries

Pair = tuple[Path, Path]


@dataclass
class Scan:
    """What a split's folders hold: complete pairs, and everything that is not one (for `segbench data check`)."""

    image_folder: Path
    expected: str  # the layout, for messages: e.g. "<root>/images/10k/val/<name>.jpg"
    pairs: list[Pair] = field(default_factory=list)
    missing_labels: list[Pair] = field(default_factory=list)  # (image, the label it should have)
    missing_images: list[Pair] = field(default_factory=list)  # (label, the image it should have)
    stray: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it does not belong)
    broken: list[tuple[Path, str]] = field(default_factory=list)  # (entry, e.g. "symlink loop")
    declared_sizes: dict[Path, tuple[int, int]] = field(default_factory=dict)  # image -> (W, H) from a manifest


def list_folder(folder: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """(files, subfolders, broken entries) of `folder`, sorted by name; links are followed once.

    A link that cannot be followed (a loop, a dangling target) and a folder link to one of its own parents are
    returned as broken entries with the reason instead of being skipped silently.
    """
    files: list[Path] = []
    folders: list[Path] = []
    broken: list[tuple[Path, str]] = []
    if not folder.is_dir():
        return files, folders, broken
    real_parent = os.path.realpath(folder)
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda item: item.name):
            path = Path(entry.path)
            try:
                info = os.stat(path)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    broken.append((path, "symlink loop"))
                elif entry.is_symlink():
                    broken.append((path, f"dangling symlink to {os.readlink(path)}"))
                else:
                    broken.append((path, f"cannot be read ({error.strerror})"))
                continue
            if stat.S_ISDIR(info.st_mode):
                target = os.path.realpath(path)
                if entry.is_symlink() and (real_parent + os.sep).startswith(target + os.sep):
                    broken.append((path, f"symlink loop (links to {target}, a parent of its own folder)"))
                else:
                    folders.append(path)
            elif stat.S_ISREG(info.st_mode):
                files.append(path)
            else:
                broken.append((path, "not a regular file"))
    return files, folders, broken


def wanted_files(scan: Scan, folder: Path, wanted: Callable[[Path], bool], unwanted_reason: str) -> list[Path]:
    """The files of `folder` that `wanted` accepts, sorted by name; the scan records the folder's broken entries,
    and the files `wanted` refuses as stray with `unwanted_reason` (e.g. "not a .png mask")."""
    files, _, broken = list_folder(folder)
    scan.broken += broken
    kept = [path for path in files if wanted(path)]
    scan.stray += [(path, unwanted_reason) for path in files if not wanted(path)]
    return kept


def match_by_key(
    scan: Scan,
    images: list[Path],
    labels: list[Path],
    image_key: Callable[[Path], str],
    label_key: Callable[[Path], str],
    expected_label: Callable[[Path], Path],
    expected_image: Callable[[Path], Path],
) -> None:
    """Pair images and labels whose keys are equal; fill the scan's pairs and missing lists (in image order)."""
    by_key = {label_key(label): label for label in labels}
    image_keys = set()
    for image in images:
        key = image_key(image)
        image_keys.add(key)
        label = by_key.get(key)
        if label is None:
            scan.missing_labels.append((image, expected_label(image)))
        else:
            scan.pairs.append((image, label))
    for key, label in by_key.items():
        if key not in image_keys:
            scan.missing_images.append((label, expected_image(label)))


def split_names(
    names: list[str], split: str, val_fraction: float, seed: int, val_names: tuple[str, ...] | None = None
) -> list[str]:
    """A deterministic train/val split of `names` (for layouts without one, e.g. KITTI's 200 labelled images).

    val = `val_names` when given, else the first round(len * val_fraction) names of the sorted names shuffled by
    `numpy.random.default_rng(seed)`; train = the rest; trainval = all. Same names and settings, same split.
    """
    ordered = sorted(names)
    if val_names is not None:
        val = set(val_names)
    else:
        permutation = np.random.default_rng(seed).permutation(len(ordered))
        val = {ordered[i] for i in permutation[: round(len(ordered) * val_fraction)]}
    if split == "val":
        return [name for name in ordered if name in val]
    if split == "train":
        return [name for name in ordered if name not in val]
    return ordered


def target_counts(value_counts: np.ndarray, mapping: LabelMapping, num_classes: int) -> np.ndarray:
    """int64 [C] class pixels from a file's value histogram (int [256]) through its mapping (ignore dropped)."""
    target = mapping.lut.astype(np.int64)
    scored = (target != IGNORE_INDEX) & mapping.valid
    counts = np.zeros(num_classes, dtype=np.int64)
    np.add.at(counts, target[scored], value_counts[:256][scored])
    return counts


def read_image(path: Path, what: str = "dataset") -> Image.Image:
    try:
        with Image.open(path) as handle:
            return handle.convert("RGB")
    except OSError as error:
        raise DatasetError(f"{what} image {path} cannot be read ({error}).") from None


def read_label_file(path: Path, what: str) -> np.ndarray:
    """uint8 [H, W] values of a single-channel image (mode L, P, I or I;16 with values up to 255)."""
    try:
        with Image.open(path) as handle:
            mode = handle.mode
            raw = np.asarray(handle)
    except OSError as error:
        raise DatasetError(f"{what} {path} cannot be read as an image ({error}).") from None
    if raw.ndim != 2:
        raise DatasetError(
            f"{what} {path} has mode {mode} and shape {raw.shape}; expected a single-channel image of class "
            "values (mode L or P), not a colour rendering."
        )
    if raw.dtype != np.uint8:
        if raw.dtype == bool or raw.min() < 0 or raw.max() > 255:
            raise DatasetError(
                f"{what} {path} holds values outside 0..255 (dtype {raw.dtype}, min {raw.min()}, max {raw.max()}); "
                "expected 8-bit class values."
            )
        raw = raw.astype(np.uint8)
    return raw


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS
