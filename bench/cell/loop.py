"""One readable training epoch (nanoGPT-style: seeded, explicit autocast, no callback framework).

The loop never waits for the device inside a step: each step's loss stays on the device, and every CHECK_EVERY
steps (and at the end of each epoch) one transfer brings the window's losses to the host, where they are checked for
non-finite values, timed and reported as a progress event. A diverging run is therefore detected at most
CHECK_EVERY - 1 steps after its loss stopped being finite, and still recorded with the exact step where it did.
(fp16 is the exception: torch.amp.GradScaler reads its own inf/NaN check on the host at every step.)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from segbench import faults
from segbench.cell.state import TrainState
from segbench.devices import synchronize, training_autotune
from segbench.errors import ConfigError

Emit = Callable[[dict[str, Any]], None]

CHECK_EVERY = 10  # steps between two reads of the loss on the host (each one waits for the device)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite at step `nonfinite_iteration` (0-based); it was detected at the check
    after step `iteration`; `last_finite_loss` is the loss of the step before the first non-finite one."""

    def __init__(self, iteration: int, loss: float, last_finite_loss: float | None,
                 nonfinite_iteration: int | None = None) -> None:
        nonfinite_iteration = iteration if nonfinite_iteration is None else nonfinite_iteration
        super().__init__(
            f"training loss became {loss} at iteration {nonfinite_iteration} (detected at iteration {iteration}; "
            f"last finite loss: {last_finite_loss}); lower the learning rate or train in higher precision "
            "(train.precision: fp32)"
        )
        self.iteration = iteration
        self.nonfinite_iteration = nonfinite_iteration
        self.last_finite_loss = last_finite_loss


@dataclass
class StepSetup:
    """How every step of a run trains: the module to call (compiled or not), the autocast context, the gradient
    scaler (fp16 only) and the memory format of the input batches. Built once per process by `step_setup`."""

    model: torch.nn.Module
    autocast: contextlib.AbstractContextManager
    scaler: torch.amp.GradScaler | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    cudnn_benchmark: bool = False
    warmup_steps: int = 1  # the first steps of this process, timed apart (cuDNN autotuning, torch.compile)
    warmup_seconds: float | None = None  # their wall time, set once they ran
    optimizer_steps: int = 0  # optimizer.step calls that ran in this process
    # Several ranks: the mean of a window's losses over the ranks (segbench.cell.distributed), so all report and
    # stop at the same values; None for one process.
    loss_reduction: Callable[[torch.Tensor], torch.Tensor] | None = None


def step_setup(model: torch.nn.Module, optimizer: torch.optim.Optimizer, autocast, *, precision: str,
               device: torch.device, channels_last: bool, compile_mode: str | None,
               cudnn_benchmark: bool, loss_reduction: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> StepSetup:
    """The StepSetup of a run: torch.compile(model, mode=compile_mode) when asked (the caller keeps `model` itself
    for evaluation and saving), a GradScaler for fp16, channels_last inputs when the model was converted."""
    setup = StepSetup(
        model=torch.compile(model, mode=compile_mode) if compile_mode else model,
        autocast=autocast,
        scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
        memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        cudnn_benchmark=cudnn_benchmark,
        warmup_steps=3 if compile_mode else 1,  # reduce-overhead records its CUDA graphs on the third call
        loss_reduction=loss_reduction,
    )
    # With a non-fused optimizer GradScaler reads its inf/NaN check on the host (its own wait for the device, once per
    # fp16 step) and calls optimizer.step only when the gradients are finite: counting the calls tells the skipped
    # steps without another read.
    if setup.scaler is not None and optimizer.defaults.get("fused"):
        raise ConfigError("fp16 skipped-step counting needs a non-fused optimizer; use precision bf16 or fp32.")

    def count_step(*_: Any) -> None:
        setup.optimizer_steps += 1

    optimizer.register_step_post_hook(count_step)
    return setup


def train_epoch(model: torch.nn.Module, criterion: torch.nn.Module, optimizer: torch.optim.Optimizer,
                loader: DataLoader, device: torch.device, setup: StepSetup, state: TrainState, epoch: int,
                total_iters: int, lr_at: Callable[[int], float], emit: Emit) -> dict[str, Any]:
    """Train until the end of `loader` or `total_iters`; returns the epoch's history row (loss, lr, time in s).

    `model` is the module whose train/eval mode is set; the steps call `setup.model` (the same one, its
    DistributedDataParallel wrapper, or either compiled).
    Appends one entry per check window to state.step_times: the window's mean step time in s, measured between two
    synchronised reads.
    """
    model.train()
    epoch_start = time.perf_counter()
    window = _Window(state.iteration, epoch_start, setup.loss_reduction)
    loss_sum, steps = 0.0, 0
    if setup.warmup_seconds is None:  # a short first epoch ends the warm-up early
        setup.warmup_steps = min(setup.warmup_steps, len(loader), total_iters - state.iteration)
    with training_autotune(setup.cudnn_benchmark):
        for images, labels in loader:
            if state.iteration >= total_iters:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.iteration)
            window.add(train_step(criterion, optimizer, images, labels, device, setup, state))
            steps += 1
            if setup.warmup_seconds is None and steps == setup.warmup_steps:
                synchronize(device)  # once per process: the warm-up steps are timed apart from the rest
                setup.warmup_seconds = time.perf_counter() - window.timed_from
                window.restart_timing()
            if state.iteration % CHECK_EVERY == 0:
                loss_sum += window.check(state, epoch, emit)
        if window.steps:
            loss_sum += window.check(state, epoch, emit)
    state.train_seconds += time.perf_counter() - epoch_start
    return {"epoch": epoch, "iterations": state.iteration, "train_loss": loss_sum / max(steps, 1),
            "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": time.perf_counter() - epoch_start}


def train_step(criterion, optimizer, images, labels, device, setup: StepSetup, state: TrainState) -> torch.Tensor:
    """One optimisation step; returns the loss as a detached float32 tensor on the device (never read here)."""
    if faults.value("no_training"):
        raise RuntimeError("a training step ran under SEGBENCH_FAULT=no_training")
    if (limit := faults.value("oom_above_batch")) is not None and images.shape[0] > limit:
        raise torch.OutOfMemoryError(f"CUDA out of memory (simulated for a batch of {images.shape[0]})")
    images = images.to(device, non_blocking=True, memory_format=setup.memory_format)
    labels = labels.to(device, non_blocking=True)
    try:
        with setup.autocast:
            logits = setup.model(images)
        loss = criterion(logits.float(), labels)
        if faults.value("nan_loss_at") == state.iteration:
            loss = loss * float("nan")
        optimizer.zero_grad(set_to_none=True)
        if setup.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            stepped = setup.optimizer_steps
            setup.scaler.scale(loss).backward()
            setup.scaler.step(optimizer)
            setup.scaler.update()
            state.skipped_steps += int(setup.optimizer_steps == stepped)
    except RuntimeError as exc:
        if "does not have a deterministic implementation" in str(exc):
            raise ConfigError(f"train.deterministic: {str(exc).split(',')[0]}, which this model or loss needs on "
                              f"{device.type}; set deterministic: false for it.") from exc
        raise
    state.iteration += 1
    if (seconds := faults.value("step_sleep")) is not None:
        time.sleep(seconds)
    return loss.detach()


class _Window:
    """The steps since the last check: their losses, still on the device, and the clock since the last sync."""

    def __init__(self, first_iteration: int, started: float,
                 reduction: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.reduction = reduction
        self.start(first_iteration, started)

    def start(self, first_iteration: int, started: float) -> None:
        self.losses: list[torch.Tensor] = []
        self.first_iteration = first_iteration
        self.timed_from, self.timed_steps = started, 0

    @property
    def steps(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor) -> None:
        self.losses.append(loss)
        self.timed_steps += 1

    def restart_timing(self) -> None:
        self.timed_from, self.timed_steps = time.perf_counter(), 0

    def check(self, state: TrainState, epoch: int, emit: Emit) -> float:
        """Read the window's losses (one transfer: the one wait for the device), raise Diverged at the first
        non-finite one, record the mean step time and emit a progress event; returns the sum of the losses."""
        losses = torch.stack(self.losses)
        values = (losses if self.reduction is None else self.reduction(losses)).tolist()
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                last_finite = values[offset - 1] if offset else state.last_finite_loss
                raise Diverged(state.iteration - 1, value, last_finite, self.first_iteration + offset)
        state.last_finite_loss = values[-1]
        now = time.perf_counter()
        if self.timed_steps:
            state.step_times.append((now - self.timed_from) / self.timed_steps)
        loss_sum = sum(values)
        emit({"event": "step", "epoch": epoch, "iteration": state.iteration, "loss": loss_sum / len(values)})
        self.start(state.iteration, now)
        return loss_sum
