"""Calibration (ECE) and boundary IoU accumulators against independent implementations: torchmetrics' calibration
error, the ECE formula written out in numpy, and Cheng et al.'s mask_to_boundary written with scipy's erosion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from segbench.metrics.boundary import BoundaryIoU, boundary_region, boundary_width
from segbench.metrics.calibration import BINS, CalibrationBins

IGNORE = 255


def batches(seed: int, n: int = 3, classes: int = 4, size: tuple[int, int] = (24, 40), scale: float = 1.5):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        logits = torch.randn(2, classes, *size, generator=generator) * scale
        target = torch.randint(0, classes, (2, *size), generator=generator)
        target[torch.rand(2, *size, generator=generator) < 0.1] = IGNORE
        yield logits, target


def numpy_ece(logits: np.ndarray, target: np.ndarray, bins: int = BINS) -> float:
    """Guo et al. 2017: bins ((m-1)/M, m/M], ECE = sum n_m/N |acc_m - conf_m|, over the pixels not ignored."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == target
    keep = target != IGNORE
    confidence, correct = confidence[keep], correct[keep]
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for m in range(bins):
        chosen = index == m
        if chosen.any():
            total += chosen.sum() / len(index) * abs(correct[chosen].mean() - confidence[chosen].mean())
    return total


def test_ece_equals_torchmetrics_calibration_error_over_a_split():
    from torchmetrics.classification import MulticlassCalibrationError

    ours = CalibrationBins()
    reference = MulticlassCalibrationError(num_classes=4, n_bins=BINS, norm="l1", ignore_index=IGNORE)
    for logits, target in batches(0):
        ours.update(logits, target, IGNORE)
        reference.update(logits, target)
    result = ours.compute()
    assert result["ece"] == pytest.approx(float(reference.compute()), abs=1e-6)
    assert result["pixels"] == sum(int((t != IGNORE).sum()) for _, t in batches(0))
    assert sum(row["pixels"] for row in result["bins"]) == result["pixels"]


def test_ece_equals_the_formula_also_with_saturated_confidences():
    """Logits far apart give confidences of exactly 1.0, which belong to the last bin (torchmetrics gives them a
    bin of their own, so it is not the reference here)."""
    ours = CalibrationBins()
    logits_all, target_all = [], []
    for logits, target in batches(1, scale=40.0):
        ours.update(logits, target, IGNORE)
        logits_all.append(logits.numpy().astype(np.float64))
        target_all.append(target.numpy())
    assert (torch.softmax(torch.from_numpy(np.concatenate(logits_all)).float(), 1).max(1).values == 1.0).any()
    expected = numpy_ece(np.concatenate(logits_all), np.concatenate(target_all))
    assert ours.compute()["ece"] == pytest.approx(expected, abs=1e-6)


def test_a_split_with_no_valid_pixel_has_no_ece():
    ours = CalibrationBins()
    ours.update(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), IGNORE), IGNORE)
    assert math.isnan(ours.compute()["ece"])


def cheng_boundary(mask: np.ndarray, ratio: float = 0.02) -> np.ndarray:
    """Cheng et al.'s mask_to_boundary (boundary-iou-api), with scipy's erosion in place of OpenCV's."""
    h, w = mask.shape
    dilation = max(1, int(round(ratio * np.sqrt(h**2 + w**2))))
    padded = np.pad(mask, 1, constant_values=0)
    eroded = ndimage.binary_erosion(padded, structure=np.ones((3, 3)), iterations=dilation, border_value=1)
    return mask & ~eroded[1:h + 1, 1:w + 1]


def test_boundary_region_of_a_square_is_its_ring_of_width_d():
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[0, 10:20, 30:40] = True
    d = boundary_width(64, 64)
    assert d == 2  # round(0.02 x 90.5)
    assert int(boundary_region(mask, d).sum()) == 10 * 10 - 6 * 6
    edge = torch.zeros(1, 64, 64, dtype=torch.bool)
    edge[0, :, :5] = True  # the image's border counts as a contour: the whole 5-pixel strip is within 2 of one
    assert int(boundary_region(edge, d).sum()) == int(edge.sum()) - (64 - 4) * 1


@pytest.mark.parametrize("size", [(24, 40), (50, 50)])
def test_boundary_iou_equals_chengs_definition_summed_over_the_split(size):
    ours = BoundaryIoU(num_classes=4, ignore_index=IGNORE)
    intersection = np.zeros(4, dtype=np.int64)
    union = np.zeros(4, dtype=np.int64)
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        # Blocky maps (nearest-upsampled noise) have contours worth the name.
        target = torch.nn.functional.interpolate(torch.randint(0, 4, (2, 1, 6, 8), generator=generator).float(),
                                                 size=size, mode="nearest")[:, 0].long()
        pred = torch.nn.functional.interpolate(torch.randint(0, 4, (2, 1, 6, 8), generator=generator).float(),
                                               size=size, mode="nearest")[:, 0].long()
        target[:, :3, :5] = IGNORE
        ours.update(pred, target)
        for p, t in zip(pred.numpy(), target.numpy(), strict=True):
            valid = t != IGNORE
            for c in range(4):
                g = cheng_boundary((t == c) & valid)
                q = cheng_boundary((p == c) & valid)
                intersection[c] += (g & q & valid).sum()
                union[c] += ((g | q) & valid).sum()
    result = ours.compute()
    assert result["intersection"] == intersection.tolist() and result["union"] == union.tolist()
    expected = [i / u for i, u in zip(intersection, union, strict=True) if u]
    assert result["boundary_miou"] == pytest.approx(sum(expected) / len(expected))


def test_a_perfect_prediction_has_boundary_iou_one_and_a_shifted_one_less():
    target = torch.zeros(1, 40, 40, dtype=torch.long)
    target[0, 10:30, 10:30] = 1
    perfect = BoundaryIoU(num_classes=2, ignore_index=IGNORE)
    perfect.update(target.clone(), target)
    assert perfect.compute()["per_class"] == [1.0, 1.0]
    shifted = BoundaryIoU(num_classes=2, ignore_index=IGNORE)
    shifted.update(torch.roll(target, 3, dims=2), target)
    assert shifted.compute()["per_class"][1] < 0.6
