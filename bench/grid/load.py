"""Reading grid files: YAML, `key.path=value` overrides and validation into a GridConfig (one sentence per problem)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from segbench.errors import ConfigError, SegbenchError, one_line
from segbench.grid.schema import GridConfig


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
    where = one_line(_location(first["loc"]))
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


def parse_assignment(text: str, what: str, usage: str) -> tuple[str, Any]:
    """'key=value' -> (key, value parsed as YAML; None when empty): a grid override or a `data --param` option.

    what and usage name the option in the error message, e.g. ("--param", "key=value, e.g. --param classes=x").
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{what} '{text}' must look like {usage}.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(
            f"{what} '{text}' holds a value that is not valid YAML; quote it or close its brackets."
        ) from None
    return key.strip(), value


def apply_overrides(document: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML) to a copy of `document`."""
    document = copy.deepcopy(document)
    for override in overrides:
        key, value = parse_assignment(override, "override", "key.path=value, e.g. train.epochs=1")
        node = document
        parts = key.split(".")
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
        for dataset in (*grid.datasets, *grid.eval.datasets):
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
