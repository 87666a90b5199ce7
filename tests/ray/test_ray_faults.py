"""Faults under Ray, through the real CLI joining this module's one-node cluster (two CPUs: one cell at a time):
a worker killed, the driver killed, and a node that does not share the results folder."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

pytestmark = pytest.mark.slow

SLOW_STEPS = "step_sleep=0.3"  # time to act while a cell trains
TWO_EPOCHS = {"epochs": 2, "batch_size": 2, "crop": [32, 64]}


def test_a_killed_worker_fails_its_cell_and_the_others_finish(cluster, sweep):
    s = sweep(address=cluster.address, train=TWO_EPOCHS)
    process = s.start(fault=SLOW_STEPS)
    s.wait_for(lambda: bool(s.workers()), process)
    victim = s.workers()[0]
    victim.send_signal(signal.SIGKILL)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output  # a failed cell; the sweep went on
    records = s.records()
    assert sorted(record["status"] for record in records.values()) == ["failed", "ok"]
    (killed,) = [record for record in records.values() if record["status"] == "failed"]
    assert killed["error"]["kind"] == "killed" and "signal 9" in killed["error"]["message"]
    assert killed["execution"]["executor"] == "ray" and killed["execution"]["node_id"]  # where it was running


def test_after_the_driver_is_killed_the_rerun_resumes_without_redoing_finished_cells(cluster, sweep):
    s = sweep(address=cluster.address, train=TWO_EPOCHS)
    process = s.start(fault=SLOW_STEPS)
    found: list = []

    def one_done_one_training() -> bool:  # the first cell's worker may still be ending after its record
        found[:] = s.workers(training=True)
        return len(s.records()) == 1 and len(found) == 1

    s.wait_for(one_done_one_training, process)
    (worker,) = found
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    psutil.Process(worker.pid).wait(timeout=120)  # Ray ends the dead driver's tasks: no orphan trains on
    before = s.records()
    # Ray kills a dead driver's workers with their child processes, so the cut-short cell may have no record.
    (finished,) = [cell for cell, record in before.items() if record["status"] == "ok"]
    assert all(record["status"] == "interrupted" for cell, record in before.items() if cell != finished)

    again = s.run()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already finished, 1 to run" in again.stderr
    after = s.records()
    assert len(after) == 2 and all(record["status"] == "ok" for record in after.values())
    assert after[finished]["written_at"] == before[finished]["written_at"]  # not redone


def test_a_node_that_does_not_share_the_results_folder_stops_the_run_before_any_training(cluster, sweep):
    # This node writes its probe file to a disk of its own, as a node whose results path is not the shared folder.
    node = cluster.add_node(num_cpus=0, env_vars={"SEGBENCH_FAULT": "unshared_results=1"})
    try:
        cluster.wait_for_nodes()
        s = sweep(address=cluster.address)
        done = s.run()
    finally:
        cluster.remove_node(node)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: node ") and f"Ray node {node.node_id[:8]})" in line
    assert f"writes to {s.results.resolve()} but its file does not appear there on this machine" in line
    assert line.endswith("on every node, or choose one with --results.")
    assert line.count(". ") == 0  # one sentence
    assert not (s.results / "cells").exists()  # nothing trained
