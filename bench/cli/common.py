"""What every command shares: known errors become one line on stderr and exit code 2 (with their traceback under
--debug); the HxW size option."""

from __future__ import annotations

import functools
import os
import re
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import typer
from rich.console import Console

from segbench.errors import ConfigError, SegbenchError

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)

DEBUG_ENV = "SEGBENCH_DEBUG"
TRUE_WORDS = ("1", "true", "t", "yes", "y", "on")  # click's words for a true boolean
# The app's --debug for the command line being run (set by its callback, reset when its context closes); None outside
# the app, e.g. a command function called directly, where SEGBENCH_DEBUG alone decides.
_debug: ContextVar[bool | None] = ContextVar("segbench_debug", default=None)


def set_debug(context: typer.Context, debug: bool) -> None:
    """Make `debug` what debug_enabled() says until `context` (the app's, around the whole command) closes."""
    token = _debug.set(debug)
    context.call_on_close(lambda: _debug.reset(token))


def debug_enabled() -> bool:
    """Whether `segbench --debug` (or SEGBENCH_DEBUG=1, which sets the same option) is in effect."""
    debug = _debug.get()
    if debug is None:
        return os.environ.get(DEBUG_ENV, "").strip().lower() in TRUE_WORDS
    return debug


def full_traceback(exc: BaseException) -> str:
    """The traceback of `exc` with every exception it was raised from, including those that `raise ... from None`
    hides from users (e.g. pydantic's full report behind a grid file's one sentence)."""
    report = traceback.TracebackException.from_exception(exc)
    link: traceback.TracebackException | None = report
    while link is not None:
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    return "".join(report.format())


def user_errors(func: F) -> F:
    """Turn SegbenchError into `error: <sentence>` on stderr and its exit code; under --debug the traceback comes
    first, so the sentence stays the last line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SegbenchError as exc:
            if debug_enabled():
                typer.echo(full_traceback(exc), err=True, nl=False)
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)  # always one line
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def parse_size(text: str, example: str = "512x1024") -> tuple[int, int]:
    """A --size option: '512x1024' -> (512, 1024), height x width in pixels, both positive; ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or min(int(match[1]), int(match[2])) < 1:
        raise ConfigError(f"--size '{text}' must be HxW, height x width in pixels, e.g. {example}.")
    return int(match[1]), int(match[2])
