"""Grid files: parsed once, at the boundary, into frozen typed objects.

Everything downstream (expansion, runner, worker) sees these objects, never raw dicts. Every problem with a grid
file becomes a ConfigError with one sentence naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

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
