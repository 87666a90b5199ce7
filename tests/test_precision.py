"""train.precision and the other speed settings: parsing, old-key messages, resolution on a device, autocast on the
CPU, determinism, loader processes, and `segbench profile --precision`."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from segbench.cell.data import loader_settings, resolve_num_workers
from segbench.cli import app
from segbench.devices import autocast_context, autocast_dtype, configure_determinism, resolve_precision
from segbench.errors import ConfigError
from segbench.grid.cells import expand
from segbench.grid.load import apply_overrides, parse_grid
from segbench.grid.schema import MeasureConfig, TrainConfig
from segbench.measure.latency import measure_latency

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
BASE = {
    "name": "t",
    "datasets": [{"name": "synthetic", "params": {"n_train": 8, "n_val": 4, "height": 64, "width": 128}}],
    "models": ["unet"],
    "encoders": ["resnet18"],
    "losses": ["ce"],
    "train": {"epochs": 1, "batch_size": 4, "crop": [64, 128]},
}


def grid_with(*overrides: str):
    return parse_grid(apply_overrides(BASE, list(overrides)), "g.yaml")


def test_defaults_leave_the_machine_out_of_the_grid():
    train = grid_with().train
    assert (train.precision, train.num_workers, train.deterministic, train.channels_last, train.compile) == \
        ("auto", "auto", False, False, None)


@pytest.mark.parametrize("value", ["fp32", "bf16", "fp16", "auto"])
def test_each_precision_parses_and_changes_the_cell_hash(value: str):
    grid = grid_with(f"train.precision={value}")
    assert grid.train.precision == value
    hashes = {expand(grid_with(f"train.precision={p}")).cells[0].config_hash for p in ("fp32", "bf16", "fp16")}
    assert len(hashes) == 3


@pytest.mark.parametrize(("overrides", "expected"), [
    (["train.autocast=true"], "train.autocast was replaced by train.precision: write 'precision: auto' instead"),
    (["train.autocast=false"], "write 'precision: fp32' instead"),
    (["train.autocast=true", "train.autocast_dtype=float16"],
     "train.autocast and train.autocast_dtype were replaced by train.precision: write 'precision: fp16' instead"),
    (["train.autocast_dtype=bfloat16"], "train.autocast_dtype was replaced by train.precision"),
])
def test_old_autocast_keys_say_what_to_write_instead(overrides: list[str], expected: str):
    with pytest.raises(ConfigError) as caught:
        grid_with(*overrides)
    message = str(caught.value)
    assert message.startswith("g.yaml: ") and expected in message
    assert message.endswith(".") and message.count(". ") == 0  # one sentence


@pytest.mark.parametrize(("override", "expected"), [
    ("train.precision=half", "train.precision = 'half' is invalid: Input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
    ("train.compile=fast", "train.compile = 'fast' is invalid"),
    ("train.num_workers=-1", "train.num_workers = -1 is invalid: use auto or a number of loader processes"),
    ("train.num_workers=many", "train.num_workers = 'many' is invalid"),
])
def test_bad_speed_settings_name_the_key(override: str, expected: str):
    with pytest.raises(ConfigError, match="^g.yaml: ") as caught:
        grid_with(override)
    assert expected in str(caught.value)


def test_auto_is_fp32_on_the_cpu_and_explicit_precisions_are_kept():
    assert resolve_precision("auto", CPU) == "fp32"
    for precision in ("fp32", "bf16", "fp16"):
        assert resolve_precision(precision, CPU) == precision
    with pytest.raises(ConfigError, match="one of auto, fp32, bf16, fp16"):
        resolve_precision("float16", CPU)


def fake_gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], name: str) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)


def test_auto_is_bf16_on_a_gpu_with_bfloat16_tensor_cores(monkeypatch: pytest.MonkeyPatch):
    fake_gpu(monkeypatch, (9, 0), "NVIDIA H100 80GB HBM3")
    assert resolve_precision("auto", CUDA) == "bf16"
    assert autocast_dtype(TrainConfig(epochs=1), CUDA) == "bfloat16"
    assert autocast_dtype(TrainConfig(epochs=1, precision="fp16"), CUDA) == "float16"


def test_an_older_gpu_runs_auto_in_fp32_and_refuses_bf16(monkeypatch: pytest.MonkeyPatch):
    fake_gpu(monkeypatch, (7, 5), "Tesla T4")
    assert resolve_precision("auto", CUDA) == "fp32"
    assert resolve_precision("fp16", CUDA) == "fp16"
    with pytest.raises(ConfigError, match="Tesla T4 has none; use fp16, fp32 or auto"):
        resolve_precision("bf16", CUDA)


def test_autocast_runs_on_the_cpu_when_asked_and_not_otherwise():
    conv = nn.Conv2d(3, 4, 3)
    example = torch.randn(1, 3, 8, 8)
    with autocast_context(CPU, "bfloat16"):
        assert conv(example).dtype == torch.bfloat16
    with autocast_context(CPU, None):
        assert conv(example).dtype == torch.float32


def test_deterministic_mode_sets_every_switch_and_is_undone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    benchmark = torch.backends.cudnn.benchmark
    try:
        configure_determinism(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        configure_determinism(False)
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        configure_determinism(False)
        torch.backends.cudnn.benchmark = benchmark


def test_loader_processes_auto_resolve_at_run_time(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("segbench.cell.data.cpu_cores", lambda: 16)
    assert resolve_num_workers("auto", CPU) == 0
    assert resolve_num_workers("auto", CUDA) == 8
    monkeypatch.setattr("segbench.cell.data.cpu_cores", lambda: 3)
    assert resolve_num_workers("auto", CUDA) == 3
    assert resolve_num_workers(5, CPU) == 5
    cell = expand(grid_with()).cells[0]
    assert loader_settings(cell, CPU) == {"num_workers": 0, "pin_memory": False}
    assert loader_settings(cell, CUDA) == {"num_workers": 3, "pin_memory": True, "persistent_workers": True,
                                           "prefetch_factor": 2}


@pytest.mark.slow  # 3 s
def test_latency_records_the_precision_it_was_measured_in():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).to(memory_format=torch.channels_last)
    settings = MeasureConfig(budget_s=None, warmup=1, iters=2, batch_size=2)
    conditions = measure_latency(model, (3, 16, 16), CPU, settings, "bf16")["conditions"]
    assert conditions["precision"] == "bf16" and conditions["autocast"] == "bfloat16"
    assert conditions["memory_format"] == "channels_last"


def test_profile_takes_a_precision_and_refuses_an_unknown_one():
    result = CliRunner().invoke(app, ["profile", "--model", "unet", "--precision", "half", "--device", "cpu"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --precision must be one of auto, fp32, bf16, fp16, not 'half'."
    result = CliRunner().invoke(app, ["profile", "--model", "unet", "--autocast", "bfloat16", "--device", "cpu"])
    assert result.exit_code == 2 and "--autocast" in result.output
