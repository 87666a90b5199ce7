"""Edge cases of the flat-index bincount in `confusion_matrix`: labels that would collide with the dropped bin of
ignored pixels, out-of-range values hidden under ignored pixels, and a negative ignore_index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segbench.metrics.confusion import confusion_matrix


def test_target_equal_to_num_classes_raises_although_it_lands_in_the_ignored_bin() -> None:
    # target 3 with prediction 0 gives the flat index 3 * 3 + 0, the bin ignored pixels are sent to.
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 3]), 3, 255)


def test_any_prediction_under_an_ignored_pixel_is_dropped() -> None:
    pred = torch.tensor([0, 2, 7, -4], dtype=torch.int64)
    target = torch.tensor([0, 2, 255, 255])
    np.testing.assert_array_equal(confusion_matrix(pred, target, 3, 255).numpy(), np.diag([1, 0, 1]))


def test_negative_ignore_index_and_narrow_dtypes() -> None:
    pred = torch.tensor([1, 1, 0, 2], dtype=torch.uint8)
    target = torch.tensor([1, -100, 0, 1], dtype=torch.int16)
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[1, 1] = expected[0, 0] = expected[1, 2] = 1
    matrix = confusion_matrix(pred, target, 3, -100)
    assert matrix.dtype == torch.int64
    np.testing.assert_array_equal(matrix.numpy(), expected)
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(pred, torch.tensor([1, -1, 0, 1], dtype=torch.int16), 3, -100)
