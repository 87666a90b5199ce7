"""The contract every dataset in segbench follows.

A dataset entry is a class registered in `DATASETS` with:
- `Params`: a pydantic model (extra keys forbidden) of the options a grid file may set under the dataset,
- `info(params) -> DatasetInfo`: class names, ignore value and palette, without reading any file,
- `prepare(params, cache_dir) -> None`: one-time work before any worker starts (e.g. generating synthetic data),
- `__init__(params, split, transform, cache_dir)`: a torch Dataset whose items are
  `(image float32 [3, H, W] normalised, label int64 [H, W] with values in 0..C-1 or ignore_index)`,
  with `.info` (DatasetInfo), `.files` (list of (image path, label path)), `.sample_id(i)` (a stable name such as
  the Cityscapes stem), `.load_raw(i)` (PIL RGB image, uint8 label [H, W] already mapped to 0..C-1 / ignore_index,
  before any transform) and `.class_pixel_counts()` (int64 [C] over the split at native resolution, cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

IGNORE_INDEX = 255


class DatasetParams(BaseModel):
    """Base of every dataset's options; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path | None = None


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
