"""Tiny replicas of every dataset format's real layout, written by the tests themselves: one writer per format.

Each writer takes a seed or a numpy Generator (pass one Generator to several calls for one random stream), writes
real image files under `root`, and returns the labels exactly as written, keyed by sample id, so that a test can
compare a loader's output with what is on disk without reading it back through the code under test. Label values
are laid out with `shuffled`: every allowed value appears in every file that is large enough, void ones included,
with uneven counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from support.cityscapes_labels import LABEL_IDS

Seed = int | np.random.Generator
SIZE = (12, 20)  # (height, width) in pixels: small, and neither side a multiple of 32
TRAIN_IDS = np.array([*range(19), 255], dtype=np.uint8)  # BDD100K masks and Cityscapes labelTrainIds
CAMVID_VALUES = np.arange(12, dtype=np.uint8)  # 11 classes, then 11 = unlabelled


def save_image(path: Path, array: np.ndarray, **options) -> Path:
    """Write `array` ((H, W) or (H, W, 3) uint8) in the format the suffix names, creating the folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def random_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Noise, (height, width, 3) uint8."""
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def shuffled(values: Iterable[int], rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width) uint8 holding every one of `values` at least once (when they fit), in a random layout.

    The pixels left over are drawn at random, so that the values' counts differ: a test that swaps two classes'
    counts then fails.
    """
    pool = np.array(list(values), dtype=np.uint8)
    pixels = height * width
    if pixels > len(pool):
        pool = np.concatenate([pool, rng.choice(pool, pixels - len(pool))])
    return rng.permutation(pool[:pixels]).reshape(height, width)


def cityscapes_stems(city: str, count: int) -> list[str]:
    """`count` Cityscapes file stems of one city: `<city>_<sequence>_000019`."""
    return [f"{city}_{sequence:06d}_000019" for sequence in range(count)]


def write_cityscapes(
    root: Path,
    split: str,
    stems: Sequence[str],
    seed: Seed = 0,
    *,
    size: tuple[int, int] = SIZE,
    kind: str = "labelIds",
    values: Iterable[int] | None = None,
) -> dict[str, np.ndarray]:
    """leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and gtFine/<split>/<city>/<stem>_gtFine_<kind>.png.

    `kind` is "labelIds" (default values: every id 0..33) or "labelTrainIds" (default: 0..18 and 255); the city is
    the stem's first part. Returns {stem: label (H, W) uint8}.
    """
    rng = np.random.default_rng(seed)
    if values is None:
        values = LABEL_IDS if kind == "labelIds" else TRAIN_IDS
    written = {}
    for stem in stems:
        city = stem.split("_")[0]
        save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", random_rgb(rng, *size))
        written[stem] = shuffled(values, rng, *size)
        save_image(root / "gtFine" / split / city / f"{stem}_gtFine_{kind}.png", written[stem])
    return written


def write_bdd100k(
    root: Path, split: str, names: Sequence[str], seed: Seed = 0, *, size: tuple[int, int] = SIZE
) -> dict[str, np.ndarray]:
    """images/10k/<split>/<name>.jpg and labels/sem_seg/masks/<split>/<name>.png (trainIds 0..18 and 255)."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in names:
        save_image(root / "images" / "10k" / split / f"{name}.jpg", random_rgb(rng, *size), quality=90)
        written[name] = shuffled(TRAIN_IDS, rng, *size)
        save_image(root / "labels" / "sem_seg" / "masks" / split / f"{name}.png", written[name])
    return written


def write_kitti(root: Path, count: int, seed: Seed = 0, *, size: tuple[int, int] = SIZE) -> dict[str, np.ndarray]:
    """training/image_2/<index>_10.png and training/semantic/<index>_10.png (Cityscapes ids 0..33).

    KITTI ships one labelled folder; the loaders split it into train and val themselves.
    """
    rng = np.random.default_rng(seed)
    written = {}
    for index in range(count):
        stem = f"{index:06d}_10"
        save_image(root / "training" / "image_2" / f"{stem}.png", random_rgb(rng, *size))
        written[stem] = shuffled(LABEL_IDS, rng, *size)
        save_image(root / "training" / "semantic" / f"{stem}.png", written[stem])
    return written


def write_camvid(
    root: Path,
    split: str,
    count: int = 2,
    seed: Seed = 0,
    *,
    size: tuple[int, int] = SIZE,
    values: Iterable[int] = CAMVID_VALUES,
) -> dict[str, np.ndarray]:
    """<split>/0016E5_<index>.png and <split>annot/0016E5_<index>.png (SegNet's layout; default values 0..11)."""
    rng = np.random.default_rng(seed)
    written = {}
    for index in range(count):
        stem = f"0016E5_{index:05d}"
        save_image(root / split / f"{stem}.png", random_rgb(rng, *size))
        written[stem] = shuffled(values, rng, *size)
        save_image(root / f"{split}annot" / f"{stem}.png", written[stem])
    return written


def write_odgt(root: Path, manifest: str, entries: Sequence[tuple[str, str, np.ndarray]], seed: Seed = 0) -> Path:
    """A CSAIL manifest `root/manifest`, one JSON line per (image path, mask path, mask (H, W) uint8) entry.

    Paths are relative to `root`; each image is noise of its mask's size. Returns the manifest's path.
    """
    rng = np.random.default_rng(seed)
    lines = []
    for image, mask, values in entries:
        save_image(root / image, random_rgb(rng, *values.shape))
        save_image(root / mask, values)
        height, width = values.shape
        lines.append(json.dumps({"fpath_img": image, "fpath_segm": mask, "width": width, "height": height}))
    (root / manifest).write_text("\n".join(lines) + "\n")
    return root / manifest


def write_folder(
    root: Path,
    names: Sequence[str],
    values: Iterable[int],
    seed: Seed = 0,
    *,
    split: str | None = None,
    mask_suffix: str = "",
    size: tuple[int, int] = SIZE,
) -> dict[str, np.ndarray]:
    """images[/<split>]/<name>.png and masks[/<split>]/<name><mask_suffix>.png; no split: the flat layout."""
    rng = np.random.default_rng(seed)
    image_dir, mask_dir = root / "images", root / "masks"
    if split is not None:
        image_dir, mask_dir = image_dir / split, mask_dir / split
    written = {}
    for name in names:
        save_image(image_dir / f"{name}.png", random_rgb(rng, *size))
        written[name] = shuffled(values, rng, *size)
        save_image(mask_dir / f"{name}{mask_suffix}.png", written[name])
    return written
