"""Errors that reach the user as one sentence and exit code 2 (bad input), never as a traceback."""


class SegbenchError(Exception):
    """A problem with what the user handed segbench: the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(SegbenchError):
    """A grid file or a command-line option is invalid."""


class DatasetError(SegbenchError):
    """A dataset folder is missing, empty or inconsistent."""


class UnknownNameError(SegbenchError):
    """A model, encoder, loss or dataset name is not registered."""


class CheckpointError(SegbenchError):
    """A checkpoint or weights file cannot be used."""


def one_line(text: str) -> str:
    """`text` as a message may quote it: control characters (a newline in a YAML key) escaped, so the message stays
    one sentence on one line."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
