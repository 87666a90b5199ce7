"""segbench.metrics (confusion counting, the compute step) against independent references (scikit-learn, torchmetrics)
and hand-computed matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score, precision_recall_fscore_support
from torchmetrics.classification import MulticlassJaccardIndex

from segbench.metrics.compute import compute_metrics
from segbench.metrics.confusion import ConfusionMatrix, confusion_matrix

IGNORE = 255
NUM_CLASSES = 7
# Class 5 and 6 never occur anywhere; class 4 is predicted but never in the ground truth.
GT_CLASSES = [0, 1, 2, 3]
PRED_CLASSES = [0, 1, 2, 3, 4]


def random_batch(seed: int, shape: tuple[int, ...] = (3, 17, 23)) -> tuple[torch.Tensor, torch.Tensor]:
    """pred and target with about 20% ignore pixels, absent and predicted-only classes, mostly-right predictions."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.tensor(GT_CLASSES)[torch.randint(len(GT_CLASSES), shape, generator=gen)]
    noise = torch.tensor(PRED_CLASSES)[torch.randint(len(PRED_CLASSES), shape, generator=gen)]
    pred = torch.where(torch.rand(shape, generator=gen) < 0.6, target, noise)
    target[torch.rand(shape, generator=gen) < 0.2] = IGNORE
    return pred, target


def valid_numpy(pred: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    keep = target != IGNORE
    return pred[keep].numpy(), target[keep].numpy()


def matrix_from_pairs(matrix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat pred and target tensors whose confusion matrix is `matrix`."""
    rows, cols = np.nonzero(matrix)
    repeats = matrix[rows, cols]
    return torch.from_numpy(np.repeat(cols, repeats)), torch.from_numpy(np.repeat(rows, repeats))


def assert_close_nan(actual: list[float], expected: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    pred, target = random_batch(seed)
    got = confusion_matrix(pred, target, NUM_CLASSES, IGNORE)
    p, t = valid_numpy(pred, target)
    expected = sk_confusion_matrix(t, p, labels=list(range(NUM_CLASSES)))
    assert got.dtype == torch.int64 and got.shape == (NUM_CLASSES, NUM_CLASSES)
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miou_matches_torchmetrics_jaccard(seed: int) -> None:
    # torchmetrics 1.9's MulticlassJaccardIndex (average='macro') gives weight 0 to classes whose row and column sums
    # are both 0, i.e. it excludes classes absent from ground truth and prediction: segbench's rule.
    pred, target = random_batch(seed)
    metrics = compute_metrics(confusion_matrix(pred, target, NUM_CLASSES, IGNORE))
    reference = MulticlassJaccardIndex(num_classes=NUM_CLASSES, ignore_index=IGNORE, average="macro")
    assert metrics["miou"] == pytest.approx(reference(pred, target).item(), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_scores_match_sklearn(seed: int) -> None:
    pred, target = random_batch(seed)
    metrics = compute_metrics(confusion_matrix(pred, target, NUM_CLASSES, IGNORE))
    p, t = valid_numpy(pred, target)
    labels = list(range(NUM_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, average=None, zero_division=np.nan
    )
    per_class = metrics["per_class"]
    assert_close_nan(per_class["precision"], precision)
    assert_close_nan(per_class["recall"], recall)
    assert_close_nan(per_class["dice"], f1)
    assert per_class["gt_pixels"] == support.tolist()
    present = [c for c in labels if c in GT_CLASSES + PRED_CLASSES]
    iou = jaccard_score(t, p, labels=present, average=None)
    assert_close_nan([per_class["iou"][c] for c in present], iou)
    assert metrics["mprecision"] == pytest.approx(np.nanmean(precision), abs=1e-12)
    assert metrics["mrecall"] == pytest.approx(np.nanmean(recall), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_identities(seed: int) -> None:
    pred, target = random_batch(seed)
    matrix = confusion_matrix(pred, target, NUM_CLASSES, IGNORE)
    metrics = compute_metrics(matrix)
    n = metrics["num_pixels"]
    wrong = n - int(matrix.trace())
    p, t = valid_numpy(pred, target)
    assert n == t.size
    assert metrics["pixel_accuracy"] == pytest.approx(float((p == t).mean()), abs=1e-12)
    for name in ("micro_precision", "micro_recall", "micro_dice"):
        assert metrics[name] == pytest.approx(metrics["pixel_accuracy"], abs=1e-12), name
    assert metrics["micro_iou"] == pytest.approx((n - wrong) / (n + wrong), abs=1e-12)
    assert metrics["micro_specificity"] == pytest.approx(1 - wrong / ((NUM_CLASSES - 1) * n), abs=1e-12)


def test_hand_computed_matrix() -> None:
    matrix = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])  # N = 16, trace 12, E = 4
    metrics = compute_metrics(matrix)
    # Per class: TP, FP (column - TP), FN (row - TP), TN.
    # c0: 5, 2, 1, 8   c1: 3, 1, 3, 9   c2: 4, 1, 0, 11
    iou = [5 / 8, 3 / 7, 4 / 5]
    assert metrics["per_class"]["iou"] == pytest.approx(iou)
    assert metrics["per_class"]["dice"] == pytest.approx([10 / 13, 6 / 10, 8 / 9])
    assert metrics["per_class"]["precision"] == pytest.approx([5 / 7, 3 / 4, 4 / 5])
    assert metrics["per_class"]["recall"] == pytest.approx([5 / 6, 3 / 6, 4 / 4])
    assert metrics["per_class"]["specificity"] == pytest.approx([8 / 10, 9 / 10, 11 / 12])
    assert metrics["per_class"]["gt_pixels"] == [6, 6, 4]
    assert metrics["per_class"]["pred_pixels"] == [7, 4, 5]
    assert metrics["per_class"]["gt_share"] == pytest.approx([6 / 16, 6 / 16, 4 / 16])
    assert metrics["pixel_accuracy"] == pytest.approx(12 / 16)
    assert metrics["miou"] == pytest.approx(sum(iou) / 3)
    assert metrics["fwiou"] == pytest.approx(6 / 16 * 5 / 8 + 6 / 16 * 3 / 7 + 4 / 16 * 4 / 5)
    assert metrics["micro_iou"] == pytest.approx(12 / 20)
    assert metrics["micro_specificity"] == pytest.approx(1 - 4 / (2 * 16))
    assert metrics["num_pixels"] == 16 and metrics["num_classes"] == 3
    assert isinstance(metrics["num_pixels"], int) and isinstance(metrics["per_class"]["gt_pixels"][0], int)


def test_library_conventions_on_the_reference_example() -> None:
    # C = 4, class 3 absent everywhere; per-class IoU 1/9, 1/2, 1/3. The three figures quoted in the measurement
    # reference: excluded (segbench, torchmetrics) 0.3148, counted as 1 (smp) 0.4861, counted as 0 (sklearn) 0.2361.
    matrix = np.zeros((4, 4), dtype=np.int64)
    matrix[:3, :3] = [[1, 0, 3], [2, 2, 0], [3, 0, 3]]
    pred, target = matrix_from_pairs(matrix)
    ours = compute_metrics(matrix)
    assert ours["miou"] == pytest.approx(0.3148, abs=5e-5)
    assert math.isnan(ours["per_class"]["iou"][3])
    torchmetrics_miou = MulticlassJaccardIndex(num_classes=4, ignore_index=IGNORE, average="macro")(pred, target)
    assert torchmetrics_miou.item() == pytest.approx(ours["miou"], abs=1e-6)
    sklearn_miou = jaccard_score(target.numpy(), pred.numpy(), labels=range(4), average="macro", zero_division=0)
    assert sklearn_miou == pytest.approx(0.2361, abs=5e-5)
    smp = pytest.importorskip("segmentation_models_pytorch")
    stats = smp.metrics.get_stats(pred[None], target[None], mode="multiclass", num_classes=4)
    assert smp.metrics.iou_score(*stats, reduction="macro").item() == pytest.approx(0.4861, abs=5e-5)


def test_absent_class_rule() -> None:
    # Class 2 absent from both; class 3 predicted but never in the ground truth.
    matrix = np.array([[4, 0, 0, 1], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    metrics = compute_metrics(matrix)
    iou = metrics["per_class"]["iou"]
    assert math.isnan(iou[2])
    assert iou[3] == 0.0
    assert metrics["miou"] == pytest.approx((4 / 5 + 1 + 0) / 3)
    assert metrics["mdice"] == pytest.approx((8 / 9 + 1 + 0) / 3)
    # Precision: class 2 never predicted -> NaN, left out; class 3 predicted -> 0, counted.
    assert math.isnan(metrics["per_class"]["precision"][2])
    assert metrics["mprecision"] == pytest.approx((1 + 1 + 0) / 3)
    # Recall: undefined for classes 2 and 3 (no ground truth), left out.
    assert math.isnan(metrics["per_class"]["recall"][3])
    assert metrics["mrecall"] == pytest.approx((4 / 5 + 1) / 2)


def test_int64_counts_beyond_int32_do_not_overflow() -> None:
    big = 3 * 2**31
    matrix = torch.tensor([[big, 2**31], [0, big]], dtype=torch.int64)
    metrics = compute_metrics(matrix)
    n = 2 * big + 2**31
    assert metrics["num_pixels"] == n
    assert metrics["per_class"]["gt_pixels"] == [big + 2**31, big]
    assert metrics["pixel_accuracy"] == pytest.approx(2 * big / n, rel=1e-12)
    assert metrics["per_class"]["iou"] == pytest.approx([big / (big + 2**31), big / (big + 2**31)], rel=1e-12)
    assert metrics["micro_iou"] == pytest.approx((2 * big) / (n + 2**31), rel=1e-12)


def test_accumulator_accumulates_int64_and_resets() -> None:
    meter = ConfusionMatrix(NUM_CLASSES, ignore_index=IGNORE)
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for seed in range(3):
        pred, target = random_batch(seed)
        meter.update(pred, target)
        p, t = valid_numpy(pred, target)
        total += sk_confusion_matrix(t, p, labels=list(range(NUM_CLASSES)))
    assert meter.matrix.dtype == torch.int64
    np.testing.assert_array_equal(meter.matrix.numpy(), total)
    assert meter.compute()["miou"] == pytest.approx(compute_metrics(total)["miou"])
    meter.reset()
    assert int(meter.matrix.sum()) == 0


def test_logits_are_reduced_with_argmax_not_a_threshold() -> None:
    # Nearly uniform logits: every softmax probability is below 0.5, so a thresholded softmax predicts nothing,
    # while argmax still picks the largest logit for every pixel.
    target = torch.tensor([[[0, 1], [2, 3]]])
    logits = torch.zeros(1, 4, 2, 2)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 2, 1, 0] = 0.1
    logits[0, 0, 1, 1] = 0.1  # pixel of class 3 predicted as 0
    assert logits.softmax(dim=1).max() < 0.5
    meter = ConfusionMatrix(4)
    meter.update(logits, target)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = expected[1, 1] = expected[2, 2] = expected[3, 0] = 1
    np.testing.assert_array_equal(meter.matrix.numpy(), expected)
    with pytest.raises(ValueError, match="logits"):
        meter.update(logits[:, :3], target)


def test_ignore_pixels_never_counted_even_when_predicted() -> None:
    target = torch.tensor([0, 1, IGNORE, IGNORE, IGNORE])
    pred = torch.tensor([0, 1, 2, 0, 1])
    matrix = confusion_matrix(pred, target, 3, IGNORE)
    np.testing.assert_array_equal(matrix.numpy(), [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    metrics = compute_metrics(matrix)
    assert metrics["num_pixels"] == 2
    assert metrics["per_class"]["pred_pixels"] == [1, 1, 0]
    assert math.isnan(metrics["per_class"]["iou"][2])


@pytest.mark.parametrize(
    ("pred", "target"),
    [([0, 1, 2], [0, 1, 5]), ([0, 1, 3], [0, 1, 2]), ([-1, 1, 2], [0, 1, 2]), ([0, IGNORE, 2], [0, 1, 2])],
)
def test_out_of_range_labels_raise(pred: list[int], target: list[int]) -> None:
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(torch.tensor(pred), torch.tensor(target), 3, IGNORE)


def test_all_ignore_and_all_zero_give_nan_not_an_error() -> None:
    matrix = confusion_matrix(torch.tensor([0, 1]), torch.tensor([IGNORE, IGNORE]), 3, IGNORE)
    assert int(matrix.sum()) == 0
    metrics = compute_metrics(matrix)
    assert metrics["num_pixels"] == 0
    for name in ("pixel_accuracy", "miou", "mdice", "mprecision", "mrecall", "fwiou", "micro_iou", "micro_specificity"):
        assert math.isnan(metrics[name]), name


def test_compute_metrics_accepts_numpy_and_tensor_alike() -> None:
    pred, target = random_batch(4)
    matrix = confusion_matrix(pred, target, NUM_CLASSES, IGNORE)
    from_tensor = compute_metrics(matrix)
    from_numpy = compute_metrics(matrix.numpy())
    assert from_tensor["miou"] == from_numpy["miou"]
    assert from_tensor["per_class"]["gt_pixels"] == from_numpy["per_class"]["gt_pixels"]
    with pytest.raises(ValueError, match="square"):
        compute_metrics(np.zeros((2, 3), dtype=np.int64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_matrix_stays_on_the_input_device() -> None:
    pred, target = random_batch(5)
    meter = ConfusionMatrix(NUM_CLASSES)
    meter.update(pred.cuda(), target.cuda())
    assert meter.matrix.device.type == "cuda"
    np.testing.assert_array_equal(meter.matrix.cpu().numpy(), confusion_matrix(pred, target, NUM_CLASSES).numpy())
