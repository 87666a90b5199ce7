"""One readable training epoch (nanoGPT-style: seeded, explicit autocast, no callback framework)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from segbench.cell.state import TrainState
from segbench.execution import faults

Emit = Callable[[dict[str, Any]], None]


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, iteration: int, loss: float, last_finite_loss: float | None) -> None:
        super().__init__(
            f"training loss became {loss} at iteration {iteration} (last finite loss: {last_finite_loss}); "
            "lower the learning rate or disable autocast"
        )
        self.iteration = iteration
        self.last_finite_loss = last_finite_loss


def train_epoch(model: torch.nn.Module, criterion: torch.nn.Module, optimizer: torch.optim.Optimizer,
                loader: DataLoader, device: torch.device, autocast, state: TrainState, epoch: int,
                total_iters: int, lr_at: Callable[[int], float], emit: Emit) -> dict[str, Any]:
    """Train until the end of `loader` or `total_iters`; returns the epoch's history row (loss, lr, time in s)."""
    model.train()
    epoch_start = time.perf_counter()
    loss_sum, steps = 0.0, 0
    step_start = time.perf_counter()
    for images, labels in loader:
        if state.iteration >= total_iters:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(state.iteration)
        loss_value = train_step(model, criterion, optimizer, images, labels, device, autocast, state)
        loss_sum += loss_value
        steps += 1
        now = time.perf_counter()
        state.step_times.append(now - step_start)
        step_start = now
        emit({"event": "step", "epoch": epoch, "iteration": state.iteration, "loss": loss_value})
    state.train_seconds += time.perf_counter() - epoch_start
    return {"epoch": epoch, "iterations": state.iteration, "train_loss": loss_sum / max(steps, 1),
            "lr": optimizer.param_groups[0]["lr"], "epoch_time_s": time.perf_counter() - epoch_start}


def train_step(model, criterion, optimizer, images, labels, device, autocast, state: TrainState) -> float:
    """One optimisation step; raises Diverged on a non-finite loss. Returns the loss value."""
    if (limit := faults.value("oom_above_batch")) is not None and images.shape[0] > limit:
        raise torch.OutOfMemoryError(f"CUDA out of memory (simulated for a batch of {images.shape[0]})")
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    with autocast:
        logits = model(images)
    loss = criterion(logits.float(), labels)
    if faults.value("nan_loss_at") == state.iteration:
        loss = loss * float("nan")
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise Diverged(state.iteration, loss_value, state.last_finite_loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    state.last_finite_loss = loss_value
    state.iteration += 1
    if (seconds := faults.value("step_sleep")) is not None:
        time.sleep(seconds)
    return loss_value
