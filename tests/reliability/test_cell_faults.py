"""A cell that diverges, runs out of memory, cannot be built or cannot read its data becomes a record; the sweep
goes on."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from segbench.execution.local import cpu_budget

pytestmark = pytest.mark.slow


def test_divergence_is_recorded_with_iteration_and_last_finite_loss(sweep):
    s = sweep(losses=["ce"])
    result = s.run(fault="nan_loss_at=1")
    assert result.returncode == 1
    (record,) = s.records().values()
    assert record["status"] == "failed"
    error = record["error"]
    # The loss is read every 10 steps and at the end of each epoch (2 steps here): the NaN of iteration 1 is detected
    # at the check after iteration 1, and recorded with the exact iteration and the loss of iteration 0.
    assert error["kind"] == "diverged" and error["iteration"] == 1 and error["nonfinite_iteration"] == 1
    assert error["last_finite_loss"] is not None and error["last_finite_loss"] > 0
    # A deterministic failure is kept, not retried, until --retry-failed.
    again = s.run(fault="nan_loss_at=1")
    assert "0 to run" in again.stderr
    assert s.records()[record["cell_id"]]["written_at"] == record["written_at"]


def test_out_of_memory_is_recorded_and_oom_retry_halves_the_batch(sweep):
    s = sweep(losses=["ce"])
    plain = s.run(fault="oom_above_batch=2")
    assert plain.returncode == 1
    (record,) = s.records().values()
    assert record["status"] == "failed" and record["error"]["kind"] == "oom"

    retried = s.run("--oom-retry", fault="oom_above_batch=2")
    assert retried.returncode == 0, retried.stderr
    (record,) = s.records().values()
    assert record["status"] == "ok" and record["train_batch_size"] == 2
    assert [attempt["batch_size"] for attempt in record["oom_retries"]] == [4]


def test_two_cells_in_flight_split_the_cores_and_out_of_memory_is_still_retried(sweep):
    if cpu_budget() < 2:
        pytest.skip("two cells in flight need two CPU cores")
    s = sweep()
    process = s.start("--parallel", "2", "--oom-retry", fault="oom_above_batch=2,step_sleep=0.1")
    most_in_flight = 0
    while process.poll() is None:
        most_in_flight = max(most_in_flight, len(s.workers()))
        time.sleep(0.05)
    output = process.communicate()[0]
    assert process.returncode == 0, output
    assert most_in_flight == 2 and "2 at a time" in output
    assert output.count("out of memory; retrying at batch size 2") == 2, output
    records = s.records().values()
    assert len(records) == 2
    for record in records:
        assert record["status"] == "ok" and record["train_batch_size"] == 2
        assert [attempt["batch_size"] for attempt in record["oom_retries"]] == [4]
        assert record["execution"]["threads"] == cpu_budget() // 2 and record["execution"]["executor"] == "local"
        assert record["environment"]["device"]["torch_threads"] == cpu_budget() // 2


def test_a_model_that_cannot_be_built_fails_fast_and_the_rest_runs(sweep, tmp_path):
    weights = tmp_path / "resnet34.pth"
    import segmentation_models_pytorch as smp

    from segbench.models.encoders import smp_encoder_names  # noqa: F401  (imports smp before building)

    torch.save(smp.encoders.get_encoder("resnet34", weights=None).state_dict(), weights)
    s = sweep(encoders=["resnet18", "mobilenet_v2"], losses=["ce"], encoder_weights={"resnet18": str(weights)})
    result = s.run()
    assert result.returncode == 1
    by_encoder = {r["config"]["encoder"]: r for r in s.records().values()}
    failed = by_encoder["resnet18"]
    assert failed["status"] == "failed" and failed["error"]["kind"] == "config"
    assert "does not match this encoder" in failed["error"]["message"]
    assert by_encoder["mobilenet_v2"]["status"] == "ok"


def write_cityscapes(root, split: str, count: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        stem = f"city_000000_{index:06d}"
        image_dir = root / "leftImg8bit" / split / "city"
        label_dir = root / "gtFine" / split / "city"
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).save(image_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(rng.choice([7, 8, 11, 21, 23], (64, 128)).astype(np.uint8)).save(
            label_dir / f"{stem}_gtFine_labelIds.png")


def test_a_dataset_that_cannot_be_read_fails_its_cells_only(sweep, tmp_path):
    root = tmp_path / "cityscapes"
    write_cityscapes(root, "train", 4)
    write_cityscapes(root, "val", 2)
    broken = next((root / "leftImg8bit" / "train" / "city").glob("*.png"))
    broken.write_bytes(broken.read_bytes()[:100])  # truncated PNG
    s = sweep(datasets=[{"name": "cityscapes", "params": {"root": str(root)}},
                        {"name": "synthetic", "params": {"n_train": 8, "n_val": 4, "height": 64, "width": 128}}],
              losses=["ce"])
    result = s.run()
    assert result.returncode == 1
    by_dataset = {r["config"]["dataset"]["name"]: r for r in s.records().values()}
    failed = by_dataset["cityscapes"]
    assert failed["status"] == "failed" and broken.name in failed["error"]["message"]
    assert by_dataset["synthetic"]["status"] == "ok"
