"""One generic name -> object registry for models, encoders, losses and datasets.

A duplicate name is a programming error; an unknown name is a user error that lists the valid names and the
closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from segbench.errors import UnknownNameError, one_line

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    shown = ", ".join(choices[:30]) + (", ..." if len(choices) > 30 else "")
    plural = kind + ("es" if kind.endswith("s") else "s")
    return f"unknown {kind} '{one_line(name)}'{did_you_mean(name, choices)}; valid {plural}: {shown}."


class Registry(Generic[T]):
    """Maps names to objects of one kind, e.g. `MODELS = Registry("model")`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@DATASETS.register("cityscapes")` (models go through `register_model(ModelEntry(...))`)."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names()))
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
