"""Boundary IoU per class (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation Evaluation",
CVPR 2021), accumulated as intersection and union pixel counts over a whole split.

For a binary mask, its boundary region is the part of the mask within d pixels of its contour: the mask minus its
erosion by a (2d+1) x (2d+1) square, the image's outside counting as background (the paper's `mask_to_boundary`:
a one-pixel zero border, then d erosions with a 3x3 kernel). d = max(1, round(DILATION_RATIO x image diagonal)).
Per class c, G_c and P_c are the boundary regions of the ground-truth and the predicted masks of c; boundary IoU_c =
|G_c & P_c| / |G_c | P_c|, counted over the pixels whose label is not ignored and summed over the split, as mIoU
sums the confusion matrix. Its mean over the classes with a non-empty union is the boundary mIoU.

Ignored pixels belong to neither mask (so a void region's edge is a contour for both), and they are never counted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

DILATION_RATIO = 0.02


def boundary_width(height: int, width: int, ratio: float = DILATION_RATIO) -> int:
    """d: the boundary region's width in pixels for an image of this size."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def boundary_region(masks: Tensor, d: int) -> Tensor:
    """The boundary regions of binary masks [N, H, W] (bool): mask & ~erosion(mask), outside the image = 0."""
    padded = F.pad(masks.float().unsqueeze(1), (1, 1, 1, 1), value=0.0)
    # Erosion = min over the (2d+1)^2 window = -max(-x); max_pool2d pads with -inf, which the min never picks.
    eroded = -F.max_pool2d(-padded, kernel_size=2 * d + 1, stride=1, padding=d)
    return masks & ~(eroded[:, 0, 1:-1, 1:-1] > 0.5)


class BoundaryIoU:
    """Per-class boundary intersection and union pixel counts (int64) over batches of predictions and labels."""

    def __init__(self, num_classes: int, ignore_index: int, ratio: float = DILATION_RATIO,
                 device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ratio = ratio
        self.intersection = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.union = torch.zeros(num_classes, dtype=torch.int64, device=device)
        self.widths: set[int] = set()

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred, target: [B, H, W] class indices of the evaluated images (one image at a time: the masks of every
        class of a full-resolution frame already take C x H x W floats)."""
        d = boundary_width(*target.shape[-2:], self.ratio)
        self.widths.add(d)
        classes = torch.arange(self.num_classes, device=target.device).view(-1, 1, 1)
        for guess_image, truth_image in zip(pred, target, strict=True):
            valid = truth_image != self.ignore_index
            truth = boundary_region((truth_image == classes) & valid, d)  # [C, H, W]
            guess = boundary_region((guess_image == classes) & valid, d)
            self.intersection += (truth & guess).sum(dim=(1, 2))
            self.union += (truth | guess).sum(dim=(1, 2))

    def state(self) -> Tensor:
        return torch.stack([self.intersection, self.union])

    def load_state(self, state: Tensor) -> None:
        self.intersection, self.union = state[0].clone(), state[1].clone()

    def compute(self) -> dict[str, Any]:
        intersection = self.intersection.cpu().tolist()
        union = self.union.cpu().tolist()
        per_class = [i / u if u else math.nan for i, u in zip(intersection, union, strict=True)]
        defined = [value for value in per_class if not math.isnan(value)]
        return {"boundary_miou": sum(defined) / len(defined) if defined else math.nan,
                "per_class": per_class, "intersection": intersection, "union": union,
                "width_px": sorted(self.widths),
                "method": f"Boundary IoU (Cheng et al. 2021): mask minus its erosion by d = max(1, round("
                          f"{self.ratio} x image diagonal)) pixels, per class, counts summed over the split; "
                          "ignore pixels in neither mask and never counted; mean over classes with a non-empty union"}
