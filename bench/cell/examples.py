"""Example predictions kept with each record, so that reports draw qualitative panels from records alone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset


def sample_id(dataset: Any, index: int) -> str:
    """The dataset's name for item `index` (e.g. a Cityscapes file stem), through Subset wrappers."""
    if isinstance(dataset, Subset):
        return sample_id(dataset.dataset, dataset.indices[index])
    return dataset.sample_id(index)


def unpadded_size(dataset: Any, index: int) -> tuple[int, int]:
    """(H, W) of an evaluation input before padding: the eval resize size, else the image's own size."""
    if isinstance(dataset, Subset):
        return unpadded_size(dataset.dataset, dataset.indices[index])
    size = getattr(dataset.transform, "size", None)
    if size is not None:
        return tuple(size)
    width, height = dataset.load_raw(index)[0].size
    return height, width


def save_examples(model: torch.nn.Module, val_set: Any, per_image: list[dict[str, Any]], cell_dir: Path,
                  device: torch.device, autocast, per_side: int = 2) -> list[dict[str, Any]]:
    """Save image, ground-truth and prediction PNGs of the best and worst val images by pixel accuracy.

    Padding added for the model is cropped away. Returns one entry per image: rank, sample_id, pixel_accuracy and
    the paths (relative to cell_dir) of the three PNGs; labels and predictions hold class indices (255 = ignore).
    """
    from PIL import Image

    from segbench.atomic import atomic_write_bytes
    from segbench.datasets.transforms import denormalize

    scored = sorted((row for row in per_image if row["valid_pixels"] > 0),
                    key=lambda row: row["correct_pixels"] / row["valid_pixels"])
    chosen = [("best", row) for row in reversed(scored[-per_side:])]
    chosen += [("worst", row) for row in scored[:per_side] if row not in scored[-per_side:]]
    examples = []
    model.eval()
    for rank, row in chosen:
        image, label = val_set[row["index"]]
        height, width = unpadded_size(val_set, row["index"])
        with torch.inference_mode(), autocast:
            pred = model(image.unsqueeze(0).to(device)).argmax(dim=1)[0].cpu()
        arrays = {
            "image": denormalize(image)[:height, :width].numpy(),
            "label": label[:height, :width].numpy().astype(np.uint8),
            "pred": pred[:height, :width].numpy().astype(np.uint8),
        }
        entry = {"rank": rank, "sample_id": row["sample_id"],
                 "pixel_accuracy": row["correct_pixels"] / row["valid_pixels"]}
        for kind, array in arrays.items():
            relative = f"examples/{rank}-{row['sample_id']}-{kind}.png"
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            atomic_write_bytes(cell_dir / relative, buffer.getvalue())
            entry[kind] = relative
        examples.append(entry)
    return examples
