"""A cell trained by two processes records ok, and its sharded evaluation is exactly a one-process evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segbench.cell.data import dataset_info, make_datasets
from segbench.cell.evaluate import evaluate_model
from segbench.grid.cells import Cell
from segbench.models import MODELS, build_model
from segbench.records.paths import CHECKPOINT_FILE, PER_IMAGE_COUNTS_FILE, TRAIN_STATE_FILE, WORKER_LOG_FILE

pytestmark = pytest.mark.slow


def test_world_size_2_trains_on_two_gloo_processes_and_records_ok(trained):
    (record,) = trained.records().values()
    assert record["status"] == "ok", record["error"]
    assert record["config"]["train"]["world_size"] == 2
    assert record["distributed"] == {
        "world_size": 2, "backend": "gloo", "global_batch_size": 4, "batch_size_per_process": 2, "sync_bn": False,
        "threads_per_rank": max(1, record["execution"]["threads"] // 2),
        "launcher": "torch.distributed.run --standalone"}
    assert record["train_batch_size"] == 4
    # 8 training images, 4 per rank, 2 per step: 2 steps per epoch, as one process with batch 4.
    assert [row["iterations"] for row in record["history"]] == [2, 4]
    images = record["dataset"]["num_val"]
    assert images % 2 == 1  # the ranks score 3 and 2 images
    assert [row["index"] for row in record["per_image"]] == list(range(images))
    assert record["cost"]["params"]["total"] > 0 and "latency" in record["cost"] and record["examples"]
    folder = trained.results / "cells" / record["cell_id"]
    assert (folder / CHECKPOINT_FILE).is_file() and not (folder / TRAIN_STATE_FILE).exists()
    assert "Traceback" not in (folder / WORKER_LOG_FILE).read_text()


def test_sharded_evaluation_equals_one_process_evaluation_of_the_checkpoint(trained, monkeypatch):
    (record,) = trained.records().values()
    folder = trained.results / "cells" / record["cell_id"]
    cell = Cell.model_validate(record["config"])
    _, val_set = make_datasets(cell, MODELS.get(cell.model).pad_multiple, None)
    assert len(val_set) == record["dataset"]["num_val"]
    info = dataset_info(val_set)
    model = build_model(cell.model, encoder=cell.encoder, classes=info.num_classes, encoder_weights=None)
    model.load_state_dict(torch.load(folder / CHECKPOINT_FILE, weights_only=True))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank computed
    try:
        single = evaluate_model(model, DataLoader(val_set, batch_size=cell.eval.batch_size), info,
                                torch.device("cpu"), torch.no_grad(), final=True)
    finally:
        torch.set_num_threads(threads)
    assert record["confusion_matrix"] == single.matrix.tolist()
    assert sum(map(sum, record["confusion_matrix"])) == sum(row["valid_pixels"] for row in single.per_image)
    assert [(row["valid_pixels"], row["correct_pixels"]) for row in record["per_image"]] == [
        (row["valid_pixels"], row["correct_pixels"]) for row in single.per_image]
    counts = np.load(Path(folder) / PER_IMAGE_COUNTS_FILE)
    np.testing.assert_array_equal(counts["intersection"], single.intersection)
    np.testing.assert_array_equal(counts["union"], single.union)
    assert list(counts["sample_id"]) == [row["sample_id"] for row in record["per_image"]]
    # The final evaluation's calibration bins and boundary counts, summed over the two ranks.
    calibration, boundary = single.calibration.compute(), single.boundary.compute()
    assert [b["pixels"] for b in record["calibration"]["bins"]] == [b["pixels"] for b in calibration["bins"]]
    assert record["calibration"]["ece"] == pytest.approx(calibration["ece"], abs=1e-9)
    assert (record["boundary"]["intersection"], record["boundary"]["union"]) == (boundary["intersection"],
                                                                               boundary["union"])
