"""What every command shares: known errors become one line on stderr and exit code 2; the HxW size option."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from segbench.errors import ConfigError, SegbenchError

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)


def user_errors(func: F) -> F:
    """Turn SegbenchError into `error: <sentence>` on stderr and its exit code, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SegbenchError as exc:
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)  # always one line
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def parse_size(text: str, example: str = "512x1024") -> tuple[int, int]:
    """A --size option: '512x1024' -> (512, 1024), height x width in pixels, both positive; ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or min(int(match[1]), int(match[2])) < 1:
        raise ConfigError(f"--size '{text}' must be HxW, height x width in pixels, e.g. {example}.")
    return int(match[1]), int(match[2])
