"""R2U-Net (recurrent residual U-Net), registered as `r2unet`, in two forms.

- encoder `native`: the network of study C exactly (see `R2UNet`): 49,526,163 parameters with 3 input channels and
  19 classes.
- any library encoder (smp encoder names, `tu-<timm model>`): the study's recurrent residual (RRCNN) block as the
  block of every stage of a U-Net decoder on that encoder's feature pyramid (see `R2UNetDecoder`).
"""

from __future__ import annotations

import torch
from torch import nn

from segbench.models.blocks import LibraryEncoderDecoder, RRCNNBlock, check_divisible, encode_levels
from segbench.models.registry import multiple_reason, native_or_library_entry, register_model

WIDTHS = (64, 128, 256, 512, 1024)


class R2UNet(nn.Module):
    """The R2U-Net of study C, from scratch. Input [B, in_channels, H, W] with H, W multiples of 16; output logits
    [B, classes, H, W].

    - Encoder: 5 levels of RRCNN blocks (widths 64, 128, 256, 512, 1024) separated by 2x2 max-pools.
    - RRCNN block: 3x3 conv + ReLU in -> out (x0); two recurrent units in series on x0; returns x0 + their output.
      A recurrent unit is one shared 3x3 conv (with bias) + ReLU applied `steps` times: f(x), then f(x + previous).
    - Decoder: 4 levels; each upsamples with a 2x2 stride-2 transposed conv that keeps the channels, then an RRCNN
      block halving them, then ADDS (element-wise sum, not concatenation) the encoder feature of that level.
    - Head: 1x1 conv to the classes. No batch norm, no dropout.

    steps: the recurrence t of every recurrent unit (2 in the study). It changes the output and the compute, not
    the parameter count (49,526,163 for 3 -> 19 at any t), because the conv is shared across steps.
    """

    def __init__(self, in_channels: int = 3, classes: int = 19, steps: int = 2) -> None:
        super().__init__()
        self.steps = steps
        channels = (in_channels, *WIDTHS)
        self.down = nn.ModuleList(RRCNNBlock(channels[i], channels[i + 1], steps) for i in range(len(WIDTHS)))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        deep_first = WIDTHS[::-1]  # 1024, 512, 256, 128, 64
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(width, width, kernel_size=2, stride=2) for width in deep_first[:-1]
        )
        self.up = nn.ModuleList(RRCNNBlock(width, width // 2, steps) for width in deep_first[:-1])
        self.head = nn.Conv2d(WIDTHS[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, 16, "r2unet (native)")
        skips = encode_levels(x, self.down, self.pool)
        x = skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            x = block(upsample(x)) + skips.pop()
        return self.head(x)


class R2UNetDecoder(LibraryEncoderDecoder):
    """R2U-Net's idea on a library encoder: smp's U-Net decoder layout (decoder channels 256, 128, 64, 32, 16;
    nearest upsampling; concatenated skips) with every stage block being the study's RRCNN block (shared-weight
    recurrent 3x3 convs, residual, no batch norm), and a 1x1 head at full resolution. Input H, W multiples of 32.
    """

    def __init__(self, encoder_name: str, classes: int, in_channels: int = 3, steps: int = 2) -> None:
        super().__init__(
            encoder_name, classes, in_channels, make_block=lambda stage, cin, cout: RRCNNBlock(cin, cout, steps)
        )


register_model(
    native_or_library_entry(
        name="r2unet",
        description="R2U-Net: 'native' = study C's network (RRCNN, added skips, 49.5 M); "
        "a library encoder = RRCNN blocks as the U-Net decoder stages on that encoder",
        native=R2UNet,
        library=R2UNetDecoder,
        check_size=lambda height, width: multiple_reason("r2unet", 16, height, width,
                                                         "the native form max-pools 4 times"),
    )
)
