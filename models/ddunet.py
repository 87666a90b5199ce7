"""DDU-Net (dilated U-Net), study C's own design, registered in three forms.

- `ddunet` with encoder `native`: the study's network exactly (`DDUNet`), 10,805,267 parameters with 19 classes.
  It takes ONLY 256x256 inputs: its dilated convs use padding 1 and shrink the maps, and the odd transposed-conv
  strides and paddings re-align the shrunken maps with the skips only at 256.
- `ddunet-same` with encoder `native`: the general form (`DDUNetSame`): the same layers and dilation pattern with
  "same" padding (padding = dilation) and 2x transposed convs, for any input whose sides are multiples of 8. It
  has the same 10,805,267 parameters (only paddings and strides differ).
- `ddunet` with a library encoder: a U-Net decoder whose two deepest stages use dilation-3 convs, as the study's
  deep stages do, on that encoder's feature pyramid (`DDUNetDecoder`).
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.blocks import DoubleConvReLUBN, LibraryEncoderDecoder, check_divisible, encode_levels
from segbench.models.registry import native_entry, native_or_library_entry, register_model

STUDY_SIZE = 256
ENCODER_DILATIONS = (1, 1, 3, 3)  # levels 64, 128, 256, 512
WIDTHS = (64, 128, 256, 512)


class _DDUNetBase(nn.Module):
    """Shared layers of both native forms; `same` selects padding = dilation and 2x upsampling."""

    def __init__(self, in_channels: int, classes: int, same: bool) -> None:
        super().__init__()
        channels = (in_channels, *WIDTHS)
        self.down = nn.ModuleList(
            DoubleConvReLUBN(channels[i], channels[i + 1], dilation=d, padding=d if same else 1)
            for i, d in enumerate(ENCODER_DILATIONS)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        if same:  # kernel 3 kept from the study; stride 2 with output_padding 1 doubles the size exactly
            up1 = nn.ConvTranspose2d(512, 512, kernel_size=3, stride=2, padding=1, output_padding=1)
            up2 = nn.ConvTranspose2d(256, 256, kernel_size=3, stride=2, padding=1, output_padding=1)
        else:  # the study's odd strides: 20 -> 56 and 48 -> 128 at a 256x256 input
            up1 = nn.ConvTranspose2d(512, 512, kernel_size=3, stride=3, padding=2)
            up2 = nn.ConvTranspose2d(256, 256, kernel_size=3, stride=3, padding=8)
        up3 = nn.ConvTranspose2d(128, 128, kernel_size=2, stride=2)
        self.upsample = nn.ModuleList([up1, up2, up3])
        self.up = nn.ModuleList(
            [
                DoubleConvReLUBN(512 + 256, 256, dilation=3, padding=3 if same else 1),
                DoubleConvReLUBN(256 + 128, 128, dilation=1, padding=1),
                DoubleConvReLUBN(128 + 64, 64, dilation=1, padding=1),
            ]
        )
        self.head = nn.Conv2d(64, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = encode_levels(x, self.down, self.pool)
        x = skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            x = block(torch.cat([upsample(x), skips.pop()], dim=1))
        return self.head(x)


class DDUNet(_DDUNetBase):
    """The DDU-Net of study C, from scratch; input [B, in_channels, 256, 256] ONLY, output [B, classes, 256, 256].

    - Block: two times [3x3 conv with dilation d and padding 1 -> ReLU -> BatchNorm].
    - Encoder: 4 levels, 3 max-pools: 3->64 (d=1), 64->128 (d=1), 128->256 (d=3), 256->512 (d=3). With d=3 and
      padding 1 each conv trims 4 pixels: the maps are 256, 128, 56 and 20.
    - Decoder: transposed conv 512->512 (k3, s3, p2) to 56, concatenate the 256-channel skip, block 768->256 (d=3)
      to 48; transposed conv 256->256 (k3, s3, p8) to 128, concatenate, block 384->128 (d=1); transposed conv
      128->128 (k2, s2) to 256, concatenate, block 192->64 (d=1); 1x1 conv to the classes.

    10,805,267 parameters with 3 input channels and 19 classes. For other sizes use `ddunet-same` (`DDUNetSame`).
    """

    def __init__(self, in_channels: int = 3, classes: int = 19) -> None:
        super().__init__(in_channels, classes, same=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (STUDY_SIZE, STUDY_SIZE):
            raise ValueError(native_size_reason(*x.shape[-2:]))
        return super().forward(x)


class DDUNetSame(_DDUNetBase):
    """DDU-Net's general form (`ddunet-same`): the study's layers and dilation pattern (d=3 in the two deepest
    encoder levels and the first decoder stage) with "same" padding (padding = dilation), and the two kernel-3
    transposed convs at stride 2 (padding 1, output padding 1) so each doubles the size. Input H, W multiples of 8;
    output [B, classes, H, W]. Same parameter count as `DDUNet` (10,805,267 for 3 -> 19).
    """

    def __init__(self, in_channels: int = 3, classes: int = 19) -> None:
        super().__init__(in_channels, classes, same=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, 8, "ddunet-same")
        return super().forward(x)


class DDUNetDecoder(LibraryEncoderDecoder):
    """DDU-Net's idea on a library encoder: smp's U-Net decoder layout (decoder channels 256, 128, 64, 32, 16;
    nearest upsampling; concatenated skips) whose stage blocks are the study's [3x3 conv -> ReLU -> BN] x 2, with
    dilation 3 and same padding in the two deepest stages (strides 16 and 8) and dilation 1 above; 1x1 head at full
    resolution. Input H, W multiples of 32.
    """

    DILATED_STAGES = 2

    def __init__(self, encoder_name: str, classes: int, in_channels: int = 3) -> None:
        def block(stage: int, cin: int, cout: int) -> nn.Module:
            return DoubleConvReLUBN(cin, cout, dilation=3 if stage < self.DILATED_STAGES else 1)

        super().__init__(encoder_name, classes, in_channels, make_block=block)


def native_size_reason(height: int, width: int) -> str:
    return (
        f"ddunet with encoder 'native' is study C's network, which takes only {STUDY_SIZE}x{STUDY_SIZE} inputs "
        f"(its dilated convs shrink the maps and the odd transposed-conv strides re-align them with the skips only "
        f"at {STUDY_SIZE}), got {height}x{width}; use crop and eval size [{STUDY_SIZE}, {STUDY_SIZE}], or model "
        f"'ddunet-same' (the general form with same padding, any multiple of 8)"
    )


def check_ddunet_size(height: int, width: int) -> str | None:
    """Sizes no form of `ddunet` takes: the native form needs 256x256, the library forms multiples of 32."""
    if height % 32 == 0 and width % 32 == 0:
        return None
    return (
        f"ddunet takes multiples of 32 with a library encoder and only {STUDY_SIZE}x{STUDY_SIZE} with encoder "
        f"'native' (study C's network, whose odd transposed-conv strides re-align the shrunken maps only at "
        f"{STUDY_SIZE}), got {height}x{width}; use a crop of multiples of 32, or model 'ddunet-same' (the general "
        f"form with same padding, encoder 'native', any multiple of 8)"
    )


def check_native_size(height: int, width: int) -> str | None:
    return None if (height, width) == (STUDY_SIZE, STUDY_SIZE) else native_size_reason(height, width)


register_model(
    native_or_library_entry(
        name="ddunet",
        description="DDU-Net: 'native' = study C's network (10.8 M, 256x256 only); "
        "a library encoder = U-Net decoder with dilation-3 stages at the two deepest levels",
        native=DDUNet,
        library=DDUNetDecoder,
        check_size=check_ddunet_size,
        check_native_size=check_native_size,
    )
)
register_model(
    native_entry(
        name="ddunet-same",
        description="DDU-Net general form: study C's layers and dilations with same padding, any multiple of 8 "
        "(encoder 'native' only)",
        native=DDUNetSame,
        multiple=8,
        multiple_why="it max-pools 3 times",
        alternative="ddunet (the dilated decoder on that encoder)",
    )
)
