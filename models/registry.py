"""The model registry: the runner asks `build_model(name, encoder=..., classes=...)` and never imports an
architecture. Each entry knows which encoders it accepts and which input sizes it can take, so a grid can be
checked before anything trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from segbench.errors import ConfigError
from segbench.models.encoders import library_encoder_problem, load_encoder_weights
from segbench.models.pretrained import NO_WEIGHTS, cached_or_fail, load_pretrained
from segbench.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """One architecture.

    build: `(encoder, classes, in_channels) -> nn.Module` returning logits [B, classes, H, W] for input [B, C, H, W].
    pad_multiple: the evaluation pads inputs (bottom/right) to a multiple of this; valid for every accepted encoder.
    check_encoder: `(encoder) -> reason or None`; a reason means the pair is invalid and is skipped at expansion.
    check_size: `(height, width) -> reason or None` for sizes the model cannot take with any encoder. Grid expansion
        passes the training crop, which is fed to the model as it is (only evaluation inputs are padded).
    check_encoder_size: `(encoder, height, width) -> reason or None` for size limits of one encoder form, e.g. the
        study's DDU-Net (`ddunet` with `native`) takes only 256x256 while `ddunet` on a library encoder takes any
        multiple of 32. Called only for pairs that passed `check_encoder` and `check_size`.
    """

    name: str
    build: Callable[[str, int, int], nn.Module]
    description: str
    pad_multiple: int = 32
    check_encoder: Callable[[str], str | None] = lambda encoder: None
    check_size: Callable[[int, int], str | None] = lambda height, width: None
    check_encoder_size: Callable[[str, int, int], str | None] = lambda encoder, height, width: None


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(entry: ModelEntry) -> ModelEntry:
    return MODELS.register(entry.name)(entry)


def incompatibility(name: str, encoder: str, size: tuple[int, int] | None = None) -> str | None:
    """Why `name` cannot run with `encoder` at `size` (H, W), or None when it can."""
    entry = MODELS.get(name)
    reason = entry.check_encoder(encoder)
    if reason is None and size is not None:
        reason = entry.check_size(*size) or entry.check_encoder_size(encoder, *size)
    return reason


def multiple_reason(name: str, multiple: int, height: int, width: int, why: str) -> str | None:
    """A reason when (height, width) is not a multiple of `multiple`, naming the nearest valid crops."""
    if height % multiple == 0 and width % multiple == 0:
        return None
    from segbench.datasets.transforms import padded_size  # here: importing segbench.datasets registers them all

    lower = [max(multiple, size // multiple * multiple) for size in (height, width)]
    upper = list(padded_size((height, width), multiple))
    return (
        f"{name} needs height and width that are multiples of {multiple} ({why}), got {height}x{width}; "
        f"use a crop such as {lower} or {upper}"
    )


def native_only(model: str, alternative: str) -> Callable[[str], str | None]:
    """check_encoder of a from-scratch network that has its own encoder and takes only 'native'."""

    def check(encoder: str) -> str | None:
        if encoder == "native":
            return None
        return (
            f"{model} is a from-scratch study network with its own encoder and takes only encoder 'native'; "
            f"for '{encoder}' use {alternative}"
        )

    return check


def native_entry(
    name: str,
    description: str,
    native: Callable[[int, int], nn.Module],
    multiple: int,
    multiple_why: str,
    alternative: str,
) -> ModelEntry:
    """The entry of a from-scratch study network that takes only encoder 'native' and input sides that are
    multiples of `multiple` (why: `multiple_why`, e.g. "it max-pools 4 times").

    native: `(in_channels, classes) -> network`; alternative: what to use instead with a library encoder.
    """
    return ModelEntry(
        name=name,
        build=lambda encoder, classes, in_channels: native(in_channels, classes),
        description=description,
        pad_multiple=multiple,
        check_encoder=native_only(name, alternative),
        check_size=lambda height, width: multiple_reason(name, multiple, height, width, multiple_why),
    )


def native_or_library_entry(
    name: str,
    description: str,
    native: Callable[[int, int], nn.Module],
    library: Callable[[str, int, int], nn.Module],
    check_size: Callable[[int, int], str | None],
    check_native_size: Callable[[int, int], str | None] = lambda height, width: None,
) -> ModelEntry:
    """The entry of a study network registered in two forms, chosen by the encoder name.

    native: `(in_channels, classes) -> network`, the study's from-scratch network, built for encoder 'native'.
    library: `(encoder, classes, in_channels) -> network`, the study's blocks as a decoder on any library encoder,
        which is checked like every library encoder (`library_encoder_problem`, then a meta-device `probe`) and takes
        multiples of 32 (the encoder downsamples 5 times) that the probe accepts.
    check_size: sizes no form takes; check_native_size: further limits of the native form (e.g. one fixed size).
    """

    def build(encoder: str, classes: int, in_channels: int) -> nn.Module:
        if encoder == "native":
            return native(in_channels, classes)
        return library(encoder, classes, in_channels)

    def check_encoder(encoder: str) -> str | None:
        if encoder == "native":
            return None
        return library_encoder_problem(encoder) or probe(name, encoder)

    def check_encoder_size(encoder: str, height: int, width: int) -> str | None:
        if encoder == "native":
            return check_native_size(height, width)
        return multiple_reason(name, 32, height, width, "a library encoder downsamples 5 times") or probe(
            name, encoder, (height, width)
        )

    return ModelEntry(name=name, build=build, description=description, pad_multiple=32, check_encoder=check_encoder,
                      check_size=check_size, check_encoder_size=check_encoder_size)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def explain_failure(name: str, encoder: str, exc: Exception) -> str:
    """Turn a library's build or forward error into a reason that says why the pair cannot work."""
    message = str(exc)
    if "Unsupported model downsampling pattern" in message:
        return (
            f"'{encoder}' is a plain vision transformer with a single output stride and no feature pyramid, and "
            f"{name} needs encoder features at strides 2 to 32; use it with dpt"
        )
    if "dilated mode" in message or "'output_stride'" in message:
        return (
            f"{name} dilates the last encoder stages (output stride 8 or 16) and '{encoder}' cannot be dilated "
            f"({_first_line(exc)})"
        )
    if "'dynamic_img_size'" in message:
        return f"{name} needs a plain timm vision transformer (e.g. tu-vit_tiny_patch16_224); '{encoder}' is not one"
    return f"segmentation-models-pytorch cannot run {name} on '{encoder}' ({_first_line(exc)})"


@lru_cache(maxsize=1024)
def probe(name: str, encoder: str, size: tuple[int, int] | None = None) -> str | None:
    """Build `name` on `encoder` on PyTorch's meta device (no memory, no weights) and, given a size (H, W), run one
    training-mode forward pass on a [2, 3, H, W] input. Returns why it fails, or None.

    This catches every refusal that the libraries raise at build time or on the input shape (a timm model that
    cannot be dilated, a transformer without a feature pyramid, a pooling stage that shrinks a map to nothing)
    for any encoder, including the ones no static rule knows. An encoder whose construction needs real tensors is
    built on the CPU instead; an operator without a meta implementation proves nothing and does not count.
    """
    entry = MODELS.get(name)
    try:
        with torch.device("meta"):
            model = entry.build(encoder, 2, 3)
    except Exception as exc:  # any library error is the reason this pair cannot be built
        if "meta" not in str(exc).lower():
            return explain_failure(name, encoder, exc)
        return _probe_build_on_cpu(name, encoder) if size is None else None
    if size is None:
        return None
    try:
        model.train()(torch.empty(2, 3, *size, device="meta"))
    except NotImplementedError:
        return None
    except Exception as exc:  # a shape error is the reason this size cannot run
        if "meta" in str(exc).lower():
            return None
        return f"{name} on '{encoder}' fails on a {size[0]}x{size[1]} input ({_first_line(exc)})"
    return None


def _probe_build_on_cpu(name: str, encoder: str) -> str | None:
    """The fallback for encoders whose construction reads tensor values (e.g. mit_b*), which meta cannot do."""
    try:
        MODELS.get(name).build(encoder, 2, 3)
    except Exception as exc:  # any library error is the reason this pair cannot be built
        return explain_failure(name, encoder, exc)
    return None


def build_model(
    name: str, *, encoder: str, classes: int, in_channels: int = 3, encoder_weights: Path | None = None,
    weights: str = "none",
) -> nn.Module:
    """Build an architecture by name, randomly initialised, optionally loading a local encoder weights file or the
    pretrained encoder weights `weights` (imagenet, ssl, ...) from the local Hugging Face cache, never downloading
    (pretrained.py; `segbench run` fetches them before any cell starts)."""
    entry = MODELS.get(name)
    reason = entry.check_encoder(encoder)
    if reason is not None:
        raise ConfigError(f"model '{name}' cannot use encoder '{encoder}': {reason}.")
    if weights != NO_WEIGHTS and encoder_weights is not None:
        raise ConfigError(f"encoder '{encoder}' has a local encoder_weights file and pretrained weights '{weights}'; "
                          "use one of them.")
    model = entry.build(encoder, classes, in_channels)
    if weights != NO_WEIGHTS:
        load_pretrained(model, cached_or_fail(encoder, weights))
    if encoder_weights is not None:
        target = getattr(model, "encoder", None)
        if target is None:
            raise ConfigError(f"model '{name}' with encoder '{encoder}' has no separate encoder to load weights into.")
        load_encoder_weights(target, Path(encoder_weights))
    return model
