"""The from-scratch study networks: exact parameter counts, R2U-Net's shared recurrence, DDU-Net's 256x256 limit."""

from __future__ import annotations

import pytest
import torch

from segbench.errors import ConfigError
from segbench.measure import count_params
from segbench.models import build_model, incompatibility
from segbench.models.blocks import RecurrentConv
from segbench.models.ddunet import DDUNet, DDUNetSame
from segbench.models.r2unet import R2UNet


@pytest.mark.parametrize(
    ("name", "expected"),
    [("r2unet", 49_526_163), ("ddunet", 10_805_267), ("ddunet-same", 10_805_267), ("unet-classic", 31_391_891)],
)
def test_native_parameter_counts_match_the_study(name: str, expected: int) -> None:
    model = build_model(name, encoder="native", classes=19, in_channels=3)
    counts = count_params(model)
    assert counts["total"] == expected
    assert counts["trainable"] == expected
    assert counts["encoder"] is None  # a from-scratch network has no separate library encoder


def _calls_of_recurrent_convs(model: torch.nn.Module, x: torch.Tensor) -> int:
    calls = 0

    def hook(*_: object) -> None:
        nonlocal calls
        calls += 1

    handles = [m.conv.register_forward_hook(hook) for m in model.modules() if isinstance(m, RecurrentConv)]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return calls


@pytest.mark.slow  # 4 s
def test_r2unet_recurrence_is_shared_and_used() -> None:
    torch.manual_seed(0)
    two = R2UNet(in_channels=3, classes=19, steps=2).eval()
    three = R2UNet(in_channels=3, classes=19, steps=3).eval()
    three.load_state_dict(two.state_dict())  # identical weights: only t differs
    assert count_params(two)["total"] == count_params(three)["total"] == 49_526_163

    x = torch.randn(1, 3, 16, 16)
    units = sum(isinstance(m, RecurrentConv) for m in two.modules())
    assert units == 2 * 9  # two recurrent units in each of the 9 RRCNN blocks
    assert _calls_of_recurrent_convs(two, x) == 2 * units  # the one conv of each unit runs t times
    assert _calls_of_recurrent_convs(three, x) == 3 * units
    with torch.no_grad():
        out_two, out_three = two(x), three(x)
    assert out_two.shape == out_three.shape == (1, 19, 16, 16)
    assert not torch.allclose(out_two, out_three)


def test_recurrent_unit_computes_f_of_x_plus_previous() -> None:
    torch.manual_seed(0)
    unit = RecurrentConv(4, steps=2)
    x = torch.randn(1, 4, 8, 8)
    step1 = torch.relu(unit.conv(x))
    assert torch.allclose(unit(x), torch.relu(unit.conv(x + step1)))


def test_r2unet_adds_the_skip_instead_of_concatenating() -> None:
    model = R2UNet(in_channels=3, classes=19)
    # a decoder RRCNN block takes the upsampled channels only (1024 -> 512), so the skip is added afterwards
    assert [block.entry[0].in_channels for block in model.up] == [1024, 512, 256, 128]
    assert [up.out_channels for up in model.upsample] == [1024, 512, 256, 128]


@pytest.mark.parametrize("size", [(250, 250), (128, 128), (256, 128)])
def test_ddunet_native_refuses_sizes_other_than_256(size: tuple[int, int]) -> None:
    reason = incompatibility("ddunet", "native", size)
    assert reason is not None
    assert "256x256" in reason and "ddunet-same" in reason
    assert f"{size[0]}x{size[1]}" in reason


def test_ddunet_native_forward_raises_the_same_reason_off_size() -> None:
    with pytest.raises(ValueError, match="ddunet-same"):
        DDUNet(classes=19).eval()(torch.zeros(1, 3, 128, 128))


@pytest.mark.slow  # 3 s
def test_ddunet_native_runs_at_256() -> None:
    assert incompatibility("ddunet", "native", (256, 256)) is None
    model = build_model("ddunet", encoder="native", classes=19).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 19, 256, 256)


def test_ddunet_same_takes_any_multiple_of_8() -> None:
    assert incompatibility("ddunet-same", "native", (40, 72)) is None
    reason = incompatibility("ddunet-same", "native", (250, 250))
    assert reason is not None and "multiples of 8" in reason
    with torch.no_grad():
        out = DDUNetSame(classes=19).eval()(torch.randn(1, 3, 40, 72))
    assert out.shape == (1, 19, 40, 72)


def test_ddunet_library_form_is_not_limited_to_256() -> None:
    assert incompatibility("ddunet", "resnet18", (128, 128)) is None


def test_native_only_models_refuse_library_encoders() -> None:
    for name in ("unet-classic", "ddunet-same"):
        reason = incompatibility(name, "resnet34")
        assert reason is not None and "native" in reason
        with pytest.raises(ConfigError, match="native"):
            build_model(name, encoder="resnet34", classes=19)


def test_unet_classic_output_shape() -> None:
    model = build_model("unet-classic", encoder="native", classes=19).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 48)).shape == (1, 19, 32, 48)
    assert incompatibility("unet-classic", "native", (30, 48)) is not None
