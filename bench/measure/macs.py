"""Operation counts: fvcore's MACs of one forward pass, and torchinfo's mult-adds and memory estimate."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from segbench.env import package_version

TORCHINFO_NOTE = "torchinfo estimate (sum of layer output sizes); it ignores activations of parameter-free layers"


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Multiply-accumulates of one forward pass, counted by fvcore on an input of `input_shape` ([1, C, H, W]).

    fvcore counts one fused multiply-add as one "flop", so its total is MACs; it skips the operators it has no
    formula for (listed under `unsupported_ops` with their call counts) and ignores ReLU.
    """
    parameter = next(model.parameters(), None)
    example = torch.zeros(input_shape, device=parameter.device if parameter is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings; skipped operators are recorded below
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(model, example)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
            unsupported = dict(sorted(analysis.unsupported_ops().items()))
    finally:
        model.train(was_training)
    return {
        "counter": "fvcore",
        "counter_version": package_version("fvcore"),
        "input_shape": list(input_shape),
        "macs": macs,
        "gmacs": macs / 1e9,
        "gflops": 2 * macs / 1e9,
        "unsupported_ops": unsupported,
        "convention": "one fused multiply-add counts as one MAC; GFLOPs = 2 x GMACs",
    }


def torchinfo_estimate(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """torchinfo's mult-adds and memory estimate for an input of `input_shape` ([B, C, H, W]); labelled an estimate.

    Sizes in bytes: `forward_backward_bytes` (layer outputs kept for the backward pass), `params_bytes`,
    `input_bytes`.
    """
    import torchinfo

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = torchinfo.summary(model, input_size=tuple(input_shape), device=device, verbose=0, mode="eval")
    finally:
        model.train(was_training)
    return {
        "tool": "torchinfo",
        "tool_version": package_version("torchinfo"),
        "input_shape": list(input_shape),
        "mult_adds": int(stats.total_mult_adds),
        "forward_backward_bytes": int(stats.total_output_bytes),
        "params_bytes": int(stats.total_param_bytes),
        "input_bytes": int(stats.total_input),
        "note": TORCHINFO_NOTE,
    }
