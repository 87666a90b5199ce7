"""Expansion of a grid into cells, each with a stable identity.

A cell's id is a readable slug plus a short hash of its resolved configuration and the benchmark-semantics
version: two records with the same slug and different hashes were produced under different settings and are not
comparable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench import BENCH_SEMANTICS_VERSION
from segbench.errors import DatasetError
from segbench.grid.schema import DatasetSpec, EvalConfig, Frozen, GridConfig, LossSpec, MeasureConfig, TrainConfig

SAFE_ID = re.compile(r"^[A-Za-z0-9._+-]+$")
# Keys added after benchmark-semantics version 2 enter the resolved configuration, and so the config hash, only
# when set away from their default: the cells of existing results keep their ids, stay comparable and resume.
LATE_KEYS = {"train": ("world_size", "sync_bn")}


class Cell(Frozen):
    """One unit of work: a (dataset, model, encoder, loss, seed) combination with its settings."""

    dataset: DatasetSpec
    model: str
    encoder: str
    loss: LossSpec
    seed: int
    train: TrainConfig
    eval: EvalConfig
    measure: MeasureConfig = MeasureConfig()
    encoder_weights: Path | None = None

    @property
    def slug(self) -> str:
        return f"{self.model}__{self.encoder}__{self.loss.key}__{self.dataset.key}__s{self.seed}"

    def resolved(self) -> dict[str, Any]:
        """The full configuration, defaults included, as JSON-ready data (a key of LATE_KEYS only when it is set away
        from its default)."""
        resolved = self.model_dump(mode="json")
        for section, keys in LATE_KEYS.items():
            config = getattr(self, section)
            for key in keys:
                if getattr(config, key) == type(config).model_fields[key].default:
                    del resolved[section][key]
        return resolved

    @property
    def config_hash(self) -> str:
        payload = {"semantics_version": BENCH_SEMANTICS_VERSION, "cell": self.resolved()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def id(self) -> str:
        return f"{self.slug}-{self.config_hash}"


@dataclass(frozen=True)
class SkippedCell:
    slug: str
    reason: str


@dataclass(frozen=True)
class Expansion:
    cells: list[Cell]
    skipped: list[SkippedCell]


def _excluded(grid: GridConfig, dataset: DatasetSpec, model: str, encoder: str, loss: LossSpec, seed: int) -> bool:
    values = {"dataset": dataset.key, "model": model, "encoder": encoder, "loss": loss.key, "seed": seed}
    return any(
        all(getattr(rule, field) is None or getattr(rule, field) == value for field, value in values.items())
        for rule in grid.exclude
    )


def evaluation_size(grid: GridConfig, dataset: DatasetSpec, pad_multiple: int) -> tuple[int, int] | None:
    """(H, W) of the model's evaluation input after padding, when it is known before reading any image."""
    from segbench.datasets import dataset_info, parse_dataset_params
    from segbench.datasets.transforms import padded_size

    size = grid.eval.size
    if size is None:
        try:
            size = dataset_info(dataset.name, parse_dataset_params(dataset.name, dataset.params)).image_size
        except DatasetError:  # e.g. a classes file on a machine without the data: checked when the run starts
            return None
    if size is None:
        return None
    return padded_size(size, pad_multiple)


def expand(grid: GridConfig) -> Expansion:
    """All valid cells of the grid, in axis order, and the combinations skipped with the reason.

    A (model, encoder) pair is checked at the training crop and, when it is known in advance, at the evaluation
    input size (the eval resize, else the dataset's fixed image size, padded to the model's multiple).
    """
    from segbench.models import MODELS, incompatibility

    cells: list[Cell] = []
    skipped: list[SkippedCell] = []
    for dataset, model, encoder, loss, seed in itertools.product(
        grid.datasets, grid.models, grid.encoders, grid.losses, grid.seeds
    ):
        cell = Cell(
            dataset=dataset,
            model=model,
            encoder=encoder,
            loss=loss,
            seed=seed,
            train=grid.train,
            eval=grid.eval,
            measure=grid.measure,
            encoder_weights=grid.encoder_weights.get(encoder),
        )
        assert SAFE_ID.match(cell.slug), cell.slug  # guaranteed by the SafeName fields of the grid
        if _excluded(grid, dataset, model, encoder, loss, seed):
            skipped.append(SkippedCell(cell.slug, "excluded by the grid's exclude rules"))
            continue
        reason = incompatibility(model, encoder, grid.train.crop)
        eval_size = evaluation_size(grid, dataset, MODELS.get(model).pad_multiple) if reason is None else None
        if eval_size is not None and tuple(eval_size) != tuple(grid.train.crop):
            reason = incompatibility(model, encoder, eval_size)
            reason = reason and f"at the evaluation size {eval_size[0]}x{eval_size[1]}: {reason} (set eval.size)"
        if reason is not None:
            skipped.append(SkippedCell(cell.slug, reason))
            continue
        cells.append(cell)
    return Expansion(cells, skipped)
