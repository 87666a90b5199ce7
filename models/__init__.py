"""Segmentation architectures, reachable only through the registry."""

from segbench.models import (  # noqa: F401  (each module registers its architectures)
    ddunet,
    r2unet,
    smp_models,
    unet_classic,
)
from segbench.models.encoders import CURATED_ENCODERS, encoder_family, validate_encoder
from segbench.models.registry import MODELS, ModelEntry, build_model, incompatibility, register_model

__all__ = [
    "CURATED_ENCODERS",
    "MODELS",
    "ModelEntry",
    "build_model",
    "encoder_family",
    "incompatibility",
    "register_model",
    "validate_encoder",
]
