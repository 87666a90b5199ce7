"""`segbench evaluate` against independent references: sklearn's confusion matrix and cityscapesScripts' formulas."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from typer.testing import CliRunner

from segbench.cli import app
from segbench.datasets import build_dataset, parse_dataset_params
from segbench.metrics.compute import compute_metrics
from segbench.metrics.prediction_files import metrics_with_void_predictions, score_predictions

from support.cityscapes_labels import CATEGORY_OF_ID, IGNORED_IN_EVAL, TRAIN_ID_OF, by_pixel
from support.replicas import save_image, write_camvid, write_cityscapes

WIDE = {"COLUMNS": "400"}
H, W = 16, 24
STEMS = ("aachen_000000_000019", "aachen_000001_000019", "bremen_000000_000019")


@pytest.fixture
def cityscapes(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A val split whose labelIds use every id 0..33 (void and ignoreInEval ids included)."""
    root = tmp_path / "cityscapes"
    return root, write_cityscapes(root, "val", STEMS, size=(H, W))


def write_predictions(folder: Path, predictions: dict[str, np.ndarray], name: str = "{stem}.png") -> Path:
    for stem, prediction in predictions.items():
        save_image(folder / name.format(stem=stem, city=stem.split("_")[0]), prediction.astype(np.uint8))
    return folder


def dataset(root: Path, tmp_path: Path, **options):
    return build_dataset(
        "cityscapes", parse_dataset_params("cityscapes", {"root": str(root), **options}), "val", None, tmp_path
    )


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    return by_pixel(label_ids, TRAIN_ID_OF)


def official_class_iou(gt_ids: list[np.ndarray], pred_ids: list[np.ndarray]) -> np.ndarray:
    """cityscapesScripts `getIouScoreForLabel` on its id-level confusion matrix, per trainId class (NaN if 0/0)."""
    conf = np.zeros((256, 256), dtype=np.int64)
    for gt, pred in zip(gt_ids, pred_ids, strict=True):
        np.add.at(conf, (gt.ravel(), pred.ravel()), 1)
    ious = []
    for label_id in sorted(TRAIN_ID_OF, key=TRAIN_ID_OF.get):
        tp = conf[label_id, label_id]
        fn = conf[label_id, :].sum() - tp  # the whole row: predictions of ignored ids are misses
        not_ignored = [other for other in range(34) if other not in IGNORED_IN_EVAL and other != label_id]
        fp = conf[not_ignored, label_id].sum()  # rows of ignored ground truth never count
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    return np.array(ious)


def official_category_iou(gt_ids: list[np.ndarray], pred_ids: list[np.ndarray], category: str) -> float:
    """cityscapesScripts `getIouScoreForCategory`."""
    conf = np.zeros((256, 256), dtype=np.int64)
    for gt, pred in zip(gt_ids, pred_ids, strict=True):
        np.add.at(conf, (gt.ravel(), pred.ravel()), 1)
    ids = [i for i in range(34) if CATEGORY_OF_ID[i] == category and i not in IGNORED_IN_EVAL]
    tp = conf[np.ix_(ids, ids)].sum()
    fn = conf[ids, :].sum() - tp
    others = [i for i in range(34) if i not in IGNORED_IN_EVAL and CATEGORY_OF_ID[i] != category]
    fp = conf[np.ix_(others, ids)].sum()
    return tp / (tp + fp + fn) if tp + fp + fn else math.nan


def assert_same_floats(actual, expected) -> None:
    np.testing.assert_allclose(
        np.array(actual, dtype=float), np.array(expected, dtype=float), rtol=1e-12, equal_nan=True
    )


def _same_metrics(actual: dict, expected: dict) -> bool:
    for key, value in expected.items():
        if key == "per_class":
            for name, values in value.items():
                assert_same_floats(actual[key][name], values)
        else:
            assert_same_floats(actual[key], value)
    return True


def test_trainid_predictions_agree_with_sklearn(cityscapes, tmp_path):
    root, written = cityscapes
    rng = np.random.default_rng(1)
    predictions = {stem: rng.integers(0, 19, (H, W)) for stem in STEMS}
    score = score_predictions(dataset(root, tmp_path), write_predictions(tmp_path / "pred", predictions))
    expected = np.zeros((19, 19), dtype=np.int64)
    for stem, prediction in predictions.items():
        truth = to_train_ids(written[stem])
        valid = truth != 255  # ground-truth ignore pixels are never counted
        expected += sklearn_confusion_matrix(truth[valid], prediction[valid], labels=list(range(19)))
    assert np.array_equal(score.matrix, expected) and not score.void_predictions.any()
    assert _same_metrics(score.metrics, compute_metrics(expected))
    tp = np.diag(expected)
    iou = tp / (expected.sum(0) + expected.sum(1) - tp)
    assert_same_floats(score.metrics["per_class"]["iou"], iou)
    assert score.metrics["miou"] == pytest.approx(np.nanmean(iou))
    assert [row["sample_id"] for row in score.per_image] == list(STEMS)


def test_labelid_predictions_match_the_official_evaluation(cityscapes, tmp_path):
    root, written = cityscapes
    rng = np.random.default_rng(2)
    # Predictions use every id, void ones included; two classes are never predicted and absent from a crop.
    predictions = {stem: rng.integers(0, 34, (H, W)) for stem in STEMS}
    predictions[STEMS[0]][predictions[STEMS[0]] == 26] = 0
    folder = write_predictions(tmp_path / "pred", predictions, "{city}/{stem}_leftImg8bit.png")
    score = score_predictions(dataset(root, tmp_path), folder, "labelids")
    gts, preds = [written[s] for s in STEMS], [predictions[s] for s in STEMS]
    official = official_class_iou(gts, preds)
    assert_same_floats(score.metrics["per_class"]["iou"], official)
    assert score.metrics["miou"] == pytest.approx(np.nanmean(official), rel=1e-12)
    ignored = list(IGNORED_IN_EVAL)
    assert score.void_predictions.sum() == sum(
        int((np.isin(p, ignored) & ~np.isin(g, ignored)).sum()) for g, p in zip(gts, preds, strict=True)
    )
    categories = dataset(root, tmp_path, classes="categories")
    category_score = score_predictions(categories, folder, "labelids")
    for index, category in enumerate(categories.info.classes):
        assert category_score.metrics["per_class"]["iou"][index] == pytest.approx(
            official_category_iou(gts, preds, category), rel=1e-12
        )


def test_a_class_absent_from_truth_and_prediction_is_nan_and_left_out(cityscapes, tmp_path):
    root, written = cityscapes
    predictions = {stem: np.where(to_train_ids(written[stem]) == 255, 0, to_train_ids(written[stem])) for stem in STEMS}
    for prediction in predictions.values():
        prediction[prediction == 16] = 0  # 'train' is never predicted ...
    for stem in STEMS:  # ... and removed from the ground truth
        labels = written[stem].copy()
        labels[labels == 31] = 0
        save_image(root / "gtFine" / "val" / stem.split("_")[0] / f"{stem}_gtFine_labelIds.png", labels)
    score = score_predictions(dataset(root, tmp_path), write_predictions(tmp_path / "pred", predictions))
    iou = score.metrics["per_class"]["iou"]
    assert math.isnan(iou[16]) and score.metrics["miou"] == pytest.approx(np.mean([v for v in iou if v == v]))


def test_a_trainid_prediction_of_255_is_a_miss_of_the_true_class(cityscapes, tmp_path):
    root, written = cityscapes
    truth = {stem: to_train_ids(written[stem]) for stem in STEMS}
    predictions = {stem: np.where(t == 255, 3, t) for stem, t in truth.items()}
    predictions[STEMS[1]][0, :] = 255
    score = score_predictions(dataset(root, tmp_path), write_predictions(tmp_path / "pred", predictions))
    missed = truth[STEMS[1]][0, :]
    missed = missed[missed != 255]
    assert score.void_predictions.tolist() == np.bincount(missed, minlength=19).tolist()
    gt_pixels = np.array(score.metrics["per_class"]["gt_pixels"])
    tp = np.diag(score.matrix)
    fp = score.matrix.sum(0) - tp
    assert_same_floats(score.metrics["per_class"]["iou"], tp / (gt_pixels + fp))  # fn includes the misses
    assert score.metrics["pixel_accuracy"] == pytest.approx(tp.sum() / gt_pixels.sum())


def test_without_void_predictions_the_metrics_are_compute_metrics():
    matrix = np.random.default_rng(3).integers(0, 50, (5, 5))
    matrix[4, :] = 0
    matrix[:, 4] = 0  # an absent class
    with_column = np.concatenate([matrix, np.zeros((5, 1), dtype=matrix.dtype)], axis=1)
    assert _same_metrics(metrics_with_void_predictions(with_column), compute_metrics(matrix))


# -- matching rule and errors, through the CLI ---------------------------------------------------------------------


def evaluate(root: Path, pred: Path, *extra: str):
    return CliRunner(env=WIDE).invoke(
        app, ["evaluate", "--dataset", "cityscapes", "--root", str(root), "--split", "val", "--pred", str(pred), *extra]
    )


@pytest.mark.parametrize(
    "pattern", ["{stem}.png", "{stem}_leftImg8bit.png", "{city}/{stem}_pred_trainIds.png", "{stem}pred.png"]
)
def test_cityscapes_matching_rule(cityscapes, tmp_path, pattern):
    root, written = cityscapes
    predictions = {stem: np.zeros((H, W)) for stem in STEMS}
    outcome = evaluate(root, write_predictions(tmp_path / "pred", predictions, pattern), "--out", tmp_path / "m.json")
    assert outcome.exit_code == 0, outcome.output
    record = json.loads((tmp_path / "m.json").read_text())
    assert len(record["confusion_matrix"]) == 19 and record["metrics"]["num_classes"] == 19
    assert record["predictions"]["files"] == 3 and record["dataset"]["classes"][0] == "road"
    expected_road = sum(int((to_train_ids(w) == 0).sum()) for w in written.values())
    assert record["confusion_matrix"][0][0] == expected_road


def test_other_datasets_need_a_separator_after_the_sample_id(tmp_path):
    root = tmp_path / "camvid"
    (stem,) = write_camvid(root, "val", 1, size=(H, W), values=(0,))  # every pixel is class 0
    params = parse_dataset_params("camvid", {"root": str(root)})
    camvid = build_dataset("camvid", params, "val", None, tmp_path)
    write_predictions(tmp_path / "ok", {stem: np.zeros((H, W))}, "{stem}_pred.png")
    assert score_predictions(camvid, tmp_path / "ok").metrics["pixel_accuracy"] == 1.0
    write_predictions(tmp_path / "bad", {stem: np.zeros((H, W))}, "{stem}0.png")
    outcome = CliRunner(env=WIDE).invoke(
        app, ["evaluate", "-d", "camvid", "--root", str(root), "--pred", str(tmp_path / "bad")]
    )
    assert outcome.exit_code == 2 and f"{stem}0.png matches no ground-truth image" in outcome.output


def test_prediction_errors_exit_2_naming_the_file(cityscapes, tmp_path):
    root, _ = cityscapes
    good = {stem: np.zeros((H, W)) for stem in STEMS}

    def case(name: str, predictions: dict, pattern: str = "{stem}.png") -> str:
        outcome = evaluate(root, write_predictions(tmp_path / name, predictions, pattern))
        assert outcome.exit_code == 2, outcome.output
        assert outcome.output.startswith("error: ") and outcome.output.count("\n") == 1  # one sentence
        return outcome.output

    assert "1 of 3 ground-truth images" in case("missing", {s: good[s] for s in STEMS[:2]})
    assert "bremen_000000_000019.png" in case("missing2", {s: good[s] for s in STEMS[:2]})
    extra = case("extra", good | {"frankfurt_000000_000294": np.zeros((H, W))})
    assert "frankfurt_000000_000294.png matches no ground-truth image" in extra
    assert "aachen_000001_000019.png is 23x16" in case("size", good | {STEMS[1]: np.zeros((H, W - 1))})
    assert "value(s) 19, 40" in case("range", good | {STEMS[2]: np.full((H, W), 40) - (np.arange(W) % 2) * 21})
    assert "mode RGB" in case("rgb", good | {STEMS[0]: np.zeros((H, W, 3))})
    twice = tmp_path / "twice"
    write_predictions(twice / "a", good)
    assert "both match ground-truth image" in case("twice", good, "b/{stem}_leftImg8bit.png")
    outcome = evaluate(root, tmp_path / "nowhere")
    assert outcome.exit_code == 2 and "nowhere does not exist" in outcome.output
    outcome = evaluate(root, write_predictions(tmp_path / "fmt", good), "--pred-format", "colour")
    assert outcome.exit_code == 2 and "trainids, labelids" in outcome.output
