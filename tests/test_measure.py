"""Cost measurement: parameters, MACs against torchinfo, latency statistics, reference ratio, memory, profile CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from segbench.cli import app
from segbench.grid.cells import Cell
from segbench.grid.schema import DatasetSpec, EvalConfig, LossSpec, MeasureConfig, TrainConfig
from segbench.measure import (
    REFERENCE_WORKLOAD,
    cell_cost,
    count_macs,
    count_params,
    cuda_peak_memory,
    latency_stats,
    measure_latency,
    torchinfo_estimate,
)
from segbench.measure.latency import paired_ratio, round_stability
from segbench.models import build_model

CPU = torch.device("cpu")
TINY_SETTINGS = MeasureConfig(budget_s=None, warmup=1, iters=5, batch_size=2)


def tiny_net() -> nn.Module:
    """A picklable (torch-only) segmentation-shaped network: [B, 3, H, W] -> [B, 4, H, W]."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


class SharedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 3, 3, padding=1)
        self.again = self.encoder  # the same module registered twice: its weights must count once
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.again(self.encoder(x)))


def test_params_are_unique_and_split_into_encoder_and_decoder():
    model = build_model("unet", encoder="resnet18", classes=19)
    counts = count_params(model)
    assert counts["total"] == 14_330_819 == sum(p.numel() for p in model.parameters())
    assert counts["encoder"] + counts["decoder"] == counts["total"]
    assert counts["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    assert count_params(model)["trainable"] == counts["decoder"]

    shared = count_params(SharedConv())
    assert shared["total"] == 3 * 3 * 9 + 3 + 3 * 2 + 2
    assert shared["encoder"] == 84 and shared["decoder"] == 8
    assert count_params(tiny_net())["encoder"] is None


@pytest.fixture(scope="module")
def unet34() -> nn.Module:
    return build_model("unet", encoder="resnet34", classes=19).eval()


@pytest.mark.slow  # three MAC counters on a model (5 s)
def test_macs_agree_with_torchinfo_and_the_reference_figure(unet34: nn.Module):
    shape = (1, 3, 128, 256)
    macs = count_macs(unet34, shape)
    assert macs["counter"] == "fvcore" and macs["counter_version"]
    assert isinstance(macs["macs"], int) and macs["input_shape"] == list(shape)
    assert macs["gmacs"] == pytest.approx(macs["macs"] / 1e9)
    assert macs["gflops"] == pytest.approx(2 * macs["gmacs"])
    assert "aten::max_pool2d" in macs["unsupported_ops"]  # fvcore skips pooling and records it
    estimate = torchinfo_estimate(unet34, shape)
    assert macs["macs"] == pytest.approx(estimate["mult_adds"], rel=0.02)
    # The reference gives fvcore 64.05 G at 512x1024; convolutions scale with the pixel count (16x fewer here).
    assert macs["gmacs"] == pytest.approx(64.05 / 16, rel=0.01)
    assert estimate["forward_backward_bytes"] > 0 and "estimate" in estimate["note"]


def test_latency_stats_are_a_monotone_distribution():
    times = [0.010, 0.012, 0.011, 0.030, 0.009, 0.010]
    stats = latency_stats(times, batch_size=4)
    assert stats["n"] == 6
    assert stats["latency_ms_min"] <= stats["latency_ms_p50"] <= stats["latency_ms_p90"] <= max(times) * 1e3
    assert stats["latency_ms_p50"] == pytest.approx(10.5)
    assert stats["latency_ms_mean"] == pytest.approx(np.mean(times) * 1e3)
    assert stats["latency_ms_std"] == pytest.approx(np.std(times, ddof=1) * 1e3)
    assert stats["throughput_images_per_s"] == pytest.approx(4 / 0.0105)
    assert latency_stats([0.5], 1)["latency_ms_std"] == 0.0
    with pytest.raises(ValueError):
        latency_stats([], 1)


def test_measure_latency_records_conditions_and_the_reference_ratio():
    threads = torch.get_num_threads()
    settings = MeasureConfig(budget_s=None, warmup=1, iters=4, batch_size=3, threads=1)
    latency = measure_latency(tiny_net(), (3, 32, 64), CPU, settings)
    assert torch.get_num_threads() == threads  # restored after timing
    for key, batch, n in (("batch_1", 1, 8), ("batch_n", 3, 4)):  # batch 1: two rounds of 4
        stats = latency[key]
        assert stats["batch_size"] == batch and stats["n"] == n
        assert stats["input_shape"] == [batch, 3, 32, 64]
        assert 0 < stats["latency_ms_min"] <= stats["latency_ms_p50"] <= stats["latency_ms_p90"]
        assert stats["throughput_images_per_s"] > 0
    reference = latency["reference"]
    assert reference["workload"] == REFERENCE_WORKLOAD and reference["n"] == 8
    assert reference["input_shape"] == [1, 3, 32, 64]  # the reference runs at the model's own input size
    # the rounds' ratios and their spread (paired_ratio's arithmetic: test_paired_ratio_and_round_spread)
    stability = latency["stability"]
    rounds = [row["latency_ratio"] for row in stability["rounds"]]
    assert len(rounds) == 2 and stability["spread"] == pytest.approx(max(rounds) / min(rounds) - 1)
    assert latency["latency_ratio"] > 0 and "median" in latency["latency_ratio_method"]
    conditions = latency["conditions"]
    machine = conditions["machine"]
    assert machine["threads"] == 1 and machine["device_type"] == "cpu" and len(machine["id"]) == 12
    assert REFERENCE_WORKLOAD in machine["method"] and machine["label"]
    assert conditions["threads"] == 1 and conditions["device_type"] == "cpu" and conditions["dtype"] == "float32"
    assert conditions["autocast"] is None and conditions["memory_format"] == "contiguous_format"
    assert "cudnn_benchmark" in conditions and conditions["device"]


def test_paired_ratio_and_round_spread():
    """The ratio is the median of per-iteration ratios, not a ratio of medians: a burst that slows one iteration's
    model and reference alike leaves it alone."""
    model = [0.010, 0.011, 0.030, 0.010, 0.012]  # the third iteration ran during a burst of load
    reference = [0.005, 0.005, 0.015, 0.005, 0.006]
    assert paired_ratio(model, reference) == pytest.approx(2.0)
    assert float(np.median(model)) / float(np.median(reference)) == pytest.approx(2.2)  # what the pairing avoids
    stability = round_stability([(model, reference), ([0.022] * 3, [0.01] * 3)])
    assert [row["latency_ratio"] for row in stability["rounds"]] == pytest.approx([2.0, 2.2])
    assert stability["spread"] == pytest.approx(0.1) and stability["rounds"][1]["reference_ms_p50"] == pytest.approx(10)


def _cell(measure: MeasureConfig, batch_size: int = 2) -> Cell:
    return Cell(dataset=DatasetSpec(name="synthetic"), model="unet", encoder="resnet18", loss=LossSpec(name="ce"),
                seed=0, train=TrainConfig(epochs=1, batch_size=batch_size, crop=(32, 48)), eval=EvalConfig(),
                measure=measure)


@pytest.mark.slow  # a fresh process (6 s)
def test_cell_cost_measures_everything_with_cpu_memory_in_a_fresh_process():
    model = tiny_net()
    cost = cell_cost(model, _cell(TINY_SETTINGS, batch_size=8), (3, 32, 64), "cpu", train_batch_size=2)
    assert cost["params"]["total"] == count_params(model)["total"]
    assert cost["macs"]["input_shape"] == [1, 3, 32, 64]
    assert cost["macs"]["macs"] == 32 * 64 * (3 * 8 * 9 + 8 * 4)
    assert cost["latency"]["latency_ratio"] > 0
    memory = cost["memory"]
    assert memory["device_type"] == "cpu" and "fresh process" in memory["method"]
    assert memory["train_step"]["input_shape"] == [2, 3, 32, 48]  # the batch it trained with, the cell's crop
    assert memory["inference"]["input_shape"] == [2, 3, 32, 64]
    for phase in ("train_step", "inference"):
        measured = memory[phase]
        assert "error" not in measured, measured
        assert all(isinstance(measured[key], int) for key in ("baseline_rss_bytes", "peak_rss_bytes",
                                                                "increase_bytes"))
        assert measured["peak_rss_bytes"] >= measured["baseline_rss_bytes"] > 0
        assert measured["increase_bytes"] == measured["peak_rss_bytes"] - measured["baseline_rss_bytes"]
    assert memory["estimate"]["tool"] == "torchinfo" and "estimate" in memory["estimate"]["note"]
    json.dumps(cost)  # raw numbers only: the record can store it


@pytest.mark.slow  # trains steps (20 s)
def test_training_step_memory_uses_the_batch_size_the_cell_trained_with(tmp_path: Path):
    """After an out-of-memory retry the cell trains with half its grid batch size; the training-step memory must be
    measured at that size, not at the grid's (which did not fit)."""
    from segbench.cell.pipeline import train_and_evaluate

    dataset = DatasetSpec(name="synthetic", params={"n_train": 4, "n_val": 1, "height": 32, "width": 64, "seed": 0})
    cell = Cell(dataset=dataset, model="unet", encoder="resnet18", loss=LossSpec(name="ce"), seed=0,
                train=TrainConfig(iterations=1, batch_size=4, crop=(32, 64)), eval=EvalConfig(batch_size=1),
                measure=MeasureConfig(budget_s=None, warmup=1, iters=1, batch_size=1, macs=False))
    parts = train_and_evaluate(cell, tmp_path, CPU, emit=lambda event: None, cache_dir=tmp_path, batch_size=2)
    assert parts["train_batch_size"] == 2
    train_step = parts["cost"]["memory"]["train_step"]
    assert "error" not in train_step, train_step
    assert train_step["input_shape"] == [2, 3, 32, 64]
    assert parts["cost"]["memory"]["estimate"]["input_shape"] == [2, 3, 32, 64]


def test_measurements_can_be_switched_off():
    settings = MeasureConfig(budget_s=None, warmup=1, iters=2, batch_size=2, macs=False, memory=False)
    cost = cell_cost(tiny_net(), _cell(settings), (3, 16, 16), "cpu", train_batch_size=2)
    assert "macs" not in cost and "memory" not in cost and cost["latency"]["batch_1"]["n"] == 2 * 2  # two rounds


def test_cuda_peak_memory_resets_the_peak_before_each_phase(monkeypatch: pytest.MonkeyPatch):
    calls: list[str] = []
    peaks = iter([100, 40])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 10)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: next(peaks))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 128)
    device = torch.device("cuda")
    train = cuda_peak_memory(lambda: calls.append("train"), device)
    infer = cuda_peak_memory(lambda: calls.append("infer"), device)
    assert calls == ["reset", "train", "reset", "infer"]
    assert train == {"allocated_before_bytes": 10, "peak_allocated_bytes": 100, "peak_reserved_bytes": 128}
    assert infer["peak_allocated_bytes"] == 40


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_memory_and_latency_on_a_gpu():
    cell = _cell(TINY_SETTINGS)
    model = build_model("unet", encoder="resnet18", classes=19).cuda()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost = cell_cost(model, cell, (3, 64, 128), "cuda", train_batch_size=cell.train.batch_size)
    memory = cost["memory"]
    assert memory["train_step"]["peak_allocated_bytes"] > memory["inference"]["peak_allocated_bytes"] > 0
    assert memory["train_step"]["peak_reserved_bytes"] >= memory["train_step"]["peak_allocated_bytes"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the train step was undone
    assert cost["latency"]["conditions"]["device_type"] == "cuda"


@pytest.mark.slow  # profiles a model (6 s)
def test_profile_command_prints_and_writes_json(tmp_path: Path):
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(app, ["profile", "--model", "unet", "--encoder", "resnet18", "--classes", "5",
                                      "--size", "60x100", "--batch", "2", "--budget", "0", "--warmup", "1",
                                      "--iters", "2", "--device", "cpu", "--no-memory", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "latency ratio" in result.output and "GMACs" in result.output
    profile = json.loads(out.read_text())
    assert profile["cost"]["input_shape"] == [3, 64, 128]  # padded to the model's multiple of 32
    assert profile["requested_size"] == [60, 100] and profile["cost"]["macs"]["macs"] > 0


@pytest.mark.parametrize("size", ["512", "512x", "0x64", "axb"])
def test_profile_rejects_a_bad_size_with_one_line(size: str):
    result = CliRunner().invoke(app, ["profile", "--model", "unet", "--size", size, "--device", "cpu"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --size") and len(result.output.strip().splitlines()) == 1
