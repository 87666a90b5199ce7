"""The dataset registry and the functions the runner calls: parse, describe, prepare, build.

Downstream code never sees a raw dict of dataset options: `parse_dataset_params` turns the grid file's mapping into
the entry's frozen `Params` model, and every pydantic `ValidationError` becomes one `ConfigError` sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from torch.utils.data import Dataset

from segbench.datasets.base import DatasetInfo, DatasetParams, default_cache_dir
from segbench.errors import ConfigError, one_line
from segbench.registry import Registry, did_you_mean

DATASETS: Registry[Any] = Registry("dataset")


def parse_dataset_params(name: str, params: dict[str, Any] | None) -> DatasetParams:
    """Validate a grid file's options for dataset `name`; raises UnknownNameError or ConfigError."""
    entry = DATASETS.get(name)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(
            f"dataset '{name}' options must be a mapping of option names to values, got {type(params).__name__}."
        )
    try:
        return entry.Params(**params)
    except ValidationError as error:
        raise ConfigError(_validation_message(name, entry.Params, error)) from None


def _allowed(model: type[BaseModel], key: str) -> str:
    field = model.model_fields[key]
    if field.description:
        return field.description
    annotation = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
    return f"a value of type {annotation}"


def _validation_message(name: str, model: type[BaseModel], error: ValidationError) -> str:
    """One sentence for the first problem (plus how many others there are)."""
    problems = error.errors()
    first = problems[0]
    key = one_line(".".join(str(part) for part in first["loc"])) or "?"
    valid_keys = list(model.model_fields)
    more = f" ({len(problems) - 1} more problem(s) after fixing this one)" if len(problems) > 1 else ""
    if first["type"] == "extra_forbidden":
        return (
            f"dataset '{name}' has no option '{key}'{did_you_mean(key, valid_keys)}; "
            f"valid options: {', '.join(valid_keys)}{more}."
        )
    if first["type"] == "missing":
        return f"dataset '{name}' needs option '{key}': {_allowed(model, key)}{more}."
    top_key = str(first["loc"][0]) if first["loc"] else key
    allowed = _allowed(model, top_key) if top_key in model.model_fields else "see the dataset's documentation"
    reason = first["msg"][0].lower() + first["msg"][1:]
    return (
        f"dataset '{name}' option '{key}' has invalid value {first.get('input')!r} ({reason}); "
        f"allowed: {allowed}{more}."
    )


def dataset_info(name: str, params: DatasetParams) -> DatasetInfo:
    """Class names, palette and ignore value of a dataset, without reading any file."""
    return DATASETS.get(name).info(params)


def prepare_dataset(name: str, params: DatasetParams, cache_dir: Path | None = None) -> None:
    """One-time work before training starts: generate synthetic data, or check that a real dataset's root exists."""
    DATASETS.get(name).prepare(params, cache_dir if cache_dir is not None else default_cache_dir())


def build_dataset(
    name: str, params: DatasetParams, split: str, transform: Any, cache_dir: Path | None = None
) -> Dataset:
    """A torch Dataset of `(image float32 [3, H, W], label int64 [H, W])` for one split."""
    entry = DATASETS.get(name)
    return entry(params, split, transform, cache_dir if cache_dir is not None else default_cache_dir())
