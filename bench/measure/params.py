"""Parameter counts: unique tensors, with the encoder / decoder split."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn


def _unique_count(parameters: Iterable[nn.Parameter], trainable_only: bool = False) -> int:
    seen: set[int] = set()
    total = 0
    for parameter in parameters:
        if id(parameter) in seen or (trainable_only and not parameter.requires_grad):
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def count_params(model: nn.Module) -> dict[str, Any]:
    """Unique parameters: total, trainable, and the encoder / decoder split when the model has an `encoder`.

    `model.parameters()` yields each shared tensor once, unlike summaries that walk modules and count a reused
    convolution once per use.
    """
    total = _unique_count(model.parameters())
    counts: dict[str, Any] = {"total": total, "trainable": _unique_count(model.parameters(), trainable_only=True)}
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.Module):
        counts["encoder"] = _unique_count(encoder.parameters())
        counts["decoder"] = total - counts["encoder"]
    else:
        counts["encoder"] = None
        counts["decoder"] = None
    return counts
