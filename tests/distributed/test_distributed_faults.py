"""A rank that dies fails its cell (named, in bounded time) and the sweep goes on; the rerun resumes the cell from
the last epoch rank 0 saved, at the same world size."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
import torch

from segbench.records.paths import RECORD_FILE, TRAIN_STATE_FILE

from support.grids import Sweep

pytestmark = pytest.mark.slow

FAILED_WITHIN_S = 60  # from the kill to the cell's record: torchrun notices at once and stops the other rank


def rank_process(worker: psutil.Process, rank: int) -> psutil.Process | None:
    """The process of `rank` among a worker's descendants (torchrun's children), if it runs."""
    for child in worker.children(recursive=True):
        try:
            if "segbench.execution.rank" in " ".join(child.cmdline()) and child.environ().get("RANK") == str(rank):
                return child
        except psutil.Error:  # it ended while we looked
            pass
    return None


@pytest.mark.timeout(300)  # 71 s here, 102 s beside another suite (the default bound is 180 s: pyproject.toml)
def test_a_killed_rank_fails_its_cell_the_sweep_goes_on_and_the_rerun_resumes(tmp_path, distributed_grid):
    # Two cells (CE, focal) of 3 epochs; no cost measurement, which the shared `trained` cell covers.
    s = Sweep(tmp_path, distributed_grid("ddp-faults", losses=["ce", "focal"], train={"epochs": 3},
                                         measure={"enabled": False}))
    process = s.start(fault="step_sleep=0.5")
    s.wait_for(lambda: any(s.results.glob(f"cells/*/{TRAIN_STATE_FILE}")), process)
    (state_file,) = s.results.glob(f"cells/*/{TRAIN_STATE_FILE}")
    victim = None
    while victim is None and process.poll() is None:
        victim = next(filter(None, (rank_process(worker, 1) for worker in s.workers())), None)
    assert victim is not None, "rank 1 was not found"
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    s.wait_for(lambda: (state_file.parent / RECORD_FILE).exists(), process, timeout=FAILED_WITHIN_S)
    assert time.monotonic() - killed_at < FAILED_WITHIN_S
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 1, output  # one failed cell; the other one ran

    records = s.records()
    killed = records[state_file.parent.name]
    assert killed["status"] == "failed" and killed["error"]["kind"] == "killed", killed["error"]
    assert killed["error"]["message"].startswith("rank 1 of 2 was killed by signal 9 (SIGKILL)"), killed["error"]
    assert killed["distributed"]["world_size"] == 2
    (other,) = (record for cell_id, record in records.items() if cell_id != state_file.parent.name)
    assert other["status"] == "ok"

    saved_epoch = torch.load(state_file, weights_only=True)["loop"]["epoch"]
    assert saved_epoch >= 1
    again = s.run()
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = s.records()[state_file.parent.name]
    assert resumed["status"] == "ok" and resumed["timing"]["resumed_from_epoch"] == saved_epoch
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    assert s.records()[other["cell_id"]]["written_at"] == other["written_at"]  # not redone
