"""The training loop: the loss read only at checks (every CHECK_EVERY steps and at the end of an epoch), divergence
found within one window and recorded with its exact iteration, the fp16 gradient scaler and its skipped steps."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from segbench import faults
from segbench.cell.loop import CHECK_EVERY, Diverged, step_setup, train_epoch
from segbench.cell.state import TrainState
from segbench.errors import ConfigError

CPU = torch.device("cpu")
READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.numpy,
         torch.Tensor.cpu}


class Watched(torch.Tensor):
    """A tensor that counts the reads of its values on the host (each one waits for the device on a GPU)."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in READS:
            cls.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


class WatchedLoss(nn.Module):
    """Mean squared logit, as a Watched tensor; `scale_at` multiplies it at one iteration (to overflow fp16)."""

    def __init__(self, state: TrainState, scale_at: int | None = None, scale: float = 1.0) -> None:
        super().__init__()
        self.state, self.scale_at, self.scale = state, scale_at, scale

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = logits.float().pow(2).mean() + 0.0 * labels.float().mean()
        if self.state.iteration == self.scale_at:
            loss = loss * self.scale
        return loss.as_subclass(Watched)


def batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(2, 3, 8, 8, generator=generator), torch.zeros(2, 8, 8, dtype=torch.long))
            for _ in range(count)]


def run_epoch(steps: int, precision: str = "fp32", criterion_args: dict | None = None, total: int | None = None):
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 3, padding=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    autocast = torch.autocast("cpu", dtype=torch.float16) if precision == "fp16" else contextlib.nullcontext()
    setup = step_setup(model, optimizer, autocast, precision=precision, device=CPU, channels_last=False,
                       compile_mode=None, cudnn_benchmark=False)
    state = TrainState()
    events: list[dict] = []
    criterion = WatchedLoss(state, **(criterion_args or {}))
    Watched.reads = 0
    row = train_epoch(model, criterion, optimizer, batches(steps), CPU, setup, state, 1, total or steps,
                      lambda _: 0.01, events.append)
    return row, state, setup, events


def test_the_loss_is_read_once_per_window_and_at_the_end_of_the_epoch():
    row, state, setup, events = run_epoch(25)
    assert Watched.reads == 3  # after iterations 10, 20 and 25: never inside a step
    assert [event["iteration"] for event in events] == [10, 20, 25]
    assert state.iteration == 25 and row["iterations"] == 25 and row["train_loss"] > 0
    # One mean step time per window; the process's first step is timed apart (cuDNN autotuning, compilation).
    assert len(state.step_times) == 3 and all(t > 0 for t in state.step_times)
    assert setup.warmup_steps == 1 and setup.warmup_seconds is not None and setup.warmup_seconds > 0
    assert state.last_finite_loss is not None and state.skipped_steps == 0


def test_a_budget_ending_mid_epoch_is_checked_where_it_ends():
    _, state, _, events = run_epoch(25, total=13)
    assert [event["iteration"] for event in events] == [10, 13] and state.iteration == 13


@pytest.mark.parametrize("nan_at", [0, 7, 13, 19])
def test_divergence_is_found_within_one_window_with_its_exact_iteration(monkeypatch: pytest.MonkeyPatch,
                                                                         nan_at: int):
    monkeypatch.setitem(faults.ACTIVE, "nan_loss_at", nan_at)
    with pytest.raises(Diverged) as caught:
        run_epoch(25)
    error = caught.value
    assert error.nonfinite_iteration == nan_at
    assert nan_at <= error.iteration < nan_at + CHECK_EVERY  # detected at the next check, never later
    assert Watched.reads == nan_at // CHECK_EVERY + 1  # the checks before it, and the one that found it
    assert (error.last_finite_loss is None) == (nan_at == 0)
    if nan_at:
        assert error.last_finite_loss > 0 and f"at iteration {nan_at}" in str(error)


def test_fp16_trains_with_a_gradient_scaler_and_counts_the_steps_it_skips():
    # At iteration 4 the loss is scaled up so far that its fp16 gradients overflow (the loss itself stays finite):
    # GradScaler skips that optimizer step and halves its scale; the other steps train.
    row, state, setup, _ = run_epoch(12, precision="fp16", criterion_args={"scale_at": 4, "scale": 1e6})
    assert setup.scaler is not None and setup.scaler.is_enabled()
    assert state.skipped_steps == 1 and setup.optimizer_steps == 11
    assert setup.scaler.get_scale() == 2.0**16 / 2
    assert state.iteration == 12 and row["train_loss"] > 0


def test_fp32_has_no_scaler_and_skips_nothing():
    _, state, setup, _ = run_epoch(12, criterion_args={"scale_at": 4, "scale": 1e6})
    assert setup.scaler is None and state.skipped_steps == 0 and setup.optimizer_steps == 12


def test_compile_wraps_the_training_module_and_times_its_first_steps_apart(monkeypatch: pytest.MonkeyPatch):
    compiled: list[tuple[nn.Module, str]] = []

    def fake_compile(model, mode=None):
        compiled.append((model, mode))
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = nn.Conv2d(3, 4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    setup = step_setup(model, optimizer, contextlib.nullcontext(), precision="fp32", device=CPU,
                       channels_last=True, compile_mode="reduce-overhead", cudnn_benchmark=False)
    assert compiled == [(model, "reduce-overhead")]
    assert setup.warmup_steps == 3 and setup.memory_format == torch.channels_last


def test_an_operation_without_a_deterministic_kernel_becomes_a_config_error():
    class NoDeterministicKernel(nn.Module):
        def forward(self, logits, labels):
            raise RuntimeError("upsample_bilinear2d_backward_out_cuda does not have a deterministic implementation, "
                               "but you set 'torch.use_deterministic_algorithms(True)'")

    model = nn.Conv2d(3, 4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    setup = step_setup(model, optimizer, contextlib.nullcontext(), precision="fp32", device=CPU,
                       channels_last=False, compile_mode=None, cudnn_benchmark=False)
    with pytest.raises(ConfigError, match="upsample_bilinear2d_backward_out_cuda.*deterministic: false"):
        train_epoch(model, NoDeterministicKernel(), optimizer, batches(2), CPU, setup, TrainState(), 1, 2,
                    lambda _: 0.01, lambda _: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_step_waits_for_the_gpu_between_checks():
    device = torch.device("cuda")
    model = nn.Conv2d(3, 4, 3, padding=1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    setup = step_setup(model, optimizer, torch.autocast("cuda", dtype=torch.bfloat16), precision="bf16",
                       device=device, channels_last=True, compile_mode=None, cudnn_benchmark=True)
    state = TrainState()
    criterion = nn.CrossEntropyLoss()
    train_epoch(model, criterion, optimizer, batches(2), device, setup, state, 1, 2, lambda _: 0.01, lambda _: None)
    pinned = [(images.pin_memory(), labels.pin_memory()) for images, labels in batches(CHECK_EVERY)]  # as loaded
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):  # only the check at the end of the window syncs
            train_epoch(model, criterion, optimizer, pinned, device, setup, state, 2, 2 + CHECK_EVERY,
                        lambda _: 0.01, lambda _: None)
        assert state.iteration == 2 + CHECK_EVERY  # every step ran before the check
    finally:
        torch.cuda.set_sync_debug_mode(0)
