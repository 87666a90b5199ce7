"""segbench.losses: the softmax focal loss against cross-entropy and a direct formula, and class weights by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segbench.errors import ConfigError, UnknownNameError
from segbench.losses import CLASS_WEIGHT_METHODS, LOSSES, build_loss, class_weights_from_counts

IGNORE = 255
NUM_CLASSES = 5
WEIGHTS = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25])


def random_batch(seed: int, ignore_share: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [2, C, 6, 7] (with some confident pixels) and targets with ignore pixels."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(2, NUM_CLASSES, 6, 7, generator=gen)
    target = torch.randint(NUM_CLASSES, (2, 6, 7), generator=gen)
    target[torch.rand(2, 6, 7, generator=gen) < ignore_share] = IGNORE
    return logits, target


def focal_reference(logits: torch.Tensor, target: torch.Tensor, gamma: float, weights: torch.Tensor | None) -> float:
    """The textbook formula, one pixel at a time in float64."""
    probs = logits.double().softmax(dim=1)
    numerator = denominator = 0.0
    batch, _, height, width = logits.shape
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                y = int(target[b, i, j])
                if y == IGNORE:
                    continue
                w = 1.0 if weights is None else float(weights[y])
                p = float(probs[b, y, i, j])
                numerator += -w * (1 - p) ** gamma * np.log(p)
                denominator += w
    return numerator / denominator


def test_registry_names() -> None:
    assert LOSSES.names() == ["ce", "focal"]


def test_unknown_loss_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'focal'"):
        build_loss("foca", num_classes=NUM_CLASSES)


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("seed", [0, 1])
def test_focal_with_gamma_zero_equals_cross_entropy(weights: torch.Tensor | None, seed: int) -> None:
    logits, target = random_batch(seed)
    focal = build_loss("focal", num_classes=NUM_CLASSES, class_weights=weights, gamma=0.0)
    ce = build_loss("ce", num_classes=NUM_CLASSES, class_weights=weights)
    expected = F.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE)
    assert focal(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)
    assert ce(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_focal_matches_the_per_pixel_formula(weights: torch.Tensor | None, gamma: float) -> None:
    logits, target = random_batch(3)
    focal = build_loss("focal", num_classes=NUM_CLASSES, class_weights=weights, gamma=gamma)
    assert focal(logits, target).item() == pytest.approx(focal_reference(logits, target, gamma, weights), rel=1e-5)


def test_focal_down_weights_confident_pixels() -> None:
    logits, target = random_batch(4)
    ce = build_loss("ce", num_classes=NUM_CLASSES)(logits, target)
    focal = build_loss("focal", num_classes=NUM_CLASSES, gamma=2.0)(logits, target)
    assert 0 < focal.item() < ce.item()


@pytest.mark.parametrize("name", ["ce", "focal"])
def test_gradient_is_finite_and_ignore_pixels_get_none(name: str) -> None:
    logits, target = random_batch(5)
    # Extremely confident logits make p round to 1 in float32, the case where (1 - p)^gamma misbehaves.
    logits[:, :, 0, 0] = 0
    logits[:, 1, 0, 0] = 200
    target[:, 0, 0] = 1
    logits.requires_grad_(True)
    loss = build_loss(name, num_classes=NUM_CLASSES, class_weights=WEIGHTS, gamma=0.5)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    assert ignored.any() and (logits.grad[ignored] == 0).all()


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_focal_on_an_all_ignore_batch_is_zero_with_a_gradient(weights: torch.Tensor | None) -> None:
    logits, _ = random_batch(6)
    logits.requires_grad_(True)
    target = torch.full((2, 6, 7), IGNORE)
    loss = build_loss("focal", num_classes=NUM_CLASSES, class_weights=weights)(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and (logits.grad == 0).all()


def test_focal_under_autocast_computes_in_float32() -> None:
    logits, target = random_batch(7)
    focal = build_loss("focal", num_classes=NUM_CLASSES, class_weights=WEIGHTS)
    low_precision = logits.bfloat16()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = focal(low_precision, target)
    assert loss.dtype == torch.float32
    expected = focal_reference(low_precision.float(), target, 2.0, WEIGHTS)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_class_weight_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"\(5,\)"):
        build_loss("focal", num_classes=NUM_CLASSES, class_weights=torch.ones(4))


def test_class_weights_by_hand() -> None:
    # 100 pixels: shares 0.5, 0.25, 0.2, 0, 0.05. Class 3 never occurs -> weight 0.
    counts = np.array([50, 25, 20, 0, 5])
    # inverse_freq: 1/f = 2, 4, 5, 20 -> mean 31/4 -> weights 8/31, 16/31, 20/31, 80/31.
    inverse = class_weights_from_counts(counts, "inverse_freq")
    np.testing.assert_allclose(inverse, [8 / 31, 16 / 31, 20 / 31, 0, 80 / 31])
    # median_freq from one histogram: median(f) = (0.25 + 0.2) / 2 = 0.225, w = 0.225 / f = 0.45, 0.9, 1.125, 4.5;
    # a constant factor away from inverse_freq, so the mean-1 normalisation makes them equal.
    median = class_weights_from_counts(counts, "median_freq")
    np.testing.assert_allclose(median, np.array([0.45, 0.9, 1.125, 0, 4.5]) / (6.975 / 4))
    np.testing.assert_allclose(median, inverse)
    for weights in (inverse, median):
        assert weights[counts > 0].mean() == pytest.approx(1.0)


def test_median_freq_from_per_image_histograms_follows_eigen_fergus() -> None:
    # Two images of 10 pixels each. Class 0 occurs in both, class 1 only in the first, class 2 only in the second.
    counts = np.array([[6, 4, 0], [9, 0, 1]])
    # f_c = pixels of c / pixels of the images containing c: 15/20, 4/10, 1/10; median 0.4.
    raw = np.array([0.4 / 0.75, 0.4 / 0.4, 0.4 / 0.1])
    np.testing.assert_allclose(class_weights_from_counts(counts, "median_freq"), raw / raw.mean())
    # inverse_freq uses the pooled histogram [15, 4, 1] of 20 pixels.
    inverse = np.array([20 / 15, 20 / 4, 20 / 1])
    np.testing.assert_allclose(class_weights_from_counts(counts, "inverse_freq"), inverse / inverse.mean())


def test_unknown_class_weight_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="did you mean 'median_freq'.*inverse_freq, median_freq"):
        class_weights_from_counts(np.array([1, 2]), "median_frequency")
    assert CLASS_WEIGHT_METHODS == ("inverse_freq", "median_freq")


def test_class_weights_reject_empty_histograms() -> None:
    with pytest.raises(ValueError, match="all zero"):
        class_weights_from_counts(np.zeros(3), "inverse_freq")


def test_ce_gives_zero_not_nan_on_an_all_ignore_batch():
    loss_fn = build_loss("ce", num_classes=3)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = loss_fn(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
