"""Built-in synthetic street scenes: the quickstart's and CI's dataset, needing no download.

`prepare()` renders the scenes once into a Cityscapes-format folder (label *ids* in `_gtFine_labelIds.png`), and the
dataset reads them back through the Cityscapes loader, so the real loading and id -> trainId path runs every time.
Rendering happens in a temporary sibling folder that is renamed into place only when complete: an interrupted run
leaves no folder that looks finished, and of two concurrent preparers one wins the rename and the other discards its
copy. Each image comes from its own generator seeded with (seed, split, index), so the files are byte-identical
however many processes render them.

The defaults (300 train / 60 val images of 96x192) are sized for a CPU: smp `Unet("resnet18")` trained from scratch
with AdamW (lr 1e-3), batch 8, 64x128 crops (scale 0.75-1.25) for about a minute of 2-thread CPU time (~240 steps)
reaches a val mIoU of about 0.5, with road and sky near 0.9 and poles, signs, people, riders and bicycles far below.
That balance rests on the per-class colour cast in `street_layout.TINT_RANGE`: weaker casts make the scenes too hard
for such a budget, none at all (flat label colours) makes them trivial. Changing it, or anything else the renderer
draws, needs a new GENERATOR_VERSION and a re-run of that check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from segbench.atomic import atomic_write_json
from segbench.datasets.base import DatasetParams
from segbench.datasets.cityscapes import IMAGE_SUFFIX, LABEL_IDS_SUFFIX, Cityscapes
from segbench.datasets.registry import DATASETS
from segbench.datasets.streets.layout import render_scene
from segbench.errors import DatasetError

# Bump when the renderer changes what it draws: the default folder name includes it, so old data is not reused.
GENERATOR_VERSION = 2
MANIFEST = "synthetic.json"
CITY = "synth"
SPLIT_CODES = {"train": 0, "val": 1}
PARALLEL_MIN_IMAGES = 48  # below this, starting worker processes costs more than it saves


class SyntheticParams(DatasetParams):
    SIZE_OPTIONS: ClassVar[dict[str, str]] = {"train": "n_train", "val": "n_val"}

    n_train: int = Field(300, ge=1, le=100_000, description="an integer number of training images from 1 to 100000")
    n_val: int = Field(60, ge=1, le=100_000, description="an integer number of validation images from 1 to 100000")
    height: int = Field(96, ge=32, le=2048, description="an integer image height in pixels from 32 to 2048")
    width: int = Field(192, ge=32, le=4096, description="an integer image width in pixels from 32 to 4096")
    seed: int = Field(0, ge=0, lt=2**63, description="a non-negative integer seed")
    domain: Literal["day", "dusk", "fog", "night"] = Field(
        "day", description="the lighting the scenes are photographed in: day, dusk, fog or night")
    root: Path | None = Field(None, description="a folder to write the scenes to (default: inside the cache folder)")

    def content_key(self) -> str:
        """Short hash of everything that decides the generated files (not where they are written)."""
        # The default domain stays out of the key, so scenes written before domains existed are still found.
        exclude = {"root"} | ({"domain"} if self.domain == DEFAULT_DOMAIN else set())
        content = self.model_dump(exclude=exclude) | {"generator": GENERATOR_VERSION}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


DEFAULT_DOMAIN = "day"


def photograph(image: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """The rendered scene (uint8 RGB) as a camera sees it in `domain`; the labels do not change. day: as rendered;
    dusk: 55 % of the light with a warm cast; fog: 55 % blended towards a light grey haze, thickest at the top of
    the frame (the far end of the street); night: 30 % of the light with sensor noise (sd 6 grey levels)."""
    if domain == DEFAULT_DOMAIN:
        return image
    pixels = image.astype(np.float32)
    if domain == "dusk":
        pixels = pixels * 0.55 + np.array([14.0, 2.0, -10.0], dtype=np.float32)
    elif domain == "fog":
        height = image.shape[0]
        weight = 0.55 * (1.0 - 0.5 * np.arange(height, dtype=np.float32) / max(height - 1, 1))[:, None, None]
        pixels = pixels * (1.0 - weight) + 200.0 * weight
    elif domain == "night":
        pixels = pixels * 0.3 + rng.normal(0.0, 6.0, size=pixels.shape).astype(np.float32)
    else:
        raise ValueError(f"unknown domain {domain!r}")
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def render_files(root: Path, split: str, indices: list[int], seed: int, height: int, width: int,
                 domain: str = DEFAULT_DOMAIN) -> None:
    """Render images `indices` of `split` into a Cityscapes-format folder (runs in worker processes)."""
    image_dir = root / "leftImg8bit" / split / CITY
    label_dir = root / "gtFine" / split / CITY
    for index in indices:
        rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
        image, label_ids = render_scene(rng, height, width)
        image = photograph(image, domain, rng)
        stem = f"{CITY}_000000_{index:06d}"
        Image.fromarray(image).save(image_dir / f"{stem}{IMAGE_SUFFIX}", compress_level=1)
        Image.fromarray(label_ids).save(label_dir / f"{stem}{LABEL_IDS_SUFFIX}", compress_level=1)


def generate(root: Path, params: SyntheticParams, workers: int | None = None) -> None:
    """Render every split of `params` into `root` (an empty folder), in parallel when it pays off.

    workers: processes in all, this one included (default: the CPU count, at most 8).
    """
    tasks = []
    for split, count in params.split_sizes().items():
        (root / "leftImg8bit" / split / CITY).mkdir(parents=True)
        (root / "gtFine" / split / CITY).mkdir(parents=True)
        tasks += [(split, index) for index in range(count)]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if len(tasks) < PARALLEL_MIN_IMAGES:
        workers = 1
    env = os.environ | {"PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    helpers = []
    try:
        for worker in range(1, workers):
            job = {"root": str(root), "seed": params.seed, "height": params.height, "width": params.width,
                   "domain": params.domain}
            job["tasks"] = tasks[worker::workers]
            process = subprocess.Popen(
                [sys.executable, "-m", "segbench.datasets.streets.render_worker"],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                text=True,
            )
            process.stdin.write(json.dumps(job))
            process.stdin.close()
            helpers.append(process)
        for split, index in tasks[0::workers]:
            render_files(root, split, [index], params.seed, params.height, params.width, params.domain)
        for process in helpers:
            errors = process.stderr.read()
            if process.wait() != 0:
                raise RuntimeError(f"a synthetic-data worker failed (exit code {process.returncode}):\n{errors}")
    finally:
        for process in helpers:
            if process.poll() is None:
                process.kill()
                process.wait()


@DATASETS.register("synthetic")
class SyntheticStreets(Cityscapes):
    """Synthetic street scenes with the 19 Cityscapes classes, read through the Cityscapes loader."""

    Params: ClassVar[type[DatasetParams]] = SyntheticParams
    NAME: ClassVar[str] = "synthetic"
    DISPLAY_NAME: ClassVar[str] = "synthetic dataset"
    FIX_HINT: ClassVar[str] = "delete the folder and run again to regenerate it"

    @classmethod
    def resolve_root(cls, params: DatasetParams, cache_dir: Path) -> Path:
        if params.root is not None:
            return Path(params.root).expanduser()
        return Path(cache_dir).expanduser() / f"synthetic-{params.content_key()}"

    @classmethod
    def prepare(cls, params: DatasetParams, cache_dir: Path) -> None:
        """Generate the scenes unless a complete copy with the same content already exists."""
        root = cls.resolve_root(params, cache_dir)
        expected = {"generator": GENERATOR_VERSION, "content_key": params.content_key()}
        if _read_manifest(root) is not None:
            _check_manifest(root, expected)
            return
        if root.exists() and any(root.iterdir()):
            raise DatasetError(
                f"synthetic dataset folder {root} exists but has no {MANIFEST}, so it is not a finished synthetic "
                f"dataset; delete it or choose another root."
            )
        root.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
        try:
            generate(partial, params)
            atomic_write_json(partial / MANIFEST, expected | {"params": params.model_dump(exclude={"root"})})
            try:
                os.rename(partial, root)
            except OSError:
                if _read_manifest(root) is None:  # not a concurrent preparer finishing first: a real problem
                    raise
                _check_manifest(root, expected)
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _check_manifest(root: Path, expected: dict) -> None:
    manifest = _read_manifest(root) or {}
    found = {key: manifest.get(key) for key in expected}
    if found != expected:
        raise DatasetError(
            f"synthetic dataset folder {root} was generated with other settings ({found}, expected {expected}); "
            f"delete it or choose another root."
        )
