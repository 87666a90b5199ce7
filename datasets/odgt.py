"""CSAIL-style `.odgt` manifests (semantic-segmentation-pytorch): one JSON object per line.

    {"fpath_img": "images/a.jpg", "fpath_segm": "annotations/a.png", "width": 1280, "height": 720}

Paths are relative to `root` (absolute paths are used as they are). The manifest of a split is `<root>/<split>.odgt`
unless `manifests` maps the split to another file (e.g. {train: training.odgt, val: validation.odgt}). Classes come
from a classes file; mask values become classes through `label_offset` and `ignore_value` (see `palettes.py`):
CSAIL's own convention is label_offset -1 (PNG 0 = "other" -> ignore, 1..K -> classes 0..K-1); a manifest with
0-based class ids and 255 for unlabelled uses the defaults (offset 0, ignore_value 255).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from segbench.datasets.base import ClassFileDataset, DatasetParams
from segbench.datasets.pairs import Scan
from segbench.datasets.registry import DATASETS
from segbench.errors import DatasetError


class OdgtParams(DatasetParams):
    root: Path = Field(description="the folder the manifest paths are relative to")
    classes: Path | tuple[str, ...] = Field(
        description="a classes file (CSV with name/id/color columns, YAML or text; relative to root) or a list "
        "of class names in class-index order"
    )
    manifests: dict[str, str] = Field(
        default_factory=dict, description="split -> manifest file (relative to root); default <split>.odgt"
    )
    label_offset: int = Field(
        0, ge=-255, le=255, description="added to mask values to give class indices (CSAIL: -1, so PNG 0 is ignored)"
    )
    ignore_value: int | None = Field(255, ge=0, le=255, description="the mask value meaning 'not labelled', or null")


def file_problem(path: Path) -> str | None:
    """None for a readable regular file (links followed), else why it is not one."""
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop"
        return "dangling symlink" if path.is_symlink() else "missing"
    return None if stat.S_ISREG(info.st_mode) else "not a regular file"


@DATASETS.register("odgt")
class Odgt(ClassFileDataset):
    """Items are `(image, label)` with the classes file's classes and 255 = ignore."""

    Params: ClassVar[type[DatasetParams]] = OdgtParams
    NAME: ClassVar[str] = "odgt"
    DISPLAY_NAME: ClassVar[str] = "odgt dataset"
    FIX_HINT: ClassVar[str] = "check the manifest's fpath_img / fpath_segm paths against the root option"
    EXPECTED_ROOT: ClassVar[str] = "<split>.odgt manifests and the files they list"

    def manifest_path(self) -> Path:
        path = Path(self.params.manifests.get(self.split, f"{self.split}.odgt")).expanduser()
        return path if path.is_absolute() else self.root / path

    def scan_split(self) -> Scan:
        manifest = self.manifest_path()
        if not manifest.is_file():
            raise DatasetError(
                f"{self.DISPLAY_NAME} has no manifest {manifest} for split '{self.split}'; expected a .odgt file "
                f"with one JSON object per line, or set the manifests option (e.g. {{{self.split}: my-list.odgt}})."
            )
        scan = Scan(manifest, f'lines such as {{"fpath_img": ..., "fpath_segm": ...}} in {manifest}')
        try:
            lines = manifest.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"{self.DISPLAY_NAME} manifest {manifest} cannot be read ({error}).") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            image, label, size = self._parse_line(manifest, number, line)
            image_problem, label_problem = file_problem(image), file_problem(label)
            for path, problem in ((image, image_problem), (label, label_problem)):
                if problem not in (None, "missing"):
                    scan.broken.append((path, problem))
            if image_problem == "missing":
                scan.missing_images.append((label, image))
            elif label_problem == "missing":
                scan.missing_labels.append((image, label))
            elif image_problem is None and label_problem is None:
                scan.pairs.append((image, label))
                if size is not None:
                    scan.declared_sizes[image] = size
        return scan

    def _parse_line(self, manifest: Path, number: int, line: str) -> tuple[Path, Path, tuple[int, int] | None]:
        try:
            entry = json.loads(line)
            image, label = entry["fpath_img"], entry["fpath_segm"]
            if not isinstance(image, str) or not isinstance(label, str):
                raise TypeError("paths must be strings")
            size = (int(entry["width"]), int(entry["height"])) if "width" in entry and "height" in entry else None
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(
                f"{self.DISPLAY_NAME} manifest {manifest} line {number} is not a JSON object with string fpath_img "
                f"and fpath_segm ({type(error).__name__}: {error})."
            ) from None
        return self._resolve(image), self._resolve(label), size

    def _resolve(self, path: str) -> Path:
        resolved = Path(path).expanduser()
        return resolved if resolved.is_absolute() else self.root / resolved
