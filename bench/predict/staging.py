"""An output folder written whole or not at all (`segbench predict --out`, `segbench export onnx --out`).

The outputs go into a temporary folder beside `out`, which replaces `out` only when everything is written; on any
error the temporary folder is removed, with the folders made to hold it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segbench.errors import ConfigError


def check_out(out: Path, manifest: str, force: bool, command: str, what: str) -> None:
    """Refuse an --out that is a file, holds files `command` did not write (no `manifest` there), or holds an earlier
    output (`what`, e.g. 'prediction') without `force`; ConfigError, one sentence."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; name a folder to write the {what} into.")
    if out.is_dir() and any(out.iterdir()):
        if not (out / manifest).is_file():
            raise ConfigError(f"--out {out} already holds files that {command} did not write; choose a new folder.")
        if not force:
            raise ConfigError(f"--out {out} holds an earlier {what}; choose a new folder or pass --force to "
                              "replace it.")


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A new temporary folder beside `out` to write into; it replaces `out` (an earlier output or an empty folder)
    when the block ends, and is removed, with any folders made to hold it, when the block raises."""
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    first_new = next((folder for folder in reversed([out.parent, *out.parent.parents]) if not folder.exists()), None)
    staging.mkdir(parents=True)
    try:
        yield staging
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(first_new or staging, ignore_errors=True)
        raise


def _replace(staging: Path, out: Path) -> None:
    """Move the finished staging folder to `out`, replacing what is there."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
