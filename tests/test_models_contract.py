"""The same battery for every registered model on one representative valid encoder, plus the compatibility rules
that grid expansion relies on.
"""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

from segbench.errors import ConfigError
from segbench.grid.cells import expand
from segbench.grid.load import parse_grid
from segbench.measure import count_params
from segbench.models import MODELS, build_model, incompatibility

CLASSES = 5
# Every model by name, with the encoders it is tested on (both forms of r2unet and ddunet). Written out rather than
# read from the registry, so that registering a model without adding it here fails test_every_model_has_a_case.
REPRESENTATIVE = {
    "unet": ["resnet18"],
    "unetplusplus": ["resnet18"],
    "manet": ["resnet18"],
    "linknet": ["resnet18"],
    "fpn": ["resnet18"],
    "pspnet": ["resnet18"],
    "deeplabv3": ["resnet18"],
    "deeplabv3plus": ["resnet18"],
    "pan": ["resnet18"],
    "upernet": ["resnet18"],
    "segformer": ["mit_b0"],
    "dpt": ["tu-vit_tiny_patch16_224"],
    "r2unet": ["resnet18", "native"],
    "ddunet": ["resnet18", "native"],
    "ddunet-same": ["native"],
    "unet-classic": ["native"],
}
# These take 2-16 s each (a build, then a forward and backward) on a 2-core CPU: slow, so `make test-fast` keeps the
# lighter models' battery (one each of U-Net, FPN, LinkNet, PSPNet, DeepLabV3+, the native DD-U-Net 'same').
HEAVY = {("unetplusplus", "resnet18"), ("manet", "resnet18"), ("deeplabv3", "resnet18"), ("pan", "resnet18"),
         ("upernet", "resnet18"), ("segformer", "mit_b0"), ("dpt", "tu-vit_tiny_patch16_224"), ("r2unet", "resnet18"),
         ("r2unet", "native"), ("ddunet", "resnet18"), ("ddunet", "native"), ("unet-classic", "native")}
CASES = [pytest.param(name, encoder, id=f"{name}-{encoder}", marks=pytest.mark.slow if (name, encoder) in HEAVY else ())
         for name, encoders in REPRESENTATIVE.items() for encoder in encoders]


def min_valid_size(name: str, encoder: str) -> int:
    """The smallest square side (at least 32, a multiple of pad_multiple) the model takes with `encoder`."""
    multiple = MODELS.get(name).pad_multiple
    side = max(32, multiple)
    while incompatibility(name, encoder, (side, side)) is not None:
        side += multiple
        assert side <= 512, f"{name} on {encoder} takes no square input up to 512"
    return side


@cache
def built(name: str, encoder: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, encoder=encoder, classes=CLASSES)


def test_every_model_has_a_case() -> None:
    # pytest's diff of the two lists names the model that has no case (or the case whose model is gone)
    assert sorted(REPRESENTATIVE) == sorted(MODELS.names())


@pytest.mark.parametrize(("name", "encoder"), CASES)
def test_forward_backward_at_min_size(name: str, encoder: str) -> None:
    assert incompatibility(name, encoder) is None
    side = min_valid_size(name, encoder)
    model = built(name, encoder).train()
    model.zero_grad(set_to_none=True)
    logits = model(torch.randn(2, 3, side, side))
    assert logits.shape == (2, CLASSES, side, side)
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, CLASSES, (2, side, side)))
    assert math.isfinite(loss.item())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize(("name", "encoder"), CASES)
def test_parameter_count_is_stable_across_builds(name: str, encoder: str) -> None:
    first = count_params(built(name, encoder))
    second = count_params(build_model(name, encoder=encoder, classes=CLASSES))
    assert first == second
    assert first["total"] > 0
    if encoder != "native":  # a library encoder is exposed, so the encoder / decoder split is reported
        assert first["encoder"] is not None and 0 < first["encoder"] < first["total"]


@pytest.mark.parametrize(("name", "encoder"), CASES)
def test_odd_size_is_padded_or_refused_with_a_reason(name: str, encoder: str) -> None:
    height, width = 65, 97
    model = built(name, encoder).eval()
    reason = incompatibility(name, encoder, (height, width))
    if reason is None:  # the model takes it as it is
        with torch.no_grad():
            assert model(torch.randn(1, 3, height, width)).shape == (1, CLASSES, height, width)
        return
    assert isinstance(reason, str) and f"{height}x{width}" in reason
    # the evaluation pads to pad_multiple; that size must run, unless the model takes only one fixed size
    multiple = MODELS.get(name).pad_multiple
    padded = (math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple)
    padded_reason = incompatibility(name, encoder, padded)
    if padded_reason is not None:  # padding cannot help a model with a fixed or a minimum size
        assert (name, encoder) in {("ddunet", "native"), ("pan", "resnet18")}
        assert "256x256" in padded_reason or "at least 128x128" in padded_reason
        return
    with torch.no_grad():
        assert model(torch.randn(1, 3, *padded)).shape == (1, CLASSES, *padded)


@pytest.mark.parametrize(
    ("name", "encoder", "why"),
    [
        ("unet-classic", "resnet18", "native"),
        ("ddunet-same", "mobilenet_v2", "native"),
        ("fpn", "native", "library encoder"),
        ("unet", "native", "library encoder"),
        ("dpt", "resnet18", "vision transformer"),
        ("dpt", "tu-vit_small_patch14_dinov2", "patch-14"),
        ("unetplusplus", "mit_b0", "mix-transformer"),
        ("linknet", "mit_b0", "mix-transformer"),
        ("deeplabv3", "vgg11", "dilate"),
        ("pan", "densenet121", "dilate"),
        ("deeplabv3plus", "tu-swin_tiny_patch4_window7_224", "dilate"),
        ("fpn", "tu-vit_tiny_patch16_224", "feature pyramid"),
        ("r2unet", "tu-vit_tiny_patch16_224", "feature pyramid"),
        ("unet", "resnet43", "did you mean 'resnet34'"),
    ],
)
def test_refused_encoders_have_a_reason(name: str, encoder: str, why: str) -> None:
    reason = MODELS.get(name).check_encoder(encoder)
    assert reason is not None and why in reason
    with pytest.raises(ConfigError, match="cannot use encoder"):
        build_model(name, encoder=encoder, classes=CLASSES)


@pytest.mark.parametrize(
    ("name", "size", "why"),
    [("fpn", (65, 97), "multiples of 32"), ("pan", (64, 64), "at least 128"), ("deeplabv3plus", (40, 40), "of 16")],
)
def test_sizes_no_encoder_can_take_are_refused(name: str, size: tuple[int, int], why: str) -> None:
    reason = MODELS.get(name).check_size(*size)
    assert reason is not None and why in reason


def test_grid_expands_to_the_valid_pairs_only() -> None:
    grid = parse_grid(
        {
            "datasets": [{"name": "synthetic", "params": {"n_train": 8, "n_val": 4, "height": 64, "width": 128}}],
            "models": ["unet", "fpn", "r2unet", "ddunet"],
            "encoders": ["resnet34", "resnext50_32x4d", "mobilenet_v2", "native"],
            "losses": ["ce"],
            "train": {"epochs": 1, "batch_size": 2, "crop": [64, 128]},
        }
    )
    expansion = expand(grid)
    pairs = {(cell.model, cell.encoder) for cell in expansion.cells}
    library = {"resnet34", "resnext50_32x4d", "mobilenet_v2"}
    expected = {(model, encoder) for model in ("unet", "fpn", "r2unet", "ddunet") for encoder in library}
    assert pairs == expected | {("r2unet", "native")}
    skipped = {entry.slug.split("__")[0]: entry.reason for entry in expansion.skipped}
    assert set(skipped) == {"unet", "fpn", "ddunet"}
    assert all(slug.split("__")[1] == "native" for slug in (entry.slug for entry in expansion.skipped))
    assert "library encoder" in skipped["unet"] and "library encoder" in skipped["fpn"]
    assert "256x256" in skipped["ddunet"] and "ddunet-same" in skipped["ddunet"]
