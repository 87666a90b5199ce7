"""Building blocks of the from-scratch study networks (R2U-Net, DDU-Net, classic U-Net) and of their decoders on
library encoders. Shapes are [B, C, H, W]; every block keeps H and W unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class RecurrentConv(nn.Module):
    """Recurrent convolution unit of R2U-Net: ONE 3x3 conv (with bias) + ReLU, f, applied `steps` times with
    shared weights. Step 1 computes f(x); step k > 1 computes f(x + output of step k-1). channels -> channels.

    The parameter count does not depend on `steps` (the conv is shared); the output and the compute do.
    """

    def __init__(self, channels: int, steps: int = 2) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"a recurrent unit needs at least one step, got steps={steps}")
        self.steps = steps
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=True)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv(x))
        for _ in range(self.steps - 1):
            out = self.relu(self.conv(x + out))
        return out


class RRCNNBlock(nn.Module):
    """Recurrent residual block of R2U-Net as study C built it: a 3x3 conv + ReLU maps in -> out channels (x0), two
    recurrent units run in series on x0, and the block returns x0 + their output. No batch norm, no dropout.
    """

    def __init__(self, in_channels: int, out_channels: int, steps: int = 2) -> None:
        super().__init__()
        self.entry = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU())
        self.recurrent = nn.Sequential(RecurrentConv(out_channels, steps), RecurrentConv(out_channels, steps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.entry(x)
        return x0 + self.recurrent(x0)


class DoubleConvReLUBN(nn.Module):
    """Two times [3x3 conv (with bias, dilation d, given padding) -> ReLU -> BatchNorm], the order study C used.

    With padding = dilation the size is kept ("same"); the study's DDU-Net uses padding 1 with d = 3, which trims
    4 pixels per conv.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1, padding: int | None = None) -> None:
        super().__init__()
        padding = dilation if padding is None else padding
        layers: list[nn.Module] = []
        for channels_in in (in_channels, out_channels):
            layers += [
                nn.Conv2d(channels_in, out_channels, kernel_size=3, padding=padding, dilation=dilation),
                nn.ReLU(),
                nn.BatchNorm2d(out_channels),
            ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LibraryEncoderDecoder(nn.Module):
    """A U-Net-style decoder on a segmentation-models-pytorch encoder (any smp encoder or `tu-<timm model>`).

    The encoder (`smp.encoders.get_encoder(name, weights=None, depth=5)`) returns features at strides 1 (the input),
    2, 4, 8, 16 and 32. Five decoder stages, from the deepest feature: nearest-neighbour upsampling to the next
    skip's size (x2 for the last stage, which has no skip), concatenation with the skip, then the stage block
    `make_block(stage, in_channels, out_channels)`. A 1x1 conv maps the last stage to the classes at full
    resolution. This is the layout of smp's Unet decoder with its blocks replaced; `.encoder` is the library
    encoder, so parameter counts split encoder / decoder and local encoder weights load into it.
    """

    def __init__(
        self,
        encoder_name: str,
        classes: int,
        in_channels: int,
        make_block: Callable[[int, int, int], nn.Module],
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.encoder = get_encoder(encoder_name, in_channels=in_channels, depth=5, weights=None)
        encoder_channels = list(self.encoder.out_channels)[1:][::-1]  # deepest first, input dropped
        skip_channels = encoder_channels[1:] + [0]
        stage_in = [encoder_channels[0], *decoder_channels[:-1]]
        self.stages = nn.ModuleList(
            make_block(stage, stage_in[stage] + skip_channels[stage], decoder_channels[stage])
            for stage in range(len(decoder_channels))
        )
        self.head = nn.Conv2d(decoder_channels[-1], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[1:][::-1]
        y = features[0]
        skips = [*features[1:], None]
        for stage, skip in zip(self.stages, skips, strict=True):
            if skip is None:
                y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            else:
                y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
                y = torch.cat([y, skip], dim=1)
            y = stage(y)
        return self.head(y)


def encode_levels(x: torch.Tensor, levels: nn.ModuleList, pool: nn.Module) -> list[torch.Tensor]:
    """The encoder of the from-scratch U-Nets: level 0 on the input, every next level on the pooled output of the
    previous one. Returns each level's output, shallowest first (the last one is the bottleneck, the others the
    decoder's skips)."""
    features: list[torch.Tensor] = []
    for level, block in enumerate(levels):
        x = block(x if level == 0 else pool(x))
        features.append(x)
    return features


def check_divisible(x: torch.Tensor, multiple: int, model: str) -> None:
    """Raise ValueError with the reason when the input's H or W is not a multiple of `multiple`."""
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{model} needs input height and width that are multiples of {multiple}, got {height}x{width}; "
            f"pad the input (segbench's evaluation pads to the model's pad_multiple)"
        )
