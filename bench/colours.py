"""Class maps as pictures: the dataset palette, void in black, and the correct/wrong error map. Plain numpy, no
matplotlib, so prediction output and TensorBoard images use it without loading a plotting library."""

from __future__ import annotations

import numpy as np

IGNORE_COLOUR = (0, 0, 0)
CORRECT_COLOUR = (215, 215, 215)
WRONG_COLOUR = (220, 30, 30)


def colourise(label: np.ndarray, palette: list[list[int]], ignore_index: int) -> np.ndarray:
    """A class-index map [H, W] as an RGB image [H, W, 3] in the dataset palette; ignore pixels black."""
    lookup = np.zeros((256, 3), dtype=np.uint8)
    lookup[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    lookup[ignore_index] = IGNORE_COLOUR
    return lookup[label]


def error_map(label: np.ndarray, pred: np.ndarray, ignore_index: int) -> np.ndarray:
    """Correct pixels light grey, wrong ones red, ignore pixels black."""
    out = np.empty((*label.shape, 3), dtype=np.uint8)
    out[:] = CORRECT_COLOUR
    out[pred != label] = WRONG_COLOUR
    out[label == ignore_index] = IGNORE_COLOUR
    return out
