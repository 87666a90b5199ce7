"""Records on disk (write, read, load, resume decisions) and the one record-to-row function."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from segbench import BENCH_SEMANTICS_VERSION
from segbench.errors import SegbenchError
from segbench.records.paths import RECORD_FILE, cell_dir, cells_dir
from segbench.records.rows import (
    ROW_COLUMNS,
    configuration_slug,
    group_key,
    record_row,
    rows_frame,
    time_to_accuracy,
)
from segbench.records.schema import Epoch, LossRef, Record
from segbench.records.store import (
    RECORD_SCHEMA_VERSION,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    error_info,
    is_finished,
    load_records,
    new_record,
    read_record,
    write_record,
)


def cell(model: str = "unet", seed: int = 0, config_hash: str = "abc1234567") -> SimpleNamespace:
    """What `new_record` reads from a cell: id, slug, config hash and the resolved config."""
    slug = f"{model}__resnet18__ce__synthetic__s{seed}"
    config = {"model": model, "encoder": "resnet18", "loss": {"name": "ce"}, "dataset": {"name": "synthetic"},
              "seed": seed, "train": {"epochs": 2}}
    return SimpleNamespace(id=f"{slug}-{config_hash}", slug=slug, config_hash=config_hash, resolved=lambda: config)


def ok_record(model: str = "unet", seed: int = 0, miou: float = 0.5, **parts) -> Record:
    metrics = {"miou": miou, "pixel_accuracy": 0.8, "mdice": math.nan, "per_class": {"specificity": [0.9, None, 0.7]}}
    return new_record(cell(model, seed), STATUS_OK, metrics=metrics, **parts)


def test_a_written_record_reads_back_where_paths_say(tmp_path: Path):
    record = ok_record()
    path = write_record(tmp_path, record)
    assert path == cells_dir(tmp_path) / record.cell_id / RECORD_FILE == cell_dir(tmp_path, record.cell_id) / \
        RECORD_FILE
    back = read_record(path)
    assert isinstance(back, Record)  # NaN is stored as null:
    assert back.to_json() == {**record.to_json(), "metrics": {**record.metrics.to_json(), "mdice": None}}
    assert back.cell_id == "unet__resnet18__ce__synthetic__s0-abc1234567" and back.status == STATUS_OK
    assert back.schema_version == RECORD_SCHEMA_VERSION and back.semantics_version == BENCH_SEMANTICS_VERSION
    assert back.config.train.to_json() == {"epochs": 2} and back.error is None
    assert back.metrics.miou == 0.5
    # the file holds exactly what was given, nothing the models default
    assert json.loads(path.read_text())["config"]["train"] == {"epochs": 2}


def test_damaged_and_foreign_records_are_errors_naming_the_file(tmp_path: Path):
    damaged = tmp_path / "damaged.json"
    damaged.write_text('{"schema_version": 1, "status": "o')
    with pytest.raises(SegbenchError, match=r"damaged\.json cannot be read .*delete its cell folder"):
        read_record(damaged)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(SegbenchError, match=r"foreign\.json has a bad field cell_id \(Field required\); delete its "):
        read_record(foreign)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(SegbenchError, match=r"list\.json is not a segbench record \(it has no schema_version\)"):
        read_record(listed)
    wrong_type = tmp_path / "wrong.json"
    wrong_type.write_text(json.dumps({**ok_record().to_json(), "metrics": {"miou": "high"}}))
    with pytest.raises(SegbenchError, match=r"wrong\.json has a bad field metrics\.miou \(Input should be a valid "):
        read_record(wrong_type)


def test_load_records_keeps_the_readable_and_reports_the_rest(tmp_path: Path):
    assert load_records(tmp_path).records == [] and load_records(tmp_path).unreadable == []
    write_record(tmp_path, ok_record("unet"))
    write_record(tmp_path, ok_record("fpn"))
    broken = cell_dir(tmp_path, "broken") / RECORD_FILE
    broken.parent.mkdir(parents=True)
    broken.write_text("not json")
    loaded = load_records(tmp_path)
    assert [r.slug for r in loaded.records] == ["fpn__resnet18__ce__synthetic__s0",
                                                   "unet__resnet18__ce__synthetic__s0"]  # sorted by folder
    assert len(loaded.unreadable) == 1 and "broken" in loaded.unreadable[0]


@pytest.mark.parametrize(("status", "kind", "retry_failed", "finished"), [
    (STATUS_OK, None, False, True),
    (STATUS_OK, None, True, True),
    (STATUS_FAILED, "exception", False, True),  # a bug does not go away by rerunning
    (STATUS_FAILED, "exception", True, False),
    (STATUS_FAILED, "oom", False, False),  # transient: worth another attempt
    (STATUS_FAILED, "worker_lost", False, False),
    (STATUS_INTERRUPTED, "interrupted", False, False),
])
def test_is_finished(status: str, kind: str | None, retry_failed: bool, finished: bool):
    error = error_info(kind, "message") if kind else None
    record = new_record(cell(), status, error=error)
    assert is_finished(record, "abc1234567", retry_failed) is finished
    assert is_finished(record, "another000", retry_failed) is False  # another config: never reused
    assert is_finished(None, "abc1234567", retry_failed) is False


def test_record_row_flattens_identity_metrics_and_cost():
    cost = {"params": {"total": 1_000_000, "encoder": 600_000, "decoder": 400_000},
            "macs": {"macs": 2_000_000_000, "gmacs": 2.0, "input_shape": [1, 3, 64, 128]},
            "latency": {"latency_ratio": 1.5, "batch_1": {"latency_ms_p50": 12.0}, "batch_n": {"batch_size": 8}},
            "memory": {"train_step": {"peak_allocated_bytes": 300, "increase_bytes": 5},
                       "inference": {"increase_bytes": 200}}}
    history = [{"epoch": 1, "epoch_time_s": 2.0}, {"epoch": 2, "epoch_time_s": 4.0}]
    row = record_row(ok_record(cost=cost, timing={"train_time_s": 6.5}, history=history))
    assert tuple(row) == ROW_COLUMNS
    assert {key: row[key] for key in ("dataset", "model", "encoder", "loss", "seed", "status", "error")} == {
        "dataset": "synthetic", "model": "unet", "encoder": "resnet18", "loss": "ce", "seed": 0, "status": "ok",
        "error": None}
    assert row["label"] == "unet/resnet18/ce/s0" and row["slug"] == "unet__resnet18__ce__synthetic__s0"
    assert row["miou"] == 0.5 and row["mdice"] is None  # NaN becomes None: rows are JSON-ready
    assert row["micro_iou"] is None  # not in the record's metrics
    assert row["macro_specificity"] == pytest.approx(0.8)  # the mean of the defined per-class values
    assert (row["params"], row["params_encoder"], row["gmacs"], row["macs_input_shape"]) == (
        1_000_000, 600_000, 2.0, "1x3x64x128")
    assert row["latency_ratio"] == 1.5 and row["latency_ms_p50"] == 12.0 and row["batch_n"] == 8
    assert row["train_memory_bytes"] == 300  # CUDA peak allocated wins over a CPU resident-set increase
    assert row["inference_memory_bytes"] == 200
    assert row["train_time_s"] == 6.5 and row["epoch_time_s_mean"] == 3.0


def test_a_failed_record_has_a_row_of_nothing_measured():
    record = new_record(cell(), STATUS_FAILED, error=error_info("oom", "CUDA out of memory"))
    row = record_row(record)
    assert row["status"] == "failed" and row["error"] == "oom"
    assert row["miou"] is None and row["params"] is None and row["macro_specificity"] is None
    assert tuple(record_row(record)) == ROW_COLUMNS  # even a record of nothing measured has every column


def test_the_row_says_what_set_the_training_length():
    assert record_row(ok_record())["budget"] == "2 epochs"
    one = ok_record()
    one.config.train.epochs = 1
    assert record_row(one)["budget"] == "1 epoch"
    iterations = ok_record(budget={"basis": "iterations", "iterations": 200})
    iterations.config.train.epochs, iterations.config.train.iterations = None, 200
    assert record_row(iterations)["budget"] == "200 it"
    compute = ok_record(budget={"basis": "tflops", "tflops": 0.5, "iterations": 120,
                                "train_flops_per_iteration": 4.2e9})
    compute.config.train.epochs, compute.config.train.budget = None, {"tflops": 0.5}
    assert record_row(compute)["budget"] == "0.5 TFLOPs (120 it)"
    failed = new_record(cell(), STATUS_FAILED, error=error_info("config", "fvcore could not count it"))
    failed.config.train.epochs, failed.config.train.budget = None, {"tflops": 0.5}
    assert record_row(failed)["budget"] == "0.5 TFLOPs"  # failed before the iterations were counted


def test_group_key_ignores_only_the_seed():
    seeds = [ok_record(seed=seed) for seed in (0, 1, 7)]
    assert len({group_key(record) for record in seeds}) == 1
    assert group_key(seeds[0]).startswith("unet__resnet18__ce__synthetic#")
    other = ok_record()
    other.config.train.epochs = 3
    assert group_key(other) != group_key(seeds[0])
    assert record_row(seeds[2])["group"] == group_key(seeds[0])


def test_rows_frame_ranks_by_miou_with_unmeasured_cells_last():
    records = [ok_record("a", miou=0.2), new_record(cell("b"), STATUS_FAILED), ok_record("c", miou=0.7)]
    assert list(rows_frame(records)["model"]) == ["a", "b", "c"]
    ranked = rows_frame(records, ranked=True)
    assert list(ranked["model"]) == ["c", "a", "b"] and list(ranked.columns) == list(ROW_COLUMNS)
    assert list(rows_frame([]).columns) == list(ROW_COLUMNS)


def test_time_to_accuracy_is_the_first_evaluation_at_90_percent_of_the_final_one():
    history = [{"epoch": 1, "iterations": 10, "epoch_time_s": 2.0, "val_miou": 0.30},
               {"epoch": 2, "iterations": 20, "epoch_time_s": 3.0},  # not evaluated: its time still counts
               {"epoch": 3, "iterations": 30, "epoch_time_s": 4.0, "val_miou": 0.62},  # best, not last
               {"epoch": 4, "iterations": 40, "epoch_time_s": 5.0, "val_miou": 0.55},
               {"epoch": 5, "iterations": 50, "epoch_time_s": 6.0, "val_miou": 0.60}]
    epochs = [Epoch.model_validate(row) for row in history]
    assert time_to_accuracy(epochs) == (9.0, 30)  # 0.62 >= 0.9 x 0.60 at epoch 3: 2 + 3 + 4 s of training
    assert time_to_accuracy(epochs, fraction=0.5) == (2.0, 10)
    assert time_to_accuracy([Epoch(epoch=1, iterations=10, epoch_time_s=2.0)]) == (None, None)
    row = record_row(ok_record(history=history))
    assert (row["time_to_90pct_s"], row["iterations_to_90pct"]) == (9.0, 30)
    assert record_row(ok_record())["time_to_90pct_s"] is None


def test_rows_carry_the_miou_interval_where_the_record_has_one():
    interval = {"miou": {"low": 0.47, "high": 0.53, "confidence": 0.95, "resamples": 1000, "seed": 0}}
    row = record_row(ok_record(intervals=interval))
    assert (row["miou_ci_low"], row["miou_ci_high"]) == (0.47, 0.53)
    assert record_row(ok_record())["miou_ci_low"] is None  # records written before intervals existed


def test_the_loss_is_named_as_in_the_slug():
    record = ok_record()
    record.slug = "unet__resnet18__focal-g1__synthetic__s0"
    record.config.loss = LossRef(name="focal", gamma=1.0)
    row = record_row(record)
    assert row["loss"] == "focal-g1" and row["label"] == "unet/resnet18/focal-g1/s0"
    assert configuration_slug(record.slug) == "unet__resnet18__focal-g1__synthetic"
    assert record_row(ok_record())["loss"] == "ce"
