"""The latency time budget: iteration counts calibrated from a fake clock, the minimums, the counts recorded, and
`segbench profile --budget` saying what it does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from segbench.cli import app
from segbench.grid.schema import MeasureConfig
from segbench.measure import measure_latency
from segbench.measure.latency import WARMUP_SHARE, calibrate


class FakeClock:
    """A clock that only moves when a call runs: the first call takes `first_s`, every later one `call_s`."""

    def __init__(self, first_s: float, call_s: float) -> None:
        self.now, self.first_s, self.call_s, self.calls = 0.0, first_s, call_s, 0

    def __call__(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += self.first_s if self.calls == 0 else self.call_s
        self.calls += 1


def test_counts_fill_the_budget_from_the_last_warmup_call():
    clock = FakeClock(first_s=0.5, call_s=0.125)  # binary fractions: the sums below are exact
    warmup, iters = calibrate(clock.call, budget_s=5.0, min_warmup=1, min_iters=5, clock=clock)
    # Warm-up until WARMUP_SHARE of 5 s (1 s) has passed: 0.5 + 4 x 0.125 s, so 5 calls.
    assert WARMUP_SHARE == 0.2
    assert warmup == clock.calls == 5 and clock.now == 1.0
    assert iters == 32  # the 4 s left at 0.125 s per call (the slow first call does not shrink the count)


def test_minimums_win_over_a_budget_too_small_for_them():
    clock = FakeClock(first_s=3.0, call_s=2.0)
    assert calibrate(clock.call, budget_s=1.0, min_warmup=2, min_iters=5, clock=clock) == (2, 5)
    assert clock.calls == 2


def test_without_a_budget_the_counts_are_exactly_the_minimums():
    clock = FakeClock(first_s=0.001, call_s=0.001)
    assert calibrate(clock.call, budget_s=None, min_warmup=3, min_iters=7, clock=clock) == (3, 7)
    assert clock.calls == 3


def test_a_slower_model_gets_fewer_iterations_in_the_same_budget():
    fast, slow = FakeClock(1 / 64, 1 / 64), FakeClock(1 / 16, 1 / 16)
    assert calibrate(fast.call, 2.5, 1, 1, clock=fast) == (32, 128)  # 0.5 s of warm-up, 2 s timed
    assert calibrate(slow.call, 2.5, 1, 1, clock=slow) == (8, 32)


@pytest.mark.slow  # 3 s
def test_measure_latency_records_the_budget_and_the_counts_run():
    net = nn.Conv2d(3, 2, 3, padding=1)
    fixed = measure_latency(net, (3, 8, 8), torch.device("cpu"),
                            MeasureConfig(budget_s=None, warmup=2, iters=3, batch_size=2))
    # batch 1 and the reference pool their two rounds' counts
    assert [fixed[key]["n"] for key in ("batch_1", "reference", "batch_n")] == [6, 6, 3]
    assert [fixed[key]["warmup"] for key in ("batch_1", "reference", "batch_n")] == [4, 4, 2]
    assert [row["n"] for row in fixed["stability"]["rounds"]] == [3, 3]
    assert fixed["conditions"]["budget_s"] is None
    lines: list[str] = []
    timed = measure_latency(net, (3, 8, 8), torch.device("cpu"),
                            MeasureConfig(budget_s=0.4, warmup=1, iters=2, batch_size=2), progress=lines.append)
    conditions = timed["conditions"]
    assert (conditions["budget_s"], conditions["min_warmup"], conditions["min_iters"]) == (0.4, 1, 2)
    assert timed["batch_1"]["n"] == timed["reference"]["n"] >= 4 and timed["batch_n"]["n"] >= 2
    assert conditions["timing_s"] < 10.0  # near the budget (the minimums of the reference workload may pass it)
    # batch 1 round 1 (a quarter of the budget), batch N, batch 1 round 2: a line before and after each
    assert len(lines) == 6 and "round 1 of 2" in lines[0] and "budget 0.1 s" in lines[0]
    assert "latency at batch 2" in lines[2] and "round 2 of 2" in lines[4] and "timed iterations" in lines[5]


@pytest.mark.slow  # times a model for its budget (6 s)
def test_profile_budget_prints_its_phases_and_records_the_counts(tmp_path: Path):
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(app, ["profile", "--model", "unet", "--encoder", "resnet18", "--classes", "3",
                                      "--size", "32x32", "--batch", "2", "--budget", "0.5", "--iters", "2",
                                      "--device", "cpu", "--no-memory", "--no-macs", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "latency at batch 1" in result.output and "latency at batch 2" in result.output
    conditions = json.loads(out.read_text())["cost"]["latency"]["conditions"]
    assert conditions["budget_s"] == 0.5 and conditions["min_iters"] == 2
    assert conditions["min_warmup"] == MeasureConfig().warmup
