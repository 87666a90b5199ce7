"""What `segbench predict` writes: label PNGs in one of three encodings, colour overlays with a legend, a video.

Formats of the label PNGs (one value per pixel, native input size):
- `trainids`: class indices 0..C-1 of the cell's class mode (what `segbench evaluate --pred-format trainids` reads);
- `labelids`: the encoding of the cell's dataset label files; for Cityscapes-id datasets (cityscapes, synthetic,
  kitti) the Cityscapes label ids 0..33, which cityscapesScripts and `segbench evaluate --pred-format labelids`
  read. A class that stands for several ids (a category, `background`) is written as its lowest id;
- `color`: an RGB rendering in the dataset palette, for eyes only (no tool scores colours).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segbench.colours import colourise
from segbench.errors import ConfigError
from segbench.records.schema import Record

FORMATS = ("trainids", "labelids", "color")
PNG_COMPRESS_LEVEL = 1  # fast zlib: writing is timed, and level 6 is several times slower for a few % smaller files
LEGEND_SWATCH = 12  # px
LEGEND_PAD = 4  # px
LEGEND_BACKGROUND = (255, 255, 255)


def check_format(label_format: str) -> None:
    if label_format not in FORMATS:
        raise ConfigError(f"--format '{label_format}' is unknown; use one of {', '.join(FORMATS)}.")


def label_value_table(record: Record, label_format: str) -> np.ndarray | None:
    """uint8 [256]: class index -> the value written for it (None for `color`); ConfigError when not writable.

    For `labelids` the table inverts the dataset's own label-file mapping (value -> class), so what predict writes is
    read back by the same table `segbench evaluate` uses.
    """
    check_format(label_format)
    classes = record.dataset.classes
    num_classes = len(classes)
    if label_format == "color":
        return None
    table = np.zeros(256, dtype=np.uint8)
    if label_format == "trainids":
        table[:num_classes] = np.arange(num_classes)
        return table
    mapping = _label_file_mapping(record.config.dataset.name, record.config.dataset.params)
    for index in range(num_classes):
        values = np.flatnonzero(mapping.valid & (mapping.lut == index))
        if values.size == 0:
            raise ConfigError(
                f"class {classes[index]!r} has no label id in this dataset's label files; "
                "use --format trainids."
            )
        table[index] = values[0]
    return table


def _label_file_mapping(name: str, params: dict[str, Any]):
    """The dataset's `label value -> class index` LabelMapping, read from the cell's dataset options alone."""
    from segbench.datasets import DATASETS, parse_dataset_params
    from segbench.datasets.cityscapes import Cityscapes, label_id_prediction_mapping
    from segbench.datasets.kitti import Kitti

    entry = DATASETS.get(name)
    typed = parse_dataset_params(name, params)
    if issubclass(entry, (Cityscapes, Kitti)):
        return label_id_prediction_mapping(typed)
    if hasattr(entry, "class_table"):  # datasets whose label values come from a classes file
        return entry.class_table(typed).mapping
    raise ConfigError(f"dataset '{name}' has no label-id encoding segbench can write; use --format trainids.")


def resize_to(pred: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w] class map -> [H, W] = `size` by nearest neighbour (as evaluation resizes labels)."""
    if pred.shape == size:
        return pred
    return np.asarray(Image.fromarray(pred).resize((size[1], size[0]), Image.NEAREST))


def encode_labels(pred: np.ndarray, table: np.ndarray | None, palette: list[list[int]], ignore_index: int
                  ) -> np.ndarray:
    """The array a label PNG holds: uint8 [H, W] through `table`, or RGB [H, W, 3] in the palette (`color`)."""
    if table is None:
        return colourise(pred, palette, ignore_index)
    return table[pred]


def write_png(path: Path, array: np.ndarray) -> None:
    """Write uint8 [H, W] (mode L) or [H, W, 3] (RGB) as PNG, creating sub-folders (the output folder is temporary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


class Overlay:
    """Colour overlays of predictions on their images, with a legend strip under the image.

    alpha: weight of the class colour (0 = the image only, 1 = the colours only). `fixed_legend` lists every class
    (a video's frames must all have one size and a steady legend); otherwise only the classes in the frame.
    """

    def __init__(self, classes: list[str], palette: list[list[int]], ignore_index: int, alpha: float,
                 fixed_legend: bool) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--alpha must be between 0 and 1 (the weight of the class colours), not {alpha}.")
        self.classes, self.palette, self.ignore_index = classes, palette, ignore_index
        self.alpha, self.fixed_legend = alpha, fixed_legend
        self.font = ImageFont.load_default()
        self._legends: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

    def render(self, image: Image.Image, pred: np.ndarray) -> np.ndarray:
        """uint8 RGB [H + legend height, W, 3]: image blended with the class colours of `pred` ([H, W])."""
        pixels = np.asarray(image, dtype=np.float32)
        colours = colourise(pred, self.palette, self.ignore_index).astype(np.float32)
        blended = np.round(pixels * (1.0 - self.alpha) + colours * self.alpha).astype(np.uint8)
        shown = range(len(self.classes)) if self.fixed_legend else np.unique(pred[pred != self.ignore_index])
        legend = self.legend(blended.shape[1], tuple(int(index) for index in shown))
        return np.concatenate([blended, legend], axis=0)

    def legend(self, width: int, shown: tuple[int, ...]) -> np.ndarray:
        """uint8 RGB [h, width, 3]: a colour swatch and the name of each class in `shown`, wrapped into rows."""
        key = (width, shown)
        if key not in self._legends:
            self._legends[key] = self._draw_legend(width, shown)
        return self._legends[key]

    def _draw_legend(self, width: int, shown: tuple[int, ...]) -> np.ndarray:
        row_height = LEGEND_SWATCH + LEGEND_PAD
        items = [(index, self.classes[index], self.font.getlength(self.classes[index])) for index in shown]
        rows, x = [[]], LEGEND_PAD
        for index, name, length in items:
            item_width = LEGEND_SWATCH + LEGEND_PAD + int(length) + 2 * LEGEND_PAD
            if rows[-1] and x + item_width > width:
                rows.append([])
                x = LEGEND_PAD
            rows[-1].append((index, name, x))
            x += item_width
        height = max(1, len(rows)) * row_height + LEGEND_PAD
        height += height % 2  # video encoders need even frame sizes
        canvas = Image.new("RGB", (width, height), LEGEND_BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        for row, entries in enumerate(rows):
            top = LEGEND_PAD + row * row_height
            for index, name, left in entries:
                draw.rectangle([left, top, left + LEGEND_SWATCH - 1, top + LEGEND_SWATCH - 1],
                               fill=tuple(self.palette[index]), outline=(0, 0, 0))
                draw.text((left + LEGEND_SWATCH + LEGEND_PAD, top), name, fill=(0, 0, 0), font=self.font)
        return np.asarray(canvas)


class VideoWriter:
    """An H.264 MP4 of overlay frames through imageio-ffmpeg (its own ffmpeg binary, no system codecs needed)."""

    def __init__(self, path: Path, fps: float) -> None:
        from segbench.predict.inputs import video_library

        self.path = path
        self.frames = 0
        self._closed = False
        # macro_block_size=2: frames are padded to even sizes here, so imageio never resizes them itself.
        self._writer = video_library().get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=7,
                                                  macro_block_size=2, pixelformat="yuv420p")

    def append(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if height % 2 or width % 2:  # yuv420p needs even sizes: repeat the last row/column
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if not self._closed:
            self._closed = True
            self._writer.close()
