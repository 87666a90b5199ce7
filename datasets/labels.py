"""The Cityscapes label table and the lookup tables derived from it.

Facts from cityscapesScripts `helpers/labels.py` (see shared/reference/datasets.md). Every mapping segbench applies
to label images is a 256-entry uint8 lookup table built from `LABELS` and applied once (`lut[label]`), so a later
mode (8 categories, a class subset) is one more table, never a chain of in-place replacements.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

IGNORE_INDEX = 255


class Label(NamedTuple):
    name: str
    id: int
    train_id: int
    category: str
    category_id: int
    ignore_in_eval: bool
    color: tuple[int, int, int]


LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, "void", 0, True, (0, 0, 0)),
    Label("ego vehicle", 1, 255, "void", 0, True, (0, 0, 0)),
    Label("rectification border", 2, 255, "void", 0, True, (0, 0, 0)),
    Label("out of roi", 3, 255, "void", 0, True, (0, 0, 0)),
    Label("static", 4, 255, "void", 0, True, (0, 0, 0)),
    Label("dynamic", 5, 255, "void", 0, True, (111, 74, 0)),
    Label("ground", 6, 255, "void", 0, True, (81, 0, 81)),
    Label("road", 7, 0, "flat", 1, False, (128, 64, 128)),
    Label("sidewalk", 8, 1, "flat", 1, False, (244, 35, 232)),
    Label("parking", 9, 255, "flat", 1, True, (250, 170, 160)),
    Label("rail track", 10, 255, "flat", 1, True, (230, 150, 140)),
    Label("building", 11, 2, "construction", 2, False, (70, 70, 70)),
    Label("wall", 12, 3, "construction", 2, False, (102, 102, 156)),
    Label("fence", 13, 4, "construction", 2, False, (190, 153, 153)),
    Label("guard rail", 14, 255, "construction", 2, True, (180, 165, 180)),
    Label("bridge", 15, 255, "construction", 2, True, (150, 100, 100)),
    Label("tunnel", 16, 255, "construction", 2, True, (150, 120, 90)),
    Label("pole", 17, 5, "object", 3, False, (153, 153, 153)),
    Label("polegroup", 18, 255, "object", 3, True, (153, 153, 153)),
    Label("traffic light", 19, 6, "object", 3, False, (250, 170, 30)),
    Label("traffic sign", 20, 7, "object", 3, False, (220, 220, 0)),
    Label("vegetation", 21, 8, "nature", 4, False, (107, 142, 35)),
    Label("terrain", 22, 9, "nature", 4, False, (152, 251, 152)),
    Label("sky", 23, 10, "sky", 5, False, (70, 130, 180)),
    Label("person", 24, 11, "human", 6, False, (220, 20, 60)),
    Label("rider", 25, 12, "human", 6, False, (255, 0, 0)),
    Label("car", 26, 13, "vehicle", 7, False, (0, 0, 142)),
    Label("truck", 27, 14, "vehicle", 7, False, (0, 0, 70)),
    Label("bus", 28, 15, "vehicle", 7, False, (0, 60, 100)),
    Label("caravan", 29, 255, "vehicle", 7, True, (0, 0, 90)),
    Label("trailer", 30, 255, "vehicle", 7, True, (0, 0, 110)),
    Label("train", 31, 16, "vehicle", 7, False, (0, 80, 100)),
    Label("motorcycle", 32, 17, "vehicle", 7, False, (0, 0, 230)),
    Label("bicycle", 33, 18, "vehicle", 7, False, (119, 11, 32)),
    # -1 never occurs in a labelIds PNG (uint8); kept so the table matches the official one.
    Label("license plate", -1, -1, "vehicle", 7, True, (0, 0, 142)),
)

LABEL_BY_NAME: dict[str, Label] = {label.name: label for label in LABELS}
EVALUATED: tuple[Label, ...] = tuple(
    sorted((label for label in LABELS if 0 <= label.train_id < IGNORE_INDEX), key=lambda label: label.train_id)
)
TRAIN_CLASSES: tuple[str, ...] = tuple(label.name for label in EVALUATED)
TRAIN_PALETTE: tuple[tuple[int, int, int], ...] = tuple(label.color for label in EVALUATED)


class LabelMapping(NamedTuple):
    """How raw PNG values become training targets.

    `lut[v]` is the target (0..C-1 or IGNORE_INDEX) of raw value v; `valid[v]` says whether v may occur in a file
    at all (a value outside the table is a corrupt or foreign label image, reported rather than silently ignored).
    """

    lut: np.ndarray  # uint8 [256]
    valid: np.ndarray  # bool [256]

    def key(self) -> str:
        """A stable string that changes whenever the mapping does (part of cache keys)."""
        return self.lut.tobytes().hex() + np.packbits(self.valid).tobytes().hex()


def id_to_train_id() -> LabelMapping:
    """labelIds (0..33) -> trainIds (0..18, 255); 255 in the file is accepted as ignore."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    for label in LABELS:
        if label.id >= 0:
            lut[label.id] = label.train_id if label.train_id >= 0 else IGNORE_INDEX
            valid[label.id] = True
    valid[IGNORE_INDEX] = True
    return LabelMapping(lut, valid)


def train_id_identity() -> LabelMapping:
    """labelTrainIds files already hold 0..18 and 255; anything else is an error."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    for label in EVALUATED:
        lut[label.train_id] = label.train_id
        valid[label.train_id] = True
    valid[IGNORE_INDEX] = True
    return LabelMapping(lut, valid)


# -- class modes: what a Cityscapes-id label becomes ----------------------------------------------------------------
#
# A mode is a 256-entry table over trainIds (`train_lut[trainId] -> target`), composed with the file's own table
# (`compose`) into the one table applied to the raw file. Modes start from trainIds, so labelTrainIds and labelIds
# files give the same targets, and every id the official evaluation ignores (void, parking, caravan, ...) stays
# ignored in every mode.

# The 8 categories of the label table, with their official category ids 0..7.
CATEGORY_IDS: dict[str, int] = {
    "void": 0, "flat": 1, "construction": 2, "object": 3, "nature": 4, "sky": 5, "human": 6, "vehicle": 7,
}  # fmt: skip
# `classes: categories` scores the 7 non-void categories as indices 0..6 (category id - 1); void is ignored, as in
# cityscapesScripts' category IoU (every void label is ignoreInEval, so the official void category is always NaN).
CATEGORY_CLASSES: tuple[str, ...] = tuple(name for name in CATEGORY_IDS if name != "void")
# The label table has no category colours; each category takes the colour of a representative class.
CATEGORY_PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    LABEL_BY_NAME[name].color for name in ("road", "building", "traffic light", "vegetation", "sky", "person", "car")
)
BACKGROUND = "background"
BACKGROUND_COLOR = (0, 0, 0)


class ClassMode(NamedTuple):
    """Names, palette and the trainId -> target table of one class mode."""

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    train_lut: np.ndarray  # uint8 [256]


def class_mode(classes: str | tuple[str, ...] = "trainids", rest_as: str = "ignore") -> ClassMode:
    """The targets of a Cityscapes-id dataset.

    classes: "trainids" (the 19 evaluated classes), "categories" (the 7 non-void categories) or a tuple of trainId
    class names (a subset: listed classes become 0..k-1 in the order given). rest_as (subsets only): "ignore" maps
    the other 18 - k evaluated classes to ignore; "background" maps them to one more class, "background", index k.
    Ignored ids stay ignored in every mode.
    """
    return _class_mode(classes if isinstance(classes, str) else tuple(classes), rest_as)


@functools.cache
def _class_mode(classes: str | tuple[str, ...], rest_as: str) -> ClassMode:
    train_lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    if classes == "trainids":
        for label in EVALUATED:
            train_lut[label.train_id] = label.train_id
        return ClassMode(TRAIN_CLASSES, TRAIN_PALETTE, _read_only(train_lut))
    if classes == "categories":
        for label in EVALUATED:
            train_lut[label.train_id] = label.category_id - 1
        return ClassMode(CATEGORY_CLASSES, CATEGORY_PALETTE, _read_only(train_lut))
    if isinstance(classes, str):
        raise ValueError(f"unknown class mode {classes!r}; expected 'trainids', 'categories' or a list of class names")
    check_subset(classes, rest_as)
    names, palette = list(classes), [LABEL_BY_NAME[name].color for name in classes]
    if rest_as == BACKGROUND:
        train_lut[[label.train_id for label in EVALUATED]] = len(classes)
        names.append(BACKGROUND)
        palette.append(BACKGROUND_COLOR)
    for index, name in enumerate(classes):
        train_lut[LABEL_BY_NAME[name].train_id] = index
    return ClassMode(tuple(names), tuple(palette), _read_only(train_lut))


def check_subset(classes: tuple[str, ...], rest_as: str) -> None:
    """Raise ValueError (one sentence) unless `classes` is a valid subset of the 19 evaluated class names."""
    if not classes:
        raise ValueError("a class subset must name at least one class")
    unknown = [name for name in classes if name not in TRAIN_CLASSES]
    if unknown:
        raise ValueError(f"'{unknown[0]}' is not one of the 19 evaluated classes ({', '.join(TRAIN_CLASSES)})")
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if repeated:
        raise ValueError(f"class '{repeated[0]}' is listed twice")
    if rest_as not in ("ignore", BACKGROUND):
        raise ValueError(f"rest_as must be 'ignore' or 'background', got {rest_as!r}")
    if rest_as == BACKGROUND and len(classes) == len(TRAIN_CLASSES):
        raise ValueError("rest_as 'background' needs a subset: every evaluated class is listed, so no pixel is rest")


def compose(mapping: LabelMapping, train_lut: np.ndarray) -> LabelMapping:
    """One table for `file value -> trainId -> target` (applied once, never one replacement after another)."""
    return LabelMapping(_read_only(train_lut[mapping.lut]), mapping.valid)


def _read_only(table: np.ndarray) -> np.ndarray:
    table.flags.writeable = False  # cached tables are shared; a caller must not change them in place
    return table
