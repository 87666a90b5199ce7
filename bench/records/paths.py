"""Every path and file name inside a results folder, in one place.

Layout of a results folder:
    <results>/.segbench.lock                 held by the one `segbench run` writing into the folder
    <results>/grids/<name>-<hash>.yaml       the resolved grid of every run into this folder
    <results>/cells/<cell id>/record.json    status, config, metrics, confusion matrix, history, cost, environment
    <results>/cells/<cell id>/best.pt        state dict of the selected checkpoint (when training succeeded)
    <results>/cells/<cell id>/train_state.pt resumable training state (removed when the cell finishes)
    <results>/cells/<cell id>/task.json      what the runner asked the worker to do
    <results>/cells/<cell id>/worker.log     the worker's stderr
    <results>/cells/<cell id>/examples/      example images, labels and predictions (PNG)
"""

from __future__ import annotations

from pathlib import Path

LOCK_FILE = ".segbench.lock"
GRIDS_DIR = "grids"
CELLS_DIR = "cells"
RECORD_FILE = "record.json"
CHECKPOINT_FILE = "best.pt"
TRAIN_STATE_FILE = "train_state.pt"
TASK_FILE = "task.json"
WORKER_LOG_FILE = "worker.log"
EXAMPLES_DIR = "examples"


def cells_dir(results: Path) -> Path:
    return Path(results) / CELLS_DIR


def cell_dir(results: Path, cell_id: str) -> Path:
    return cells_dir(results) / cell_id


def grids_dir(results: Path) -> Path:
    return Path(results) / GRIDS_DIR
