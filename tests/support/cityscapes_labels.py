"""The official Cityscapes label table (cityscapesScripts labels.py), transcribed by hand.

Kept apart from segbench.datasets on purpose: the tests check the loaders and the scoring against it, so it must
not be derived from the code under test.
"""

from __future__ import annotations

import numpy as np

# id -> trainId of the 19 evaluated classes; every other id (void or ignoreInEval) is ignored (255).
TRAIN_ID_OF = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13}
TRAIN_ID_OF |= {27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_IDS = np.arange(34, dtype=np.uint8)  # every id of labels.py, void and ignoreInEval ones included
IGNORED_IN_EVAL = frozenset(range(34)) - TRAIN_ID_OF.keys()  # 0-6, 9, 10, 14-16, 18, 29, 30
CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
CATEGORIES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")  # categoryId 1..7
# id -> category of every id, ignored ones included (parking and rail track are 'flat' but ignoreInEval).
CATEGORY_OF_ID = dict.fromkeys(range(7), "void") | dict.fromkeys(range(7, 11), "flat")
CATEGORY_OF_ID |= dict.fromkeys(range(11, 17), "construction") | dict.fromkeys(range(17, 21), "object")
CATEGORY_OF_ID |= {21: "nature", 22: "nature", 23: "sky", 24: "human", 25: "human"}
CATEGORY_OF_ID |= dict.fromkeys(range(26, 34), "vehicle")


def by_pixel(label: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """`label` (H, W) mapped through `table`, 255 for values it lacks, same dtype.

    A plain loop over pixels: a reference independent of the loaders' lookup tables.
    """
    out = np.empty_like(label)
    for (row, col), value in np.ndenumerate(label):
        out[row, col] = table.get(int(value), 255)
    return out
