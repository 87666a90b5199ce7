"""`segbench evaluate`: score a folder of prediction PNGs made by any tool against a dataset's ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segbench.cli.common import err_console, user_errors
from segbench.cli.data_cmd import CACHE_OPTION, DATASET_OPTION, PARAM_OPTION, ROOT_OPTION, dataset_params, file_progress


@user_errors
def evaluate(
    dataset: str = DATASET_OPTION,
    root: Path | None = ROOT_OPTION,
    split: str = typer.Option("val", "--split", "-s", help="The ground-truth split the predictions are for."),
    pred: Path = typer.Option(..., "--pred", help="Folder of prediction PNGs (searched with its subfolders)."),
    pred_format: str = typer.Option(
        "trainids",
        "--pred-format",
        help="trainids (class indices 0..C-1) or labelids (the dataset's label-file values).",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the metrics and confusion matrix as JSON."),
    param: list[str] = PARAM_OPTION,
    cache_dir: Path | None = CACHE_OPTION,
) -> None:
    """Score PRED against the ground truth with segbench's metrics (cityscapesScripts rules on Cityscapes data).

    Predictions are matched by name: <sample id>.png, else <sample id>_*.png (Cityscapes: <sample id>*.png).
    """
    from segbench.datasets.check import open_split
    from segbench.metrics.prediction_files import score_predictions, write_score

    params = dataset_params(dataset, root, param)
    ground_truth = open_split(dataset, params, split, cache_dir)
    info = ground_truth.info
    with file_progress() as progress:
        task = progress.add_task(f"{split}: scoring predictions", total=len(ground_truth))
        score = score_predictions(
            ground_truth, pred, pred_format, lambda done, total: progress.update(task, completed=done)
        )
    metrics = score.metrics
    table = Table(title=f"{dataset} {split}: {len(score.predictions)} predictions from {pred}")
    for column in ("class", "IoU", "Dice", "GT pixels", "predicted as ignored"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for index, name in enumerate(info.classes):
        iou, dice = metrics["per_class"]["iou"][index], metrics["per_class"]["dice"][index]
        table.add_row(
            name,
            _number(iou),
            _number(dice),
            f"{metrics['per_class']['gt_pixels'][index]:,}",
            f"{int(score.void_predictions[index]):,}",
        )
    Console().print(table)
    Console().print(
        f"mIoU {_number(metrics['miou'])}  pixel accuracy {_number(metrics['pixel_accuracy'])}  "
        f"mDice {_number(metrics['mdice'])}  (classes absent from ground truth and prediction: NaN, left "
        "out of the means)"
    )
    if out is not None:
        write_score(out, score, ground_truth, dataset=dataset, params=params.model_dump(mode="json"), split=split,
                    pred_dir=pred, pred_format=pred_format)
        err_console.print(f"metrics written to {out}")


def _number(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"
