"""`segbench data check` and `segbench data stats`: what is wrong with a dataset folder, and what is in it.

`check_dataset` opens every split without stopping at the first problem (`strict=False`), decodes every image and
label file completely, once, and collects each problem with the file it concerns: missing pairs, unreadable,
truncated or non-image files, labels of the wrong mode, size mismatches, values outside the class table, stray
files and links that cannot be followed. `class_statistics` counts class pixels per split exactly as training does
(`class_pixel_counts`, cached) and derives the class weights segbench would use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from segbench.datasets.base import DatasetParams, PairDataset, default_cache_dir
from segbench.datasets.pairs import target_counts
from segbench.datasets.palettes import describe_values
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError

# kind -> what it means, in the order reports list them.
PROBLEM_KINDS: dict[str, str] = {
    "split": "the split cannot be read",
    "missing_label": "image without a label",
    "missing_image": "label without an image",
    "not_an_image": "a file with an image name that is not an image",
    "truncated": "a truncated or empty image file",
    "unreadable": "a file that cannot be decoded",
    "wrong_mode": "a label that is not single-channel",
    "size_mismatch": "image and label sizes differ",
    "bad_values": "label values outside the class table",
    "symlink_loop": "a symlink loop",
    "broken_entry": "a dangling link or an entry that is not a file",
    "stray_file": "a file that does not belong to the layout",
}
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8", b"BM", b"II*\x00", b"MM\x00*", b"GIF8")
LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")  # single-channel modes that hold class values

Progress = Callable[[str, int, int], None]  # (split, files done, files in all)


@dataclass
class Problem:
    kind: str
    path: Path
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path), "detail": self.detail}


@dataclass
class SplitReport:
    split: str
    images: int = 0
    labels: int = 0
    pairs: int = 0
    problems: list[Problem] = field(default_factory=list)
    class_pixels: np.ndarray | None = None  # int64 [C] over the readable, valid labels

    def as_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "images": self.images,
            "labels": self.labels,
            "pairs": self.pairs,
            "problems": [problem.as_dict() for problem in self.problems],
            "class_pixels": None if self.class_pixels is None else self.class_pixels.tolist(),
        }


@dataclass
class CheckReport:
    dataset: str
    root: Path
    classes: tuple[str, ...]
    splits: list[SplitReport]

    @property
    def problems(self) -> list[Problem]:
        return [problem for split in self.splits for problem in split.problems]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "classes": list(self.classes),
            "ok": not self.problems,
            "splits": [split.as_dict() for split in self.splits],
        }


def open_split(
    name: str, params: DatasetParams, split: str, cache_dir: Path | None = None, strict: bool = True
) -> PairDataset:
    """The dataset `name` for one split; DatasetError for a dataset that is not read from image/label files."""
    entry = DATASETS.get(name)
    if not issubclass(entry, PairDataset):
        raise DatasetError(f"dataset '{name}' is not read from image and label files, so it cannot be checked.")
    return entry(params, split, None, cache_dir if cache_dir is not None else default_cache_dir(), strict=strict)


def check_dataset(
    name: str,
    params: DatasetParams,
    splits: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """Read every file of every split once and report each problem with its file.

    splits: default the dataset's usual splits (`SPLITS`). Raises DatasetError only when the input is unusable as a
    whole (a missing root); a split that cannot be read is a problem of kind 'split'.
    """
    entry = DATASETS.get(name)
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    entry.prepare(params, cache_dir)
    info = entry.info(params)
    reports = []
    for split in splits or list(entry.SPLITS):
        report = SplitReport(split)
        try:
            dataset = open_split(name, params, split, cache_dir, strict=False)
        except DatasetError as error:
            report.problems.append(Problem("split", entry.resolve_root(params, cache_dir), str(error)))
        else:
            check_split(dataset, report, progress)
        reports.append(report)
    return CheckReport(name, entry.resolve_root(params, cache_dir), info.classes, reports)


def check_split(dataset: PairDataset, report: SplitReport, progress: Progress | None = None) -> None:
    scan = dataset.scan
    report.pairs = len(scan.pairs)
    report.images = len(scan.pairs) + len(scan.missing_labels)
    report.labels = len(scan.pairs) + len(scan.missing_images)
    add = report.problems.append
    for image, expected in scan.missing_labels:
        add(Problem("missing_label", image, f"no label; expected {expected}"))
    for label, expected in scan.missing_images:
        add(Problem("missing_image", label, f"no image; expected {expected}"))
    for path, reason in scan.broken:
        add(Problem("symlink_loop" if "loop" in reason else "broken_entry", path, reason))
    for path, reason in scan.stray:
        add(Problem("stray_file", path, reason))
    if not scan.pairs and not scan.missing_labels:
        add(Problem("split", scan.image_folder, f"no images; expected {scan.expected}"))
    counts = np.zeros(dataset.info.num_classes, dtype=np.int64)
    total = 2 * len(scan.pairs)
    for done, (image_path, label_path) in enumerate(scan.pairs):
        image_size = _check_image(image_path, scan.declared_sizes.get(image_path), add)
        if progress is not None:
            progress(dataset.split, 2 * done + 1, total)
        value_counts = _check_label(dataset, label_path, image_path, image_size, add)
        if value_counts is not None:
            counts += target_counts(value_counts, dataset.label_mapping(label_path), dataset.info.num_classes)
        if progress is not None:
            progress(dataset.split, 2 * done + 2, total)
    report.class_pixels = counts


def _decode(path: Path) -> tuple[Image.Image | None, Problem | None]:
    """The fully decoded image, or the problem that stops it (read once: header and every pixel)."""
    try:
        if path.stat().st_size == 0:
            return None, Problem("truncated", path, "empty file (0 bytes)")
        with Image.open(path) as handle:
            handle.load()
            return handle, None
    except UnidentifiedImageError:
        head = path.read_bytes()[:12]
        if head.startswith(IMAGE_SIGNATURES) or head[8:12] == b"WEBP":
            return None, Problem(
                "unreadable", path, "starts like an image file but its header cannot be decoded (truncated or damaged)"
            )
        return None, Problem("not_an_image", path, f"has an image name but is not an image (first bytes {head!r})")
    except (OSError, SyntaxError, ValueError) as error:
        kind = "truncated" if "truncated" in str(error).lower() or "broken" in str(error).lower() else "unreadable"
        return None, Problem(kind, path, f"cannot be decoded ({error})")


def _check_image(path: Path, declared: tuple[int, int] | None, add: Callable[[Problem], None]) -> tuple | None:
    image, problem = _decode(path)
    if problem is not None:
        add(problem)
        return None
    if declared is not None and declared != image.size:
        add(
            Problem(
                "size_mismatch",
                path,
                f"image is {image.size[0]}x{image.size[1]} (W x H) but the manifest says {declared[0]}x{declared[1]}",
            )
        )
    return image.size


def _check_label(
    dataset: PairDataset, path: Path, image_path: Path, image_size: tuple | None, add: Callable[[Problem], None]
) -> np.ndarray | None:
    """The label's value histogram (int64 [>= 256]) when it is usable, else None after adding its problems."""
    label, problem = _decode(path)
    if problem is not None:
        add(problem)
        return None
    if label.mode not in LABEL_MODES:
        add(
            Problem(
                "wrong_mode",
                path,
                f"mode {label.mode} with {len(label.getbands())} channel(s); expected a "
                "single-channel label image (mode L or P) of class values",
            )
        )
        return None
    if image_size is not None and label.size != image_size:
        add(
            Problem(
                "size_mismatch",
                path,
                f"label is {label.size[0]}x{label.size[1]} (W x H) but its image "
                f"{image_path} is {image_size[0]}x{image_size[1]}",
            )
        )
    values = np.asarray(label)
    if values.size and (values.min() < 0 or values.max() > 255):
        add(Problem("bad_values", path, f"values up to {values.max()} in a {label.mode} image; expected 8-bit values"))
        return None
    value_counts = np.bincount(values.astype(np.int64).ravel(), minlength=256)
    bad = dataset.bad_values(path, value_counts)
    if bad:
        valid = describe_values(dataset.label_mapping(path).valid)
        add(
            Problem(
                "bad_values",
                path,
                f"value(s) {', '.join(map(str, bad))} are not in the class table (valid values: {valid})",
            )
        )
        return None
    return value_counts


@dataclass
class ClassStatistics:
    classes: tuple[str, ...]
    counts: dict[str, np.ndarray]  # split -> int64 [C] class pixels (ignore excluded)
    weights: dict[str, np.ndarray]  # method -> float64 [C], from the train split as training computes them
    weights_split: str | None


def class_statistics(
    name: str,
    params: DatasetParams,
    splits: list[str] | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> ClassStatistics:
    """Class pixel counts per split (the cached counts training uses) and the class weights of every method."""
    from segbench.losses import CLASS_WEIGHT_METHODS, class_weights_from_counts

    entry = DATASETS.get(name)
    counts: dict[str, np.ndarray] = {}
    per_image: dict[str, np.ndarray] = {}
    for split in splits or list(entry.SPLITS):
        dataset = open_split(name, params, split, cache_dir)
        state = {"done": 0}

        def advance(split: str = split, total: int = len(dataset), state: dict = state) -> None:
            state["done"] += 1
            if progress is not None:
                progress(split, state["done"], total)

        per_image[split] = dataset.class_pixel_counts(progress=advance, per_image=True)
        counts[split] = per_image[split].sum(axis=0)
    weights_split = "train" if "train" in counts else None
    weights = {}
    if weights_split is not None and counts[weights_split].any():
        # Per-image counts: median-frequency weights need the pixels of the images in which each class occurs.
        weights = {method: class_weights_from_counts(per_image[weights_split], method)
                   for method in CLASS_WEIGHT_METHODS}
    return ClassStatistics(entry.info(params).classes, counts, weights, weights_split)
