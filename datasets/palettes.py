"""Class lists and colour palettes: read a user's classes file, make a palette when the file has no colours.

A classes file (for the `odgt` and `folder` datasets) lists the classes in class-index order, as
- CSV: a header with a name column (`name`, `class_name`, `class`, `label`), optionally an id column (`id`,
  `train_id`, `trainId`, `idx`, `value`) and a colour column (`color`, `colour`, `rgb`: "r,g,b", "(r, g, b)" or
  "#rrggbb"); other columns are ignored,
- YAML: a list of names, or of mappings {name, id, color}, optionally under a top-level `classes:` key,
- text: one name per line (blank lines and lines starting with # are skipped).

How a mask value v becomes a target (one 256-entry lookup table):
- v == ignore_value -> ignore (255); v + label_offset < 0 -> ignore (the CSAIL rule: with offset -1, PNG 0 is ignored);
- 0 <= v + label_offset < K -> class v + label_offset; anything else is an error naming the file and the value.
An id column gives each class's value *in the mask files*: rows whose id is the ignore value are dropped (e.g. an
"unlabeled" row with train_id 255), and the others must give each class index 0..K-1 exactly once after the offset.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segbench.datasets.labels import IGNORE_INDEX, LabelMapping
from segbench.errors import DatasetError

Colour = tuple[int, int, int]

NAME_COLUMNS = ("name", "class_name", "classname", "class", "label")
ID_COLUMNS = ("id", "train_id", "trainid", "idx", "value")
COLOUR_COLUMNS = ("color", "colour", "rgb")


def voc_palette(count: int) -> tuple[Colour, ...]:
    """The PASCAL VOC colour map (bit-interleaved index -> RGB): distinct, deterministic colours for any count."""
    colours = []
    for index in range(count):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        colours.append((red, green, blue))
    return tuple(colours)


def parse_colour(value: Any) -> Colour:
    """'r,g,b', '(r, g, b)', 'r g b', '#rrggbb' or a list of three integers -> (r, g, b); ValueError otherwise."""
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value.strip()):
        text = value.strip()
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    parts = re.findall(r"-?\d+", value) if isinstance(value, str) else list(value)
    if len(parts) != 3 or not all(0 <= int(part) <= 255 for part in parts):
        raise ValueError(f"{value!r} is not a colour; write r,g,b with values 0-255 or #rrggbb")
    return int(parts[0]), int(parts[1]), int(parts[2])


def describe_values(valid: np.ndarray) -> str:
    """'0-18, 255' for a boolean [256] table of accepted values."""
    values = np.flatnonzero(valid).tolist()
    runs: list[str] = []
    start = previous = None
    for value in [*values, None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = value
    return ", ".join(runs) or "none"


@dataclass(frozen=True)
class ClassTable:
    """Class names in index order, their colours, and how mask values become targets."""

    classes: tuple[str, ...]
    palette: tuple[Colour, ...]
    mapping: LabelMapping


def offset_mapping(num_classes: int, label_offset: int, ignore_value: int | None) -> LabelMapping:
    """value v -> v + label_offset for 0 <= v + offset < num_classes; ignore_value and v + offset < 0 -> ignore."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    for value in range(256):
        target = value + label_offset
        if value == ignore_value or target < 0:
            valid[value] = True
        elif target < num_classes:
            lut[value] = target
            valid[value] = True
    return LabelMapping(lut, valid)


def read_class_table(
    spec: Path | tuple[str, ...], root: Path | None, label_offset: int, ignore_value: int | None
) -> ClassTable:
    """The class table of an `odgt` or `folder` dataset.

    spec: a classes file (relative paths are taken from `root`) or the class names themselves.
    """
    if isinstance(spec, tuple):
        rows: list[dict[str, Any]] = [{"name": name} for name in spec]
        source = "the classes option"
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and root is not None:
            path = Path(root).expanduser() / path
        rows = _read_rows(path)
        source = f"classes file {path}"
    return _table(rows, source, label_offset, ignore_value)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(
            f"classes file {path} does not exist; expected a CSV (name, id, color columns), YAML or text file "
            "listing the class names in class-index order."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"classes file {path} cannot be read as UTF-8 text ({error}).") from None
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, text)
    if suffix in (".yaml", ".yml"):
        return _yaml_rows(path, text)
    return [{"name": line.strip()} for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    header = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    name_column = next((header[key] for key in NAME_COLUMNS if key in header), None)
    if name_column is None:
        raise DatasetError(
            f"classes file {path} has no name column (columns: {', '.join(reader.fieldnames or [])}); expected one "
            f"of {', '.join(NAME_COLUMNS)}."
        )
    id_column = next((header[key] for key in ID_COLUMNS if key in header), None)
    colour_column = next((header[key] for key in COLOUR_COLUMNS if key in header), None)
    rows = []
    for row in reader:
        entry: dict[str, Any] = {"name": (row.get(name_column) or "").strip()}
        if id_column is not None:
            entry["id"] = (row.get(id_column) or "").strip()
        if colour_column is not None and (row.get(colour_column) or "").strip():
            entry["color"] = row[colour_column].strip()
        rows.append(entry)
    return rows


def _yaml_rows(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DatasetError(f"classes file {path} is not valid YAML ({str(error).splitlines()[0]}).") from None
    if isinstance(document, dict) and "classes" in document:
        document = document["classes"]
    if not isinstance(document, list):
        raise DatasetError(
            f"classes file {path} must hold a list of class names or of {{name, id, color}} mappings "
            "(optionally under a 'classes' key)."
        )
    return [item if isinstance(item, dict) else {"name": item} for item in document]


def _table(rows: list[dict[str, Any]], source: str, label_offset: int, ignore_value: int | None) -> ClassTable:
    entries = []
    for number, row in enumerate(rows, 1):
        name = str(row.get("name") or "").strip()
        if not name:
            raise DatasetError(f"{source}: class {number} has no name; every class needs a name.")
        try:
            colour = parse_colour(row["color"]) if row.get("color") not in (None, "") else None
            raw_id = row.get("id")
            value = int(raw_id) if raw_id not in (None, "") else None
        except ValueError as error:
            raise DatasetError(f"{source}: class '{name}' has an invalid id or colour ({error}).") from None
        entries.append((name, value, colour))
    with_id = [entry for entry in entries if entry[1] is not None]
    if with_id and len(with_id) != len(entries):
        missing = next(entry[0] for entry in entries if entry[1] is None)
        raise DatasetError(f"{source}: class '{missing}' has no id while others have one; give every class an id.")
    if with_id:
        entries = [entry for entry in entries if entry[1] != ignore_value]
        indices = sorted(entry[1] + label_offset for entry in entries)
        if indices != list(range(len(entries))):
            raise DatasetError(
                f"{source}: the ids plus label_offset {label_offset} give class indices {_short(indices)}; "
                f"expected each of 0..{len(entries) - 1} exactly once (ids are the values stored in the masks)."
            )
        entries.sort(key=lambda entry: entry[1])
    if not entries or len(entries) >= IGNORE_INDEX:
        raise DatasetError(f"{source} lists {len(entries)} classes; expected 1 to {IGNORE_INDEX - 1}.")
    names = tuple(entry[0] for entry in entries)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(f"{source} lists class '{repeated[0]}' twice; class names must be unique.")
    fallback = voc_palette(len(entries))
    palette = tuple(entry[2] or fallback[index] for index, entry in enumerate(entries))
    return ClassTable(names, palette, offset_mapping(len(entries), label_offset, ignore_value))


def _short(values: list[int]) -> str:
    return ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
