"""Every architecture segmentation-models-pytorch 0.6 ships, wrapped (not re-implemented), with its limits.

The limits were found by building and running each architecture on a range of encoders and sizes; they are written
out as rules below so that a message can say why, and every pair is also tried once on PyTorch's meta device
(`registry.probe`), which catches the refusals of encoders no rule names. All models are built with
`encoder_weights=None`: nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from segbench.models.encoders import library_encoder_problem
from segbench.models.registry import ModelEntry, multiple_reason, probe, register_model

# smp encoders whose downsampling is pooling, which `make_dilated` refuses (smp raises at build time).
UNDILATABLE = ("vgg", "densenet", "xception", "inceptionv4", "inceptionresnetv2")


@dataclass(frozen=True)
class SmpArch:
    """One smp architecture: its class name, the multiple its input sides must be, and what it refuses."""

    name: str
    smp_class: str
    description: str
    multiple: int = 32
    multiple_why: str = "the encoder downsamples 5 times and the decoder merges maps of every level"
    min_side: int = 0
    min_side_why: str = ""
    dilated: bool = False  # the encoder is built at output stride 8 or 16 (dilated last stages)
    refuses_mit: bool = False
    any_size: bool = False  # the decoder resizes to the skips, so any size runs
    kwargs: dict[str, Any] = field(default_factory=dict)


ARCHITECTURES = (
    SmpArch("unet", "Unet", "U-Net decoder (segmentation-models-pytorch Unet) on a library encoder", any_size=True),
    SmpArch("unetplusplus", "UnetPlusPlus", "U-Net++ nested decoder (smp UnetPlusPlus)", refuses_mit=True),
    SmpArch("manet", "MAnet", "Multi-scale attention network (smp MAnet)"),
    SmpArch("linknet", "Linknet", "LinkNet decoder (smp Linknet)", refuses_mit=True),
    SmpArch("fpn", "FPN", "Feature Pyramid Network decoder (segmentation-models-pytorch FPN) on a library encoder"),
    SmpArch(
        "pspnet",
        "PSPNet",
        "Pyramid scene parsing network (smp PSPNet, encoder depth 3, output stride 8)",
        multiple=8,
        multiple_why="smp's PSPNet uses the encoder down to stride 8",
    ),
    SmpArch(
        "deeplabv3",
        "DeepLabV3",
        "DeepLabV3 with ASPP (smp DeepLabV3, dilated encoder at output stride 8)",
        multiple=8,
        multiple_why="the dilated encoder has output stride 8",
        dilated=True,
    ),
    SmpArch(
        "deeplabv3plus",
        "DeepLabV3Plus",
        "DeepLabV3+ (smp DeepLabV3Plus, dilated encoder at output stride 16)",
        multiple=16,
        multiple_why="the dilated encoder has output stride 16",
        dilated=True,
    ),
    SmpArch(
        "pan",
        "PAN",
        "Pyramid attention network (smp PAN, dilated encoder at output stride 16)",
        dilated=True,
        min_side=128,
        min_side_why="its feature pyramid attention pools the stride-16 map three more times, to nothing below 128",
    ),
    SmpArch("upernet", "UPerNet", "Unified perceptual parsing network (smp UPerNet)"),
    SmpArch("segformer", "Segformer", "SegFormer all-MLP decoder (smp Segformer; mit_b0..b5 or any encoder)"),
    SmpArch(
        "dpt",
        "DPT",
        "Dense prediction transformer (smp DPT) on a plain timm vision transformer (tu-vit_*, patch 16 or 8)",
        multiple_why="the decoder rescales the stride-16 tokens to strides 4 to 32",
        kwargs={"dynamic_img_size": True},  # timm ViTs interpolate their position embeddings to any input size
    ),
)

PATCH = re.compile(r"patch(\d+)")


def _builder(arch: SmpArch):
    def build(encoder: str, classes: int, in_channels: int) -> nn.Module:
        import segmentation_models_pytorch as smp

        return smp.create_model(
            arch.smp_class,
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=classes,
            **arch.kwargs,
        )

    return build


def _static_encoder_rule(arch: SmpArch, encoder: str) -> str | None:
    """The refusals smp states in its source, with the reason in words."""
    if arch.name == "dpt":
        if not encoder.startswith("tu-"):
            return (
                "dpt needs a plain vision transformer from timm given as 'tu-<name>' (e.g. tu-vit_tiny_patch16_224); "
                f"'{encoder}' is a convolutional or hierarchical segmentation-models-pytorch encoder"
            )
        patch = PATCH.search(encoder)
        if patch and 16 % int(patch.group(1)):
            return (
                f"smp's DPT decoder rescales the token grid by powers of 2 from stride 16 and cannot align the "
                f"patch-{patch.group(1)} grid of '{encoder}'; use a patch-16 or patch-8 ViT"
            )
    if arch.refuses_mit and encoder.startswith("mit_b"):
        return (
            f"smp's {arch.smp_class} refuses mix-transformer encoders ('{encoder}'): they have no stride-2 "
            "feature for its first decoder stage"
        )
    if arch.dilated and encoder.startswith(UNDILATABLE):
        return (
            f"{arch.name} dilates the last encoder stages (output stride 8 or 16) and '{encoder}' downsamples "
            "with pooling, which smp cannot dilate"
        )
    return None


def _entry(arch: SmpArch) -> ModelEntry:
    def check_encoder(encoder: str) -> str | None:
        return library_encoder_problem(encoder) or _static_encoder_rule(arch, encoder) or probe(arch.name, encoder)

    def check_size(height: int, width: int) -> str | None:
        if arch.min_side and min(height, width) < arch.min_side:
            return (
                f"{arch.name} needs inputs of at least {arch.min_side}x{arch.min_side} ({arch.min_side_why}), "
                f"got {height}x{width}"
            )
        if arch.any_size:
            return None
        return multiple_reason(arch.name, arch.multiple, height, width, arch.multiple_why)

    def check_encoder_size(encoder: str, height: int, width: int) -> str | None:
        return probe(arch.name, encoder, (height, width))

    return ModelEntry(
        name=arch.name,
        build=_builder(arch),
        description=arch.description,
        pad_multiple=arch.multiple,
        check_encoder=check_encoder,
        check_size=check_size,
        check_encoder_size=check_encoder_size,
    )


for _arch in ARCHITECTURES:
    register_model(_entry(_arch))
