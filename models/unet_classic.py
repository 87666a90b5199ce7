"""The plain U-Net of study C, from scratch, registered as `unet-classic` (encoder `native` only).

For a U-Net on a library encoder use `unet` (segmentation-models-pytorch's Unet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segbench.models.blocks import DoubleConvReLUBN, check_divisible, encode_levels
from segbench.models.registry import native_entry, register_model

WIDTHS = (64, 128, 256, 512, 1024)


class ClassicUNet(nn.Module):
    """Study C's U-Net. Input [B, in_channels, H, W] with H, W multiples of 16; output logits [B, classes, H, W].

    - Encoder: 5 levels (widths 64, 128, 256, 512, 1024), each a double conv [3x3 conv -> ReLU -> BatchNorm] x 2,
      separated by 2x2 max-pools.
    - Decoder: 4 levels; bilinear 2x upsampling (align_corners=True, no parameters), concatenation with the encoder
      feature of that level, double conv (c + c/2) -> c/2.
    - Head: 1x1 conv to the classes.

    31,391,891 parameters with 3 input channels and 19 classes.
    """

    def __init__(self, in_channels: int = 3, classes: int = 19) -> None:
        super().__init__()
        channels = (in_channels, *WIDTHS)
        self.down = nn.ModuleList(DoubleConvReLUBN(channels[i], channels[i + 1]) for i in range(len(WIDTHS)))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        deep_first = WIDTHS[::-1]
        self.up = nn.ModuleList(DoubleConvReLUBN(width + width // 2, width // 2) for width in deep_first[:-1])
        self.head = nn.Conv2d(WIDTHS[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_divisible(x, 16, "unet-classic")
        skips = encode_levels(x, self.down, self.pool)
        x = skips.pop()
        for block in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


register_model(
    native_entry(
        name="unet-classic",
        description="Study C's plain U-Net from scratch (64..1024, conv-ReLU-BN, bilinear up, 31.4 M); "
        "encoder 'native' only",
        native=ClassicUNet,
        multiple=16,
        multiple_why="it max-pools 4 times",
        alternative="unet (segmentation-models-pytorch's U-Net on that encoder)",
    )
)
