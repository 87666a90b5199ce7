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

from pydantic import Field

from segbench import BENCH_SEMANTICS_VERSION
from segbench.errors import ConfigError, DatasetError
from segbench.grid.schema import (
    DatasetSpec,
    EvalConfig,
    Frozen,
    GridConfig,
    LossSpec,
    MeasureConfig,
    SafeName,
    TrainConfig,
)
from segbench.registry import did_you_mean

NO_WEIGHTS = "none"  # segbench.models.pretrained.NO_WEIGHTS: random initialisation

SAFE_ID = re.compile(r"^[A-Za-z0-9._+-]+$")
# Keys added after benchmark-semantics version 2 enter the resolved configuration, and so the config hash, only
# when set away from their default: the cells of existing results keep their ids, stay comparable and resume.
LATE_KEYS = {"train": ("world_size", "sync_bn", "budget"),
             "eval": ("mode", "crop", "stride", "tta", "datasets", "corruptions"),
             "measure": ("runtimes", "precisions", "int8_calibration_images")}
LATE_CELL_KEYS = ("weights", "trial")  # the same for keys of the cell itself
# The evaluation settings, per section: how the trained weights are evaluated and measured after training (the
# inference protocol, further datasets, corruptions, deployment runtimes and precisions). They are attached to the
# trained cell, never part of what trains it: they enter the resolved configuration (the record's `config`, the
# worker's task) when set, and never the config hash, so that a grid evaluated another way evaluates the saved
# weights again and trains nothing (segbench.cell.attached).
EVALUATION_KEYS = {"eval": ("mode", "crop", "stride", "tta", "datasets", "corruptions"),
                   "measure": ("runtimes", "precisions", "int8_calibration_images")}


class TrialSpec(Frozen):
    """What makes a cell a tuning trial (segbench.execution.tuning): its study, its number in the study, and the
    fraction of the training split it is scored on (carved by the cell's seed, the study's seed) instead of
    eval.split, which a trial never reads."""

    study: SafeName
    number: int = Field(ge=0)
    holdout: float = Field(gt=0, lt=1)


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
    weights: SafeName = NO_WEIGHTS  # pretrained encoder weights by name (segbench.models.pretrained)
    trial: TrialSpec | None = None  # set on the cells of a tuning study only

    @property
    def encoder_key(self) -> str:
        """The encoder as the slug names it: `resnet18`, or `resnet18+imagenet` when it starts from pretrained
        weights."""
        return self.encoder if self.weights == NO_WEIGHTS else f"{self.encoder}+{self.weights}"

    @property
    def slug(self) -> str:
        slug = f"{self.model}__{self.encoder_key}__{self.loss.key}__{self.dataset.key}__s{self.seed}"
        return slug if self.trial is None else f"{slug}__t{self.trial.number}"

    def resolved(self) -> dict[str, Any]:
        """The full configuration, defaults included, as JSON-ready data (a key of LATE_KEYS only when it is set away
        from its default)."""
        resolved = self.model_dump(mode="json")
        for section, keys in LATE_KEYS.items():
            config = getattr(self, section)
            for key in keys:
                if getattr(config, key) == type(config).model_fields[key].default:
                    del resolved[section][key]
        for key in LATE_CELL_KEYS:
            if getattr(self, key) == type(self).model_fields[key].default:
                del resolved[key]
        return resolved

    def training_identity(self) -> dict[str, Any]:
        """What trains the cell: its resolved configuration without the evaluation settings (EVALUATION_KEYS)."""
        identity = self.resolved()
        for section, keys in EVALUATION_KEYS.items():
            for key in keys:
                identity[section].pop(key, None)
        return identity

    @property
    def evaluation(self) -> dict[str, Any]:
        """The evaluation settings set away from their defaults, as the record's `config` holds them, by section
        (e.g. {"eval": {"mode": "slide", ...}}; {} when all are at their defaults)."""
        return evaluation_settings(self.resolved())

    @property
    def config_hash(self) -> str:
        payload = {"semantics_version": BENCH_SEMANTICS_VERSION, "cell": self.training_identity()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    @property
    def id(self) -> str:
        return f"{self.slug}-{self.config_hash}"


def evaluation_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """The evaluation settings (EVALUATION_KEYS) of a resolved configuration, by section, the keys at their default
    (absent from it) left out: two cells, or a cell and a record, were evaluated alike when these are equal."""
    settings = {section: {key: resolved[section][key] for key in keys if key in resolved.get(section, {})}
                for section, keys in EVALUATION_KEYS.items()}
    return {section: values for section, values in settings.items() if values}


def record_evaluation(config: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation settings of a record's configuration (`config` as JSON), as Cell.evaluation gives them; None
    when this version cannot read the configuration."""
    from pydantic import ValidationError

    try:
        return Cell.model_validate(config).evaluation
    except ValidationError:
        return None


def evaluation_hash(settings: dict[str, Any] | None) -> str | None:
    """A short hash of evaluation settings (Cell.evaluation, record_evaluation); None when none is set."""
    if not settings:
        return None
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class SkippedCell:
    slug: str
    reason: str


@dataclass(frozen=True)
class Expansion:
    cells: list[Cell]
    skipped: list[SkippedCell]


def _excluded(grid: GridConfig, dataset: DatasetSpec, model: str, encoder: str, loss: LossSpec, seed: int,
              weights: str) -> bool:
    values = {"dataset": dataset.key, "model": model, "encoder": encoder, "loss": loss.key, "seed": seed,
              "weights": weights}
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
    input size (the eval resize, else the dataset's fixed image size, padded to the model's multiple). ConfigError
    when a dataset's options alone say that its cells cannot run (check_split_sizes).
    """
    from segbench.models import MODELS, incompatibility

    check_weights_names(grid)
    cells: list[Cell] = []
    skipped: list[SkippedCell] = []
    for dataset, model, encoder, weights, loss, seed in itertools.product(
        grid.datasets, grid.models, grid.encoders, grid.weights, grid.losses, grid.seeds
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
            weights=weights,
        )
        assert SAFE_ID.match(cell.slug), cell.slug  # guaranteed by the SafeName fields of the grid
        if _excluded(grid, dataset, model, encoder, loss, seed, weights):
            skipped.append(SkippedCell(cell.slug, "excluded by the grid's exclude rules"))
            continue
        reason = incompatibility(model, encoder, grid.train.crop) or weights_reason(cell)
        eval_size = evaluation_size(grid, dataset, MODELS.get(model).pad_multiple) if reason is None else None
        if eval_size is not None and tuple(eval_size) != tuple(grid.train.crop):
            reason = incompatibility(model, encoder, eval_size)
            reason = reason and f"at the evaluation size {eval_size[0]}x{eval_size[1]}: {reason} (set eval.size)"
        window = grid.eval.crop if grid.eval.protocol_mode == "slide" else None
        if reason is None and window is not None and tuple(window) != tuple(grid.train.crop):
            reason = incompatibility(model, encoder, window)
            reason = reason and f"at the sliding window {window[0]}x{window[1]}: {reason} (set eval.crop)"
        if reason is not None:
            skipped.append(SkippedCell(cell.slug, reason))
            continue
        cells.append(cell)
    for dataset in grid.datasets:
        check_split_sizes(grid, dataset, [cell.slug for cell in cells if cell.dataset == dataset])
    return Expansion(cells, skipped)


def weights_reason(cell: Cell) -> str | None:
    """Why the cell's encoder cannot start from its pretrained weights (none offered of that name, or a local
    encoder_weights file of the grid that they would replace), or None."""
    from segbench.models.pretrained import weights_problem

    if cell.weights == NO_WEIGHTS:
        return None
    if cell.encoder_weights is not None:
        return (f"the grid's encoder_weights gives '{cell.encoder}' the local file {cell.encoder_weights}, which "
                f"weights '{cell.weights}' would replace; its cells run with weights none")
    return weights_problem(cell.encoder, cell.weights)


def check_weights_names(grid: GridConfig) -> None:
    """ConfigError when a pretrained weights name of the grid is offered by none of its encoders (a typo)."""
    from segbench.models.pretrained import offered_weights

    if set(grid.weights) == {NO_WEIGHTS}:
        return
    offered = {encoder: offered_weights(encoder) for encoder in grid.encoders if encoder != "native"}
    known = sorted({name for names in offered.values() for name in names})
    for name in grid.weights:
        if name != NO_WEIGHTS and name not in known:
            listed = "; ".join(f"{encoder}: {', '.join(names) or 'none'}" for encoder, names in offered.items())
            raise ConfigError(f"weights '{name}' is offered by none of the grid's encoders{did_you_mean(name, known)} "
                              f"({listed or 'no library encoder'}); use none or one of these names.")


def holdout_size(num_images: int, fraction: float) -> int:
    """Images eval.holdout carves out of a training split of `num_images` for selection: round(fraction x N), at
    least one (segbench.cell.selection.holdout_indices picks which)."""
    return max(1, round(num_images * fraction))


def training_images(num_images: int, holdout: float | None) -> int:
    """Images left to train on after eval.holdout carves its selection images out of the training split."""
    return num_images if holdout is None else num_images - holdout_size(num_images, holdout)


def check_split_sizes(grid: GridConfig, dataset: DatasetSpec, slugs: list[str]) -> None:
    """ConfigError, before anything is written, when the dataset's options alone say that its cells (`slugs`) cannot
    run: a split the grid evaluates on that it does not have, or fewer training images than train.batch_size, which
    leaves the training loader (it drops an incomplete last batch) without a single batch."""
    from segbench.datasets import parse_dataset_params

    params = parse_dataset_params(dataset.name, dataset.params)
    sizes = params.split_sizes()
    if sizes is None or not slugs:
        return  # known once the dataset's folder is read, in the cell (segbench.cell.pipeline)
    where = f"dataset '{dataset.key}'"
    for key, split in (("eval.split", grid.eval.split), ("eval.select_split", grid.eval.select_split)):
        if split is not None and split not in sizes:
            raise ConfigError(f"{where} has no split '{split}' ({key}), so {cells_named(slugs)} cannot run; use one "
                              f"of its splits: {', '.join(sizes)}.")
    batch, holdout, option = grid.train.batch_size, grid.eval.holdout, params.SIZE_OPTIONS["train"]
    total = sizes["train"]
    available = training_images(total, holdout)
    if available >= batch:
        return
    needed = next(n for n in itertools.count(batch) if training_images(n, holdout) >= batch)
    if holdout is None:
        images = f"the {images_named(total)} in the train split of {where} ({option})"
    else:
        images = (f"the {images_named(available)} of {where} left to train on ({option} {total}, "
                  f"{total - available} held out by eval.holdout {holdout})")
    fixes = [f"set train.batch_size to at most {available}"] if available >= 2 else []
    fixes += ["lower eval.holdout"] if holdout is not None and total - 1 >= batch else []  # it takes 1 at least
    fixes.append(f"raise the dataset's {option} to at least {needed}")
    raise ConfigError(
        f"train.batch_size {batch} is larger than {images}, so the training loader, which drops an incomplete last "
        f"batch, has no batch for {cells_named(slugs)}; {', '.join(fixes[:-1])}{' or ' if len(fixes) > 1 else ''}"
        f"{fixes[-1]}."
    )


def images_named(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


def cells_named(slugs: list[str], shown: int = 3) -> str:
    """'cell a', 'cells a, b and c', '7 cells (a, b, c and 4 more)'."""
    if len(slugs) == 1:
        return f"cell {slugs[0]}"
    if len(slugs) <= shown:
        return f"cells {', '.join(slugs[:-1])} and {slugs[-1]}"
    return f"{len(slugs)} cells ({', '.join(slugs[:shown])} and {len(slugs) - shown} more)"
