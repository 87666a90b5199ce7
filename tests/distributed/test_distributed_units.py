"""The parts of a cell on several processes that need no process group: configuration and hash, sharding and
reassembly of the evaluation, placement of the ranks, out-of-memory retries, and naming the rank that failed."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from segbench import BENCH_SEMANTICS_VERSION
from segbench.cell.distributed import Dist, interleave, rank_threads
from segbench.errors import ConfigError
from segbench.execution import local
from segbench.execution.executor import CellTask
from segbench.execution.launch import diagnose, launcher_failures
from segbench.execution.local import local_slots, oversubscription
from segbench.execution.ray_cluster import CellResources, size_cells
from segbench.execution.runner import _out_of_memory_retry
from segbench.grid.cells import expand
from segbench.grid.load import load_grid, parse_grid
from segbench.grid.schema import resolve_sync_bn
from segbench.records.store import error_info, new_record

from support.grids import tiny_grid

REPO = Path(__file__).resolve().parents[2]

# torchrun's failure summary after rank 1 of 2 was killed (torch 2.14; the worker reads rank and exit code).
KILLED_RANK_1 = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
segbench.execution.rank FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-02_07:59:13
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 20579)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 20579
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_07:59:13
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 20580)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 20580
=======================================================
"""


def cell(**train):
    # 16 training images: enough for every batch below (expansion refuses a batch larger than the train split)
    return expand(parse_grid(tiny_grid(dataset={"n_train": 16}, train=train))).cells[0]


def test_the_global_batch_must_divide_by_the_world_size():
    with pytest.raises(ConfigError) as raised:
        parse_grid(tiny_grid(train={"batch_size": 6, "world_size": 4}))
    message = str(raised.value)
    assert "train.world_size = 4 is invalid: train.batch_size 6 is the global batch and must divide" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert cell(batch_size=8, world_size=4).train.world_size == 4


def test_default_world_size_and_sync_bn_leave_the_hash_as_it_was_and_other_values_change_it():
    default = cell()
    # The hash as computed before these keys existed: the resolved configuration without them.
    before = default.model_dump(mode="json")
    del before["train"]["world_size"], before["train"]["sync_bn"]
    for later in ("weights", "trial"):  # later keys still (issue 21), also absent at their defaults
        before.pop(later, None)
    del before["train"]["budget"]
    for later in ("mode", "crop", "stride", "tta", "datasets", "corruptions"):  # issue 22: absent at defaults
        del before["eval"][later]
    for later in ("runtimes", "precisions", "int8_calibration_images"):  # issue 23: absent at defaults
        del before["measure"][later]
    payload = json.dumps({"semantics_version": BENCH_SEMANTICS_VERSION, "cell": before}, sort_keys=True,
                         separators=(",", ":"))
    assert default.config_hash == hashlib.sha256(payload.encode()).hexdigest()[:10]
    assert "world_size" not in default.resolved()["train"]
    hashes = {default.config_hash, cell(world_size=2).config_hash, cell(sync_bn=False).config_hash,
              cell(world_size=2, sync_bn=False).config_hash}
    assert len(hashes) == 4
    assert cell(world_size=2).resolved()["train"]["world_size"] == 2
    assert type(default).model_validate(cell(world_size=2).resolved()) == cell(world_size=2)


def test_the_ci_grid_keeps_the_cell_ids_of_the_committed_baseline():
    summary = json.loads((REPO / "results" / "baseline" / "summary.json").read_text())
    baseline = {entry["cell_id"] for entry in summary["cells"].values()}
    assert {c.id for c in expand(load_grid(REPO / "grids" / "ci.yaml")).cells} == baseline


@pytest.mark.parametrize("images", [0, 1, 5, 6])
def test_shards_score_every_image_exactly_once_and_reassemble_in_dataset_order(images: int):
    dataset = list(range(images))
    shards = [Dist(rank, 2).shard(dataset) for rank in range(2)]
    assert sorted(index for shard in shards for index in shard.indices) == dataset
    # What each rank's evaluation would report: rows in its loader order, with dataset indices (Dist.merge).
    parts = []
    for shard in shards:
        indices = list(shard.indices)
        counts = np.array([[index, 10 * index] for index in indices], dtype=np.int64).reshape(-1, 2)
        parts.append(([{"index": index, "valid_pixels": index} for index in indices], counts, counts + 1))
    rows, intersection, union = interleave(parts)
    assert [row["index"] for row in rows] == dataset
    assert intersection[:, 0].tolist() == dataset and union[:, 1].tolist() == [10 * i + 1 for i in dataset]
    assert Dist().shard(dataset) is dataset  # one process: the split itself


def test_batch_per_process_threads_per_rank_and_sync_bn():
    assert Dist(0, 4).per_process_batch(8) == 2
    with pytest.raises(ConfigError, match="does not divide by world size 4"):
        Dist(0, 4).per_process_batch(6)
    assert [rank_threads(threads, 2) for threads in (1, 2, 5)] == [1, 1, 2]
    assert resolve_sync_bn("auto", "nccl") and not resolve_sync_bn("auto", "gloo")
    assert not resolve_sync_bn(False, "nccl")
    with pytest.raises(ConfigError, match="SyncBatchNorm cannot run on the CPU"):
        resolve_sync_bn(True, "gloo")


def test_a_cell_gets_as_many_gpus_as_its_world_size(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(local, "cpu_budget", lambda: 8)
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0", "1", "2", "3", "4"])
    assert [(slot.gpu_ids, slot.threads) for slot in local_slots("cuda", None, world_size=2)] == [
        (("0", "1"), 4), (("2", "3"), 4)]
    with pytest.raises(ConfigError, match="each cell gets 2 GPUs .train.world_size. of its own"):
        local_slots("cuda", 3, world_size=2)
    nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 12.0, "GPU": 2.0}, {"CPU": 4.0}]
    assert size_cells(nodes, "cuda", None, None, None, world_size=2) == CellResources(cpus=8, gpus=2,
                                                                                       max_in_flight=3)
    assert size_cells(nodes, "cpu", None, None, None, world_size=2).gpus == 0


def test_more_cpu_ranks_than_cores_is_a_warning():
    assert oversubscription("cpu", 1, 2, 2) is None
    warning = oversubscription("cpu", 2, 2, 2)
    assert "2 cell(s) in flight x train.world_size 2 = 4 training processes on 2 CPU core(s)" in warning
    assert oversubscription("cuda", 4, 4, 1) is None


def test_out_of_memory_retries_keep_the_global_batch_a_multiple_of_the_world_size(tmp_path: Path):
    def retry(batch_size: int, world_size: int) -> int | None:
        task = CellTask(cell(batch_size=batch_size, world_size=world_size), tmp_path, "cpu", tmp_path,
                        uuid.uuid4().hex)
        again = _out_of_memory_retry(task, new_record(task.cell, "failed", error=error_info("oom", "OOM")))
        return None if again is None else again.batch_size

    assert [retry(16, 2), retry(12, 2), retry(4, 2), retry(8, 1), retry(2, 1)] == [8, 6, None, 4, None]


def test_the_first_rank_to_fail_on_its_own_names_the_cell_error():
    assert launcher_failures(KILLED_RANK_1) == {0: -15, 1: -9}
    killed = diagnose([], KILLED_RANK_1, 1, 2)
    assert killed["kind"] == "killed" and killed["rank"] == 1
    assert killed["message"] == ("rank 1 of 2 was killed by signal 9 (SIGKILL) without an error of its own; "
                                 "torchrun stopped the other ranks")
    # The survivor's error caused by the dead peer does not hide the death ...
    peer = {"rank": 0, "time": 2.0, "peer": True, "error": {"kind": "exception", "message": "Connection closed"}}
    assert diagnose([peer], KILLED_RANK_1, 1, 2)["rank"] == 1
    # ... while a rank's own exception (here out of memory) is the cell's error, with its kind.
    own = {"rank": 1, "time": 3.0, "peer": False, "error": {"kind": "oom", "message": "CUDA out of memory"}}
    error = diagnose([peer, own], KILLED_RANK_1, 1, 2)
    assert error["kind"] == "oom" and error["message"] == "rank 1 of 2: CUDA out of memory"
    assert diagnose([peer], "", 1, 2)["message"] == "rank 0 of 2: Connection closed"
    lost = diagnose([], "no summary", 1, 2)
    assert lost["kind"] == "worker_lost" and "torchrun exited with code 1" in lost["message"]


def test_sync_bn_true_on_the_cpu_is_refused_before_anything_is_written(tmp_path: Path):
    from typer.testing import CliRunner

    from segbench.cli import app

    from support.grids import write_grid

    grid = write_grid(tmp_path / "grid.yaml", tiny_grid(train={"world_size": 2, "sync_bn": True}))
    results = tmp_path / "results"
    outcome = CliRunner().invoke(app, ["run", str(grid), "--results", str(results), "--device", "cpu"])
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.startswith("error: train.sync_bn: true needs CUDA GPUs (NCCL)") and "use auto or false" in \
        outcome.output
    assert not results.exists()
