"""Score a folder of prediction PNGs, made by any tool, against a dataset's ground truth.

Matching rule: every PNG under the prediction folder (subfolders included) is matched to a ground-truth image by
file name. A prediction named `<sample id>.png` matches that image; otherwise `<sample id>_<anything>.png` does
(e.g. `<stem>_pred.png`), and for Cityscapes, whose stems have a fixed width, `<sample id><anything>.png` as in
cityscapesScripts (`<stem>_leftImg8bit.png`, `<stem>.png`, `<stem>*.png`). The sample id is the image's stem
(`dataset.sample_id`). Every ground-truth image needs exactly one matching prediction (two are an error, as in
cityscapesScripts) and every PNG must match an image.

Predictions have the ground truth's native size and hold one value per pixel: `trainids` = class indices 0..C-1 of
the dataset's class mode (255 = a prediction of an ignored label), `labelids` = the encoding of the dataset's label
files (Cityscapes/KITTI label ids 0..33, mapped through the same table as the ground truth).

Scoring follows cityscapesScripts: ground-truth ignore pixels are never counted; a valid pixel predicted as an
ignored label (a void id, 255) counts as a miss of its ground-truth class (a false negative, never a false positive
of another class). Such pixels are kept in `void_predictions`; the confusion matrix stays C x C.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segbench.atomic import atomic_write_json
from segbench.datasets.base import PRED_FORMATS, PairDataset
from segbench.datasets.pairs import read_label_file
from segbench.datasets.palettes import describe_values
from segbench.errors import ConfigError, DatasetError
from segbench.metrics.compute import MACRO_MEANS, compute_metrics, mean_defined

MATCHING_RULE = (
    "a prediction <sample id>.png, else <sample id>_*.png (Cityscapes: <sample id>*.png), searched under the "
    "prediction folder and its subfolders; one prediction per ground-truth image, no unmatched PNG"
)


@dataclass
class PredictionScore:
    matrix: np.ndarray  # int64 [C, C], rows = ground truth, columns = prediction (valid pixels only)
    void_predictions: np.ndarray  # int64 [C]: pixels of each ground-truth class predicted as an ignored label
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]
    predictions: list[Path]  # in dataset order


def match_predictions(dataset: PairDataset, pred_dir: Path) -> list[Path]:
    """The prediction file of every ground-truth image, in dataset order; DatasetError for any mismatch."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DatasetError(f"prediction folder {pred_dir} does not exist or is not a folder.")
    ids = [dataset.sample_id(index) for index in range(len(dataset))]
    repeated = sorted({sample for sample in ids if ids.count(sample) > 1}) if len(set(ids)) != len(ids) else []
    if repeated:
        raise DatasetError(
            f"two ground-truth images of the {dataset.split} split share the name '{repeated[0]}', so predictions "
            "cannot be matched to them by file name."
        )
    known = set(ids)
    found: dict[str, list[Path]] = {}
    for path in sorted(pred_dir.rglob("*.png")):
        stem = path.name[: -len(".png")]
        sample = stem if stem in known else _owner(stem, known, dataset.PREDICTION_ANY_SUFFIX)
        if sample is None:
            raise DatasetError(
                f"prediction {path} matches no ground-truth image of the {dataset.DISPLAY_NAME} {dataset.split} "
                f"split; name each prediction <sample id>.png (e.g. {ids[0] if ids else 'name'}.png) and remove "
                "the others."
            )
        found.setdefault(sample, []).append(path)
    missing = [sample for sample in ids if sample not in found]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {len(ids)} ground-truth images of the {dataset.split} split have no prediction in "
            f"{pred_dir}; the first is {missing[0]}: expected {pred_dir}/{missing[0]}.png."
        )
    for sample in ids:
        if len(found[sample]) > 1:
            first, second = found[sample][:2]
            raise DatasetError(f"predictions {first} and {second} both match ground-truth image {sample}; keep one.")
    return [found[sample][0] for sample in ids]


def _owner(stem: str, known: set[str], any_suffix: bool) -> str | None:
    """The longest sample id that `stem` extends (after '_', or directly with any_suffix)."""
    for end in range(len(stem) - 1, 0, -1):
        if (any_suffix or stem[end] == "_") and stem[:end] in known:
            return stem[:end]
    return None


def score_predictions(
    dataset: PairDataset,
    pred_dir: Path,
    pred_format: str = "trainids",
    progress: Callable[[int, int], None] | None = None,
) -> PredictionScore:
    """Accumulate one confusion matrix over the split from the prediction files (see the module docstring)."""
    if pred_format not in PRED_FORMATS:
        raise ConfigError(f"prediction format '{pred_format}' is unknown; use one of {', '.join(PRED_FORMATS)}.")
    predictions = match_predictions(dataset, pred_dir)
    mapping = dataset.prediction_mapping(pred_format)
    num_classes, ignore = dataset.info.num_classes, dataset.info.ignore_index
    matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)  # last column: predicted an ignored label
    per_image = []
    for index, pred_path in enumerate(predictions):
        truth = dataset.load_label(index)
        raw = read_label_file(pred_path, f"{pred_format} prediction")
        if raw.shape != truth.shape:
            raise DatasetError(
                f"prediction {pred_path} is {raw.shape[1]}x{raw.shape[0]} (W x H) but its ground truth "
                f"{dataset.files[index][1]} is {truth.shape[1]}x{truth.shape[0]}; predictions must have the "
                "label's native size."
            )
        value_counts = np.bincount(raw.ravel(), minlength=256)
        bad = np.flatnonzero((value_counts > 0) & ~mapping.valid)
        if bad.size:
            raise DatasetError(
                f"prediction {pred_path} holds value(s) {', '.join(map(str, bad.tolist()))} that are not "
                f"{pred_format} of this dataset (valid values: {describe_values(mapping.valid)})."
            )
        valid = truth != ignore
        guess = mapping.lut[raw[valid]].astype(np.int64)
        guess[guess == ignore] = num_classes
        truth_valid = truth[valid].astype(np.int64)
        matrix += np.bincount(
            truth_valid * (num_classes + 1) + guess, minlength=num_classes * (num_classes + 1)
        ).reshape(num_classes, num_classes + 1)
        per_image.append(
            {
                "index": index,
                "sample_id": dataset.sample_id(index),
                "prediction": str(pred_path),
                "valid_pixels": int(valid.sum()),
                "correct_pixels": int((guess == truth_valid).sum()),
            }
        )
        if progress is not None:
            progress(index + 1, len(predictions))
    return PredictionScore(
        matrix[:, :num_classes].copy(),
        matrix[:, num_classes].copy(),
        metrics_with_void_predictions(matrix),
        per_image,
        predictions,
    )



def write_score(path: Path, score: PredictionScore, ground_truth: PairDataset, *, dataset: str,
                params: dict[str, Any], split: str, pred_dir: Path, pred_format: str) -> None:
    """Write `score` as JSON at `path`, atomically: the dataset (registered name, its options, the split, classes,
    ignore index, palette, image count), the predictions (folder, format, file count, matching rule), metrics,
    confusion matrix, void predictions and per-image rows."""
    info = ground_truth.info
    atomic_write_json(
        path,
        {
            "dataset": {
                "name": dataset,
                "params": params,
                "split": split,
                "classes": list(info.classes),
                "ignore_index": info.ignore_index,
                "palette": [list(colour) for colour in info.palette],
                "num_val": len(ground_truth),
            },
            "predictions": {
                "folder": str(pred_dir),
                "format": pred_format,
                "files": len(score.predictions),
                "matching": MATCHING_RULE,
            },
            "metrics": score.metrics,
            "confusion_matrix": score.matrix.tolist(),
            "void_predictions": score.void_predictions.tolist(),
            "per_image": score.per_image,
        },
    )

def metrics_with_void_predictions(matrix: np.ndarray) -> dict[str, Any]:
    """`compute_metrics` of a [C, C + 1] matrix whose last column counts valid pixels predicted as ignored labels.

    Those pixels are false negatives of their ground-truth class and false positives of no class (cityscapesScripts);
    means, per-class values and micro specificity run over the C real classes. Without such pixels the result is
    exactly `compute_metrics(matrix[:, :C])`.
    """
    num_classes = matrix.shape[0]
    square = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    square[:num_classes] = matrix
    metrics = compute_metrics(square)
    per_class = {key: values[:num_classes] for key, values in metrics["per_class"].items()}
    tp = np.diag(square)[:num_classes]
    fp = square[:, :num_classes].sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    tn = metrics["num_pixels"] - tp - fp - fn
    pooled = int(tn.sum() + fp.sum())
    metrics.update(
        {mean: mean_defined(per_class[name]) for mean, name in MACRO_MEANS.items()},
        micro_specificity=int(tn.sum()) / pooled if pooled else math.nan,
        per_class=per_class,
        num_classes=num_classes,
    )
    return metrics

