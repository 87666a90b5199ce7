"""Every path and file name inside a results folder, in one place.

Layout of a results folder:
    <results>/.segbench.lock                 held by the one `segbench run` writing into the folder
    <results>/grids/<name>-<hash>.yaml       the resolved grid of every run into this folder
    <results>/cells/<cell id>/record.json    status, config, metrics, confusion matrix, history, cost, environment
    <results>/cells/<cell id>/model.pt       state dict of the selected weights (when training succeeded; best.pt in
                                             folders written before benchmark-semantics version 2)
    <results>/cells/<cell id>/per_image_counts.npz  per-image, per-class intersection and union pixel counts
    <results>/cells/<cell id>/model.onnx     the selected weights exported to ONNX (measure.runtimes onnxruntime or
                                             tensorrt), and model.int8.onnx quantized (measure.precisions int8)
    <results>/cells/<cell id>/train_state.pt resumable training state (removed when the cell finishes)
    <results>/cells/<cell id>/task.json      what the runner asked the worker to do
    <results>/cells/<cell id>/worker.log     the worker's stderr
    <results>/cells/<cell id>/examples/      example images, labels and predictions (PNG)
    <results>/cells/<cell id>/tensorboard.json  where the cell's TensorBoard run is (`segbench run --tensorboard`)
    <results>/tuning/studies.db              the Optuna studies of a grid with `tune:` (SQLite; the runner's alone)
    <results>/tuning/cells/<trial id>/...    the tuning trials' cells, laid out as above, apart from the grid's cells
    <results>/mlflow.db, <results>/mlartifacts/  `segbench export mlflow`'s default store and its artifacts
"""

from __future__ import annotations

from pathlib import Path

LOCK_FILE = ".segbench.lock"
GRIDS_DIR = "grids"
CELLS_DIR = "cells"
RECORD_FILE = "record.json"
CHECKPOINT_FILE = "model.pt"
LEGACY_CHECKPOINT_FILE = "best.pt"  # the name before benchmark-semantics version 2
PER_IMAGE_COUNTS_FILE = "per_image_counts.npz"
ONNX_FILE = "model.onnx"  # the selected weights exported for deployment (measure.runtimes, segbench export onnx)
INT8_ONNX_FILE = "model.int8.onnx"  # and quantized to INT8 (measure.precisions: int8)
TRAIN_STATE_FILE = "train_state.pt"
TASK_FILE = "task.json"
WORKER_LOG_FILE = "worker.log"
# Written by `segbench run --tensorboard DIR` (not by the worker): where the cell's TensorBoard run is, so that
# `segbench show` and `segbench report` can say it; {"log_dir": DIR, "run": DIR/<cell id>}, absolute paths.
TENSORBOARD_FILE = "tensorboard.json"
EXAMPLES_DIR = "examples"
TUNING_DIR = "tuning"
MLFLOW_DB_FILE = "mlflow.db"  # `segbench export mlflow`'s default store, in the results folder
MLFLOW_ARTIFACTS_DIR = "mlartifacts"  # beside a SQLite MLflow store: the artifacts of the experiments created there
STUDIES_FILE = "studies.db"


def cells_dir(results: Path) -> Path:
    return Path(results) / CELLS_DIR


def cell_dir(results: Path, cell_id: str) -> Path:
    return cells_dir(results) / cell_id


def tuning_dir(results: Path) -> Path:
    """The results folder of a grid's tuning trials (its own `cells/`), apart from the grid's cells."""
    return Path(results) / TUNING_DIR


def studies_file(results: Path) -> Path:
    return tuning_dir(results) / STUDIES_FILE


def grids_dir(results: Path) -> Path:
    return Path(results) / GRIDS_DIR


def tensorboard_run(cell_folder: Path) -> dict[str, str] | None:
    """{"log_dir", "run"} of a cell logged with `segbench run --tensorboard`, or None (not logged, or unreadable)."""
    import json

    try:
        found = json.loads((Path(cell_folder) / TENSORBOARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and {"log_dir", "run"} <= found.keys() else None
