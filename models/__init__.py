"""Segmentation architectures, reachable only through the registry: `build_model(name, encoder=..., classes=...)`.
Each architecture module registers its entries with `register_model(ModelEntry(...))` (registry.py), with the
encoders and input sizes it takes; encoders.py names the encoders, blocks.py holds the study networks' layers.

Must not import the later stages `metrics`, `grid`, `devices`, `optim`, `records`, `measure`, `cell`, `execution`,
`analysis`, `predict` and `cli` (docs/architecture.md, "What a stage may import"; tests/test_import_rules.py).
"""

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
