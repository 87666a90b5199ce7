"""The grid's `tune:` section: an equal tuning budget per configuration (segbench.execution.tuning runs it).

Every configuration (model x encoder x weights x loss x dataset) gets one study of `trials` short training runs over
the same `space` of `train` keys; each trial is scored by its mIoU on a `holdout` fraction of the training split,
carved by the study's `seed`, so the reported split (val) is never read while tuning. The final cells then train
with each configuration's best parameters for every seed of the grid and report on val as usual.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DISTRIBUTIONS = ("log_uniform", "uniform", "int", "choice")
ATTRIBUTES = {"log_uniform": "log_uniform", "uniform": "uniform", "int": "integer", "choice": "choice"}
# The train keys a study may tune, the numeric ones (a structural key such as crop or world_size is not a
# hyperparameter of the comparison), with the values train allows (segbench.grid.schema.TrainConfig, which imports
# this module: the bounds are repeated here rather than imported back).
TUNABLE_KEYS = {
    "lr": ("a positive number", lambda value: value > 0),
    "weight_decay": ("a number of at least 0", lambda value: value >= 0),
    "momentum": ("a number in [0, 1)", lambda value: 0 <= value < 1),
    "poly_power": ("a positive number", lambda value: value > 0),
    "batch_size": ("a whole number of at least 2", lambda value: value >= 2 and float(value).is_integer()),
}


class Dimension(Frozen):
    """One tuned train key: exactly one of the four distributions."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    log_uniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    integer: tuple[int, int] | None = Field(None, alias="int")
    choice: list[int | float] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_distribution(self) -> Dimension:
        given = [name for name in DISTRIBUTIONS if getattr(self, ATTRIBUTES[name]) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one distribution of {', '.join(DISTRIBUTIONS)}, e.g. "
                             "{log_uniform: [1.0e-4, 1.0e-2]}")
        low_high = getattr(self, ATTRIBUTES[given[0]]) if given[0] != "choice" else None
        if low_high is not None:
            low, high = low_high
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"{given[0]} needs [low, high] with low < high, got [{low}, {high}]")
            if given[0] == "log_uniform" and low <= 0:
                raise ValueError(f"log_uniform needs a positive low bound, got {low}")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in DISTRIBUTIONS if getattr(self, ATTRIBUTES[name]) is not None)

    @property
    def bounds(self) -> Any:
        """[low, high] of a range, or the list of choices."""
        return list(getattr(self, ATTRIBUTES[self.kind]))

    def to_json(self) -> dict[str, Any]:
        return {self.kind: self.bounds}


class TuneConfig(Frozen):
    space: dict[str, Dimension] = Field(min_length=1)
    trials: int = Field(ge=1)  # per configuration: the budget
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    iterations: int | None = Field(None, ge=1)  # training length of one trial (one of iterations, epochs)
    epochs: int | None = Field(None, ge=1)
    holdout: float = Field(0.2, gt=0, lt=1)  # fraction of the training split that scores the trials
    seed: int = 0  # the study's seed: its sampler and the holdout it carves

    @field_validator("space")
    @classmethod
    def _tunable(cls, space: dict[str, Dimension]) -> dict[str, Dimension]:
        for key, dimension in space.items():
            if key not in TUNABLE_KEYS:
                raise ValueError(f"tune.space key '{key}' is not a numeric train key that can be tuned; use one of "
                                 f"{', '.join(TUNABLE_KEYS)}")
            if key == "batch_size" and dimension.kind in ("log_uniform", "uniform"):
                raise ValueError("tune.space batch_size takes whole numbers: use {int: [lo, hi]} or {choice: [...]}")
            allowed, accepts = TUNABLE_KEYS[key]
            refused = [value for value in dimension.bounds if not accepts(value)]
            if refused:
                raise ValueError(f"tune.space {key} {dimension.kind} {dimension.bounds} holds {refused[0]}, but "
                                 f"train.{key} must be {allowed}")
        return space

    @model_validator(mode="after")
    def _length_and_sampler(self) -> TuneConfig:
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("set exactly one of tune.iterations and tune.epochs (the training length of a trial)")
        if self.sampler == "grid":
            ranged = [key for key, dim in self.space.items() if dim.kind in ("log_uniform", "uniform")]
            if ranged:
                raise ValueError(f"tune.sampler: grid needs points, not ranges: give {', '.join(ranged)} as "
                                 "{choice: [...]} or {int: [lo, hi]}, or use sampler tpe or random")
        return self

    def space_json(self) -> dict[str, dict[str, Any]]:
        return {key: dimension.to_json() for key, dimension in self.space.items()}
