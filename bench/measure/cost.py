"""Everything segbench records about a model's cost: parameters, MACs, latency and peak memory, in one dict."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segbench.devices import AUTOCAST_DTYPES, resolve_precision
from segbench.grid.cells import Cell
from segbench.grid.schema import MeasureConfig
from segbench.measure.latency import Progress, measure_latency, protocol_latency
from segbench.measure.macs import count_macs
from segbench.measure.memory import measure_memory
from segbench.measure.params import count_params


def measure_model(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device, settings: MeasureConfig,
                  train_shape: tuple[int, ...] | None = None, precision: str = "fp32",
                  optimizer: str = "adamw", progress: Progress | None = None,
                  protocol: tuple[nn.Module, str] | None = None) -> dict[str, Any]:
    """Parameters, MACs (batch 1), latency (batch 1 and N, with the reference ratio) and peak memory of `model`.

    input_shape: (C, H, W) of one evaluation input after padding; train_shape: [B, C, H, W] of a training batch
    (defaults to `settings.batch_size` inputs of `input_shape`); precision: 'fp32', 'bf16' or 'fp16' (autocast).
    progress receives one line before each measurement (and per latency phase). protocol: (the model wrapped in the
    evaluation protocol, its description) when that protocol is more than one forward pass: its batch-1 latency
    is recorded as `latency.protocol`.
    """
    progress = progress or (lambda line: None)
    model = model.to(device).eval()
    train_shape = tuple(train_shape or (settings.batch_size, *input_shape))
    cost: dict[str, Any] = {"params": count_params(model), "input_shape": list(input_shape)}
    if settings.macs:
        progress("counting MACs (fvcore trace, batch 1)")
        try:
            cost["macs"] = count_macs(model, (1, *input_shape))
        except Exception as exc:  # a model fvcore cannot trace still gets its other measurements
            cost["macs"] = {"counter": "fvcore", "error": f"{type(exc).__name__}: {exc}"}
    cost["latency"] = measure_latency(model, input_shape, device, settings, precision, progress)
    if protocol is not None and "error" not in cost["latency"]:
        progress(f"latency of one full image under the evaluation protocol ({protocol[1]})")
        cost["latency"]["protocol"] = protocol_latency(protocol[0], input_shape, device, settings, precision,
                                                       protocol[1])
    if settings.memory:
        progress(f"peak memory of a training step at {list(train_shape)} and an inference batch"
                 f"{' (in a fresh process)' if device.type == 'cpu' else ''}")
        cost["memory"] = measure_memory(model, (settings.batch_size, *input_shape), train_shape, device,
                                        AUTOCAST_DTYPES[precision], optimizer)
    model.eval()
    return cost


def cell_cost(model: nn.Module, cell: Cell, input_shape: tuple[int, int, int], device: torch.device | str, *,
              train_batch_size: int, protocol: tuple[nn.Module, str] | None = None) -> dict[str, Any]:
    """Everything segbench records about the cost of a trained cell's model.

    input_shape: (channels, height, width) of one evaluation input after padding. `cell.measure` holds the
    measurement settings (warm-up, iterations, throughput batch size, whether to count MACs and memory).
    train_batch_size: the batch size the cell actually trained with, which is smaller than `cell.train.batch_size`
    after an out-of-memory retry; the training-step memory is measured on that many crops of `cell.train.crop`.
    """
    device = torch.device(device)
    train_shape = (train_batch_size, input_shape[0], *cell.train.crop)
    return measure_model(model, tuple(input_shape), device, cell.measure, train_shape,
                         resolve_precision(cell.train.precision, device), cell.train.optimizer, protocol=protocol)
