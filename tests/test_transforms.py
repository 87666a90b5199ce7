"""TrainTransform and EvalTransform: nearest-only labels, ignore padding, torch-only randomness, shapes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from segbench.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize

from support.replicas import random_rgb

IGNORE = 255


def random_pair(height: int, width: int, seed: int = 0, classes: tuple[int, ...] = (0, 2, 5, 11, 13)):
    """A noisy RGB image and a blocky label using only `classes` (plus a few ignore pixels)."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(random_rgb(rng, height, width))
    blocks = rng.choice(np.asarray(classes + (IGNORE,), dtype=np.uint8), size=(height // 4 + 1, width // 4 + 1))
    label = np.kron(blocks, np.ones((4, 4), dtype=np.uint8))[:height, :width].copy()
    return image, label


@pytest.mark.parametrize("scale_range", [(0.5, 0.5), (0.3, 0.9), (1.0, 1.0), (1.3, 2.7)])
def test_train_labels_only_hold_values_present_before_or_ignore(scale_range):
    image, label = random_pair(45, 71, classes=(1, 7, 9, 18))
    transform = TrainTransform(crop=(32, 48), scale_range=scale_range)
    torch.manual_seed(0)
    for _ in range(20):
        out_image, out_label = transform(image, label)
        assert out_image.shape == (3, 32, 48) and out_image.dtype == torch.float32
        assert out_label.shape == (32, 48) and out_label.dtype == torch.int64
        assert set(out_label.unique().tolist()) <= {1, 7, 9, 18, IGNORE}


def test_train_rescale_matches_a_full_nearest_resize_of_the_label():
    """Only the crop window is resampled (PIL box); it must equal resizing the whole label, then cropping."""
    image, label = random_pair(16, 32, seed=3)
    transform = TrainTransform(crop=(32, 64), scale_range=(2.0, 2.0), hflip=False)
    out_image, out_label = transform(image, label)
    expected_label = np.asarray(Image.fromarray(label).resize((64, 32), Image.NEAREST))
    expected_image = normalize(np.asarray(image.resize((64, 32), Image.BILINEAR)))
    assert np.array_equal(out_label.numpy(), expected_label)
    assert torch.allclose(out_image, expected_image, atol=0.05)


def test_train_pads_image_with_mean_and_label_with_ignore():
    image, label = random_pair(16, 20, classes=(3,))
    label[:] = 3
    torch.manual_seed(0)
    out_image, out_label = TrainTransform(crop=(40, 50), scale_range=(1.0, 1.0), hflip=False)(image, label)
    assert (out_label == 3).sum() == 16 * 20  # the whole image, unscaled, is inside the crop
    assert (out_label == IGNORE).sum() == 40 * 50 - 16 * 20
    padding = out_label == IGNORE
    assert torch.all(out_image[:, padding] == 0)  # the mean colour after normalisation


def test_train_is_deterministic_under_torch_seed_and_ignores_other_generators():
    image, label = random_pair(60, 80, seed=1)
    transform = TrainTransform(crop=(24, 40))

    def run(numpy_seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        torch.manual_seed(123)
        np.random.seed(numpy_seed)
        random.seed(numpy_seed)
        return [transform(image, label) for _ in range(8)]

    first, second = run(1), run(2)
    for (a_image, a_label), (b_image, b_label) in zip(first, second, strict=True):
        assert torch.equal(a_image, b_image) and torch.equal(a_label, b_label)
    torch.manual_seed(124)
    other = [transform(image, label) for _ in range(8)]
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


def test_train_flip_mirrors_image_and_label_together():
    image, label = random_pair(8, 12, seed=2)
    transform = TrainTransform(crop=(8, 12), scale_range=(1.0, 1.0), hflip=True)
    plain_image, plain_label = EvalTransform(pad_multiple=1)(image, label)
    seen = set()
    torch.manual_seed(0)
    for _ in range(30):
        out_image, out_label = transform(image, label)
        flipped = torch.equal(out_label, plain_label.flip(-1)) and not torch.equal(out_label, plain_label)
        expected = plain_image.flip(-1) if flipped else plain_image
        assert torch.allclose(out_image, expected, atol=1e-5)
        assert torch.equal(out_label, plain_label.flip(-1) if flipped else plain_label)
        seen.add(flipped)
    assert seen == {True, False}


class _Pairs(Dataset):
    def __init__(self, transform) -> None:
        self.pairs = [random_pair(40, 56, seed=seed) for seed in range(8)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        return self.transform(*self.pairs[index])


def test_train_is_deterministic_in_dataloader_workers():
    dataset = _Pairs(TrainTransform(crop=(24, 32)))

    def batches() -> list[torch.Tensor]:
        torch.manual_seed(7)
        loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2)
        return [label for _, label in loader]

    first, second = batches(), batches()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_normalisation_uses_imagenet_statistics():
    pixel = np.array([[[255, 0, 128]]], dtype=np.uint8)
    expected = [(value / 255 - m) / s for value, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(normalize(pixel)[:, 0, 0], torch.tensor(expected), atol=1e-5)


def test_eval_pads_to_a_multiple_of_32_with_ignore():
    image, label = random_pair(20, 50, classes=(4, 8))
    out_image, out_label = EvalTransform()(image, label)
    assert out_image.shape == (3, 32, 64) and out_label.shape == (32, 64)
    assert np.array_equal(out_label[:20, :50].numpy(), label)
    assert torch.all(out_label[20:] == IGNORE) and torch.all(out_label[:, 50:] == IGNORE)
    assert torch.all(out_image[:, 20:] == 0) and torch.all(out_image[:, :, 50:] == 0)


def test_eval_keeps_sizes_that_are_already_multiples():
    image, label = random_pair(64, 96)
    out_image, out_label = EvalTransform(pad_multiple=32)(image, label)
    assert out_image.shape == (3, 64, 96) and np.array_equal(out_label.numpy(), label)


def test_eval_resize_uses_nearest_for_labels():
    image, label = random_pair(30, 44, classes=(0, 6, 12))
    out_image, out_label = EvalTransform(size=(45, 70), pad_multiple=1)(image, label)
    assert out_image.shape == (3, 45, 70) and out_label.shape == (45, 70)
    assert set(out_label.unique().tolist()) <= {0, 6, 12, IGNORE}
    expected = np.asarray(Image.fromarray(label).resize((70, 45), Image.NEAREST))
    assert np.array_equal(out_label.numpy(), expected)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TrainTransform(crop=(0, 10)),
        lambda: TrainTransform(crop=(10, 10), scale_range=(2.0, 1.0)),
        lambda: EvalTransform(pad_multiple=0),
        lambda: EvalTransform(size=(0, 5)),
    ],
)
def test_invalid_arguments_are_rejected(make):
    with pytest.raises(ValueError):
        make()


def test_image_label_size_mismatch_is_rejected():
    image, _ = random_pair(10, 10)
    with pytest.raises(ValueError, match="does not match"):
        EvalTransform()(image, np.zeros((10, 11), dtype=np.uint8))
