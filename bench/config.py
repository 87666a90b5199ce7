"""Grid files: parsed once, at the boundary, into frozen typed objects.

Everything downstream (expansion, runner, worker) sees these objects, never raw dicts. Every problem with a grid
file becomes a ConfigError with one sentence naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from segbench.errors import ConfigError, SegbenchError
from segbench.losses import LOSSES

# Names that become parts of file names (cell ids, the saved grid): no separators, no leading dot, so no value in a
# grid file can make segbench write outside its results folder.
SafeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$", max_length=80)]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossSpec(Frozen):
    """A loss and its options; `key` names it in cell ids."""

    name: str
    gamma: float = Field(2.0, ge=0)
    class_weights: Literal["inverse_freq", "median_freq"] | None = None
    id: SafeName | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        LOSSES.get(name)
        return name

    @property
    def key(self) -> str:
        if self.id:
            return self.id
        parts = [self.name]
        if self.name == "focal" and self.gamma != 2.0:
            parts.append(f"g{self.gamma:g}")
        if self.class_weights:
            parts.append({"inverse_freq": "invfreq", "median_freq": "medfreq"}[self.class_weights])
        return "-".join(parts)


class DatasetSpec(Frozen):
    """A dataset by registered name with its options (`params`, validated by the dataset itself)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    id: SafeName | None = None

    @property
    def key(self) -> str:
        return self.id or self.name


class TrainConfig(Frozen):
    epochs: int | None = Field(None, ge=1)
    iterations: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_power: float = Field(0.9, gt=0)
    crop: tuple[int, int] = (128, 256)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    autocast: bool = True
    autocast_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    num_workers: int = Field(0, ge=0)
    eval_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_budget(self) -> TrainConfig:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("set exactly one of train.epochs and train.iterations")
        if min(self.crop) < 1 or self.scale_range[0] <= 0 or self.scale_range[0] > self.scale_range[1]:
            raise ValueError("train.crop must be two positive sizes and train.scale_range an increasing positive pair")
        return self


class EvalConfig(Frozen):
    split: str = "val"
    batch_size: int = Field(8, ge=1)
    size: tuple[int, int] | None = None
    max_images: int | None = Field(None, ge=1)


class MeasureConfig(Frozen):
    """Cost measurement of each trained cell at its evaluation input size (see reference/measurement.md)."""

    enabled: bool = True
    warmup: int = Field(10, ge=1)
    iters: int = Field(50, ge=1)
    batch_size: int = Field(8, ge=1)
    macs: bool = True
    memory: bool = True  # peak memory of one training step and one inference batch (a fresh process on the CPU)
    threads: int | None = Field(None, ge=1)  # CPU threads while timing latency; None keeps the process's setting


class ExcludeRule(Frozen):
    """A cell is excluded when every field given here matches it."""

    dataset: str | None = None
    model: str | None = None
    encoder: str | None = None
    loss: str | None = None
    seed: int | None = None


class GridConfig(Frozen):
    name: SafeName = "grid"
    description: str = ""
    datasets: list[DatasetSpec] = Field(min_length=1)
    models: list[SafeName] = Field(min_length=1)
    encoders: list[SafeName] = Field(min_length=1)
    losses: list[LossSpec] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    exclude: list[ExcludeRule] = Field(default_factory=list)
    encoder_weights: dict[str, Path] = Field(default_factory=dict)

    @field_validator("datasets", "losses", mode="before")
    @classmethod
    def _names_to_dicts(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> GridConfig:
        for axis, keys in (
            ("datasets", [d.key for d in self.datasets]),
            ("losses", [loss.key for loss in self.losses]),
            ("models", self.models),
            ("encoders", self.encoders),
            ("seeds", [str(seed) for seed in self.seeds]),
        ):
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            if repeated:
                raise ValueError(f"{axis} lists '{repeated[0]}' twice; give each entry a distinct 'id'")
        return self


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item not in ("function-after", "function-before") and not str(item).startswith(("literal[", "tuple[")):
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts)


def describe_validation_error(source: str, error: ValidationError) -> str:
    """One sentence for the first problem pydantic found."""
    first = error.errors()[0]
    where = _location(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"{source}: required key '{where}' is missing."
    if first["type"] == "string_pattern_mismatch":
        return (
            f"{source}: {where} = {first.get('input')!r} is invalid: use only letters, digits and . _ + - "
            "(it becomes part of file names)."
        )
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{where}'; check its spelling against the grid format in the README."
    if where:
        return f"{source}: {where} = {first.get('input')!r} is invalid: {message}."
    return f"{source}: {message}."


def load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"grid file {path} does not exist; pass the path of a YAML grid such as grids/quickstart.yaml."
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file; a grid file is YAML text.") from None
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path} must hold a YAML mapping with keys such as datasets, models, encoders, losses, train."
        )
    return document


def apply_overrides(document: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML) to a copy of `document`."""
    import copy

    document = copy.deepcopy(document)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{override}' must look like key.path=value, e.g. train.epochs=1.")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = document
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{override}': '{part}' is not a mapping in the grid file.")
            node = child
        node[parts[-1]] = value
    return document


def parse_grid(document: dict[str, Any], source: str = "grid") -> GridConfig:
    """Validate a grid document into a GridConfig; every error is a ConfigError (or UnknownNameError)."""
    try:
        grid = GridConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc)) from None
    except SegbenchError as exc:  # an unknown loss name raised inside a validator
        raise type(exc)(f"{source}: {exc}") from None
    _check_names(grid, source)
    return grid


def _check_names(grid: GridConfig, source: str) -> None:
    from segbench.datasets import parse_dataset_params
    from segbench.models import MODELS, validate_encoder

    try:
        for model in grid.models:
            MODELS.get(model)
        for encoder in grid.encoders:
            if encoder != "native":
                validate_encoder(encoder)
        for dataset in grid.datasets:
            parse_dataset_params(dataset.name, dataset.params)
    except SegbenchError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    for name, path in grid.encoder_weights.items():
        if name not in grid.encoders:
            raise ConfigError(f"{source}: encoder_weights names '{name}', which is not in encoders {grid.encoders}.")
        if not path.is_file():
            raise ConfigError(f"{source}: encoder_weights file {path} for '{name}' does not exist.")
    if grid.train.batch_size == 1:
        raise ConfigError(f"{source}: train.batch_size must be at least 2 (batch norm cannot train on one image).")


def load_grid(path: Path, overrides: list[str] | None = None) -> GridConfig:
    document = apply_overrides(load_yaml(Path(path)), overrides or [])
    return parse_grid(document, source=str(path))
