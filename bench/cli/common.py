"""What every command shares: known errors become one line on stderr and exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from segbench.errors import SegbenchError

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
