"""Placement of the cells in flight on this host (a GPU each, an even share of the CPU threads), and the local
executor's event stream."""

from __future__ import annotations

import pytest
import torch

from segbench.errors import ConfigError
from segbench.execution import local
from segbench.execution.events import EVENT_PREFIX, emit, parse_event
from segbench.execution.local import LocalProcessExecutor, local_slots, visible_gpus


@pytest.fixture
def four_cpu_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "cpu_budget", lambda: 4)


def test_one_cell_on_the_cpu_gets_every_thread_by_default(four_cpu_threads):
    (slot,) = local_slots("cpu", None)
    assert slot.threads == 4 and slot.gpu_ids is None and slot.executor == "local"
    assert slot.to_json() == {"executor": "local", "threads": 4, "host": slot.host, "gpu_ids": None}


def test_cells_in_flight_on_the_cpu_split_the_threads_evenly(four_cpu_threads):
    assert [slot.threads for slot in local_slots("cpu", 2)] == [2, 2]
    assert [slot.threads for slot in local_slots("cpu", 3)] == [1, 1, 1]
    with pytest.raises(ConfigError, match="more cells in flight than the 4 CPU cores"):
        local_slots("cpu", 5)


@pytest.mark.parametrize("parallel", [0, -2])
def test_fewer_than_one_cell_in_flight_is_refused(parallel: int):
    with pytest.raises(ConfigError, match=f"--parallel must be at least 1, not {parallel}"):
        local_slots("cpu", parallel)


def test_each_cell_on_cuda_gets_a_gpu_of_its_own(four_cpu_threads, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(local, "visible_gpus", lambda: ["2", "5"])
    assert [(slot.gpu_ids, slot.threads) for slot in local_slots("cuda", None)] == [(("2",), 2), (("5",), 2)]
    assert [(slot.gpu_ids, slot.threads) for slot in local_slots("cuda", 1)] == [(("2",), 4)]
    with pytest.raises(ConfigError, match="than the 2 visible GPUs"):
        local_slots("cuda", 3)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, GPU-8f2c,7")
    assert visible_gpus() == ["3", "GPU-8f2c"]  # CUDA stops at what it can use
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]


def test_the_local_executor_checks_parallel_before_anything_runs():
    with pytest.raises(ConfigError):
        LocalProcessExecutor("cpu", 0)
    assert LocalProcessExecutor("cpu", None).max_in_flight == 1


def test_events_round_trip_and_other_lines_are_not_events(capsys: pytest.CaptureFixture):
    emit({"event": "step", "epoch": 1, "iteration": 3, "loss": 0.5})
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(EVENT_PREFIX)
    assert parse_event(line) == {"event": "step", "epoch": 1, "iteration": 3, "loss": 0.5}
    for other in ("Downloading weights...", EVENT_PREFIX + "{not json", EVENT_PREFIX + "[1, 2]"):
        assert parse_event(other) is None

