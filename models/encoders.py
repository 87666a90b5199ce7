"""Encoder names and local encoder weights.

Any segmentation-models-pytorch encoder and any timm model with the `tu-` prefix is accepted. The curated list is
what `segbench list encoders` shows and what the did-you-mean suggestions draw from. Nothing is downloaded here:
models are built with random weights, and a user may point at a local weights file (or name pretrained weights,
which pretrained.py finds in the Hugging Face cache).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from torch import nn

from segbench.errors import CheckpointError, UnknownNameError
from segbench.registry import did_you_mean

CURATED_ENCODERS = {
    "resnet18": "ResNet",
    "resnet34": "ResNet",
    "resnet50": "ResNet",
    "resnext50_32x4d": "ResNeXt",
    "mobilenet_v2": "MobileNet",
    "tu-mobilenetv3_large_100": "MobileNet",
}

# Parameter names of classification heads that a backbone's weights file may carry and an encoder does not have.
HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.")


@cache
def smp_encoder_names() -> tuple[str, ...]:
    import segmentation_models_pytorch as smp

    return tuple(smp.encoders.get_encoder_names())


def is_timm_encoder(name: str) -> bool:
    if not name.startswith("tu-"):
        return False
    import timm

    return timm.is_model(name[3:])


def validate_encoder(name: str) -> None:
    """Raise UnknownNameError unless `name` is an smp encoder or `tu-<timm model>`."""
    if name in smp_encoder_names() or is_timm_encoder(name):
        return
    choices = sorted(set(CURATED_ENCODERS) | set(smp_encoder_names()))
    hint = did_you_mean(name, choices)
    raise UnknownNameError(
        f"unknown encoder '{name}'{hint}; use a segmentation-models-pytorch encoder such as "
        f"{', '.join(CURATED_ENCODERS)} or any timm model as 'tu-<timm name>' (see `segbench list encoders`)."
    )


def library_encoder_problem(name: str) -> str | None:
    """Why `name` is not a library encoder (the from-scratch 'native' form, or an unknown name), or None."""
    if name == "native":
        return (
            "'native' is the from-scratch form of a study's own network (r2unet, ddunet, ddunet-same, unet-classic); "
            "this model needs a library encoder"
        )
    try:
        validate_encoder(name)
    except UnknownNameError as exc:
        return str(exc).rstrip(".")
    return None


def encoder_family(name: str) -> str:
    """ResNet / ResNeXt / MobileNet / ... for grouping in reports."""
    if name in CURATED_ENCODERS:
        return CURATED_ENCODERS[name]
    base = name.removeprefix("tu-").lower()
    for key, family in (("resnext", "ResNeXt"), ("resnet", "ResNet"), ("mobilenet", "MobileNet")):
        if base.startswith(key):
            return family
    return "other"


def load_encoder_weights(encoder: nn.Module, path: Path) -> None:
    """Load a local state dict into `encoder` with `weights_only=True`.

    Classification-head entries (fc., classifier., ...) in the file are dropped; any other missing or unexpected
    parameter is an error that names it.
    """
    if not path.is_file():
        raise CheckpointError(
            f"encoder weights file {path} does not exist; point encoder_weights at a local .pth file."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise CheckpointError(
            f"{path} is not a loadable PyTorch state dict ({type(exc).__name__}); save one with "
            "torch.save(model.state_dict(), path)."
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors; save one with torch.save(state_dict).")
    state = {key: value for key, value in state.items() if not key.startswith(HEAD_PREFIXES)}
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} of another shape (e.g. {wrong_shape[0]})")
        raise CheckpointError(
            f"{path} does not match this encoder: {', '.join(problems)} parameters; "
            "it was probably saved from another architecture."
        )
    encoder.load_state_dict(state)
