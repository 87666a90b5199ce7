"""Kill -9 of a worker, of the runner, Ctrl-C, and a crash after a checkpoint: nothing is lost or duplicated."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

pytestmark = pytest.mark.slow

INTERRUPTED_BY_THE_WORKER = "the run was interrupted; run the grid again to resume"


def training_started(sweep) -> bool:
    """Some worker has finished an epoch (its train_state.pt exists)."""
    return any(sweep.results.glob("cells/*/train_state.pt"))


def test_kill_9_of_a_worker_is_recorded_and_the_rerun_completes(sweep):
    s = sweep(train={"epochs": 3, "batch_size": 4, "crop": [64, 128]})
    process = s.start(fault="step_sleep=0.3")
    s.wait_for(lambda: training_started(s), process)
    victim = s.workers()[0].pid
    os.kill(victim, signal.SIGKILL)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 1, output  # a failed cell, the sweep went on
    records = s.records()
    assert len(records) == 2
    killed = [r for r in records.values() if r["status"] == "failed"]
    assert len(killed) == 1 and killed[0]["error"]["kind"] == "killed", output
    assert "signal 9" in killed[0]["error"]["message"]
    assert sum(r["status"] == "ok" for r in records.values()) == 1

    again = s.run()
    assert again.returncode == 0, again.stdout + again.stderr
    final = s.records()
    assert set(final) == set(records) and all(r["status"] == "ok" for r in final.values())
    resumed = final[next(k for k, r in records.items() if r["status"] == "failed")]
    assert resumed["timing"]["resumed_from_epoch"] >= 1  # it continued from its per-epoch checkpoint
    ok_before = next(k for k, r in records.items() if r["status"] == "ok")
    assert final[ok_before]["written_at"] == records[ok_before]["written_at"]  # not redone


def test_kill_9_of_the_runner_stops_its_worker_and_the_rerun_completes(sweep):
    s = sweep(losses=["ce"])
    process = s.start(fault="step_sleep=0.3")
    s.wait_for(lambda: bool(s.workers()), process)
    worker = s.workers()[0].pid
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    psutil.Process(worker).wait(timeout=120)  # the worker must not train on as an orphan
    records = s.records()
    assert all(r["status"] == "interrupted" for r in records.values()), [(r["status"], r.get("error"))
                                                                         for r in records.values()]
    again = s.run()
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["status"] for r in s.records().values()] == ["ok"]


def test_ctrl_c_records_interrupted_and_the_next_run_resumes_it(sweep):
    s = sweep(losses=["ce"], train={"epochs": 3, "batch_size": 4, "crop": [64, 128]})
    process = s.start(fault="step_sleep=0.3")
    s.wait_for(lambda: training_started(s), process)
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    (record,) = s.records().values()
    assert record["status"] == "interrupted" and "run the grid again" in record["error"]["message"]
    assert record["error"]["message"] == INTERRUPTED_BY_THE_WORKER, "the runner wrote it: the worker was cut short"
    again = s.run()
    assert again.returncode == 0, again.stdout + again.stderr
    (record,) = s.records().values()
    assert record["status"] == "ok" and record["timing"]["resumed_from_epoch"] >= 1


def test_ctrl_c_with_two_cells_in_flight_records_both_and_the_next_run_resumes_them(sweep):
    s = sweep(train={"epochs": 3, "batch_size": 4, "crop": [64, 128]})
    process = s.start("--parallel", "2", fault="step_sleep=0.3")
    s.wait_for(lambda: len(list(s.results.glob("cells/*/train_state.pt"))) == 2, process)
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    records = s.records()
    assert [r["error"]["message"] for r in records.values()] == [INTERRUPTED_BY_THE_WORKER] * 2, output
    again = s.run("--parallel", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(r["status"] == "ok" and r["timing"]["resumed_from_epoch"] >= 1 for r in s.records().values())


def test_resume_after_a_crash_ends_exactly_like_an_uninterrupted_run(sweep):
    settings = {"losses": ["ce"], "train": {"epochs": 3, "batch_size": 4, "crop": [64, 128]}}
    crashed = sweep("crashed", **settings)
    first = crashed.run(fault="crash_at_epoch=2")
    assert first.returncode == 1
    (record,) = crashed.records().values()
    assert record["status"] == "failed" and record["error"]["kind"] == "worker_lost"
    assert crashed.run().returncode == 0
    (resumed,) = crashed.records().values()
    assert resumed["timing"]["resumed_from_epoch"] == 2

    reference = sweep("reference", **settings)
    assert reference.run().returncode == 0
    (uninterrupted,) = reference.records().values()
    assert uninterrupted["cell_id"] == resumed["cell_id"]
    assert uninterrupted["confusion_matrix"] == resumed["confusion_matrix"]
    assert [h["train_loss"] for h in uninterrupted["history"]] == [h["train_loss"] for h in resumed["history"]]
