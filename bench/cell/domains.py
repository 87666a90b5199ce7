"""A trained cell on further datasets (`eval.datasets`): another domain, city or camera than it trained on.

Each dataset's labels are mapped onto the training classes by class name (Cityscapes, BDD100K, KITTI and the
built-in scenes share the 19 Cityscapes classes, so the map is the identity between them; CamVid's 11 classes meet
them through the counterparts of `segbench.datasets.camvid.CAMVID_TO_CITYSCAPES`, either way round); a class without a
counterpart is ignored, and a training class the dataset does not label simply has no ground truth there. The
selected weights are evaluated under the cell's inference protocol, once, after training, on one confusion matrix
per dataset; the record keeps each as one entry of `domains`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from segbench.cell.data import dataset_info, eval_transform
from segbench.cell.evaluate import evaluate_model
from segbench.cell.inference import Protocol
from segbench.grid.cells import Cell


class Relabelled(Dataset):
    """`dataset` with its label indices looked up in `table` (their index -> the training class, or ignore)."""

    def __init__(self, dataset: Dataset, table: torch.Tensor) -> None:
        self.dataset = dataset
        self.table = table

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, self.table[label.long()]


def class_table(theirs: list[str], ignore_theirs: int, ours: list[str], ignore_ours: int) -> tuple[torch.Tensor,
                                                                                                       list[str]]:
    """The lookup from their label values (0..255) to our class indices, and the names of their classes that have a
    counterpart (the class of the same name, or between CamVid's classes and the Cityscapes ones the counterpart of
    `counterpart_names`); everything else, their ignore value included, becomes our ignore index."""
    position = {name: index for index, name in enumerate(ours)}
    renamed = counterpart_names(theirs, ours)
    table = torch.full((256,), ignore_ours, dtype=torch.int64)
    matched = []
    for index, name in enumerate(theirs):
        counterpart = name if name in position else renamed.get(name)
        if counterpart in position and index != ignore_theirs:
            table[index] = position[counterpart]
            matched.append(name)
    return table, matched


def counterpart_names(theirs: list[str], ours: list[str]) -> dict[str, str]:
    """Their class name -> our class name where the two sides name one class differently: CamVid's classes against
    the Cityscapes train classes, in whichever direction CamVid is (`CAMVID_TO_CITYSCAPES`); empty otherwise."""
    from segbench.datasets.camvid import CAMVID_CLASSES, CAMVID_TO_CITYSCAPES

    if tuple(theirs) == CAMVID_CLASSES:
        return dict(CAMVID_TO_CITYSCAPES)
    if tuple(ours) == CAMVID_CLASSES:
        return {cityscapes: camvid for camvid, cityscapes in CAMVID_TO_CITYSCAPES.items()}
    return {}


def evaluate_domains(model: torch.nn.Module, cell: Cell, train_info: Any, protocol: Protocol, device: torch.device,
                     autocast, cache_dir: Path | None, earlier: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One record entry per further dataset of `cell.eval.datasets`: dataset, split, images, the classes mapped,
    and the metrics (one confusion matrix) of the selected weights there. earlier: entries of an earlier evaluation
    of the same weights under the same protocol; one of the same dataset, parameters and split is kept as it is."""
    from segbench.datasets import build_dataset, parse_dataset_params

    entries = []
    for spec in cell.eval.datasets:
        same = [entry for entry in earlier if (entry.get("dataset"), entry.get("name"), entry.get("params"),
                                               entry.get("split")) == (spec.key, spec.name, dict(spec.params),
                                                                       spec.split)]
        if same:
            entries.append(same[0])
            continue
        params = parse_dataset_params(spec.name, spec.params)
        started = time.perf_counter()
        dataset = build_dataset(spec.name, params, spec.split, eval_transform(cell, protocol.pad_multiple), cache_dir)
        if cell.eval.max_images is not None and len(dataset) > cell.eval.max_images:
            dataset = torch.utils.data.Subset(dataset, range(cell.eval.max_images))
        info = dataset_info(dataset)
        table, matched = class_table(list(info.classes), info.ignore_index, list(train_info.classes),
                                     train_info.ignore_index)
        loader = DataLoader(Relabelled(dataset, table), batch_size=cell.eval.batch_size)
        result = evaluate_model(model, loader, train_info, device, autocast, protocol=protocol)
        metrics = {key: result.metrics[key] for key in ("miou", "pixel_accuracy", "mdice", "num_pixels")}
        metrics["per_class_iou"] = result.metrics["per_class"]["iou"]
        entries.append({
            "dataset": spec.key, "name": spec.name, "params": dict(spec.params), "split": spec.split,
            "images": len(dataset), "classes_mapped": len(matched),
            "unmapped_classes": [name for name in info.classes if name not in matched],
            "metrics": metrics, "confusion_matrix": np.asarray(result.matrix).tolist(),
            "seconds": time.perf_counter() - started,
            "method": f"selected weights under the cell's protocol ({protocol.describe()}); labels mapped onto the "
                      "training classes by name (CamVid's through their Cityscapes counterparts), classes without a "
                      "counterpart ignored",
        })
    return entries
