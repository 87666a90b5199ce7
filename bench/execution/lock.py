"""One `segbench run` per results folder: an advisory lock that dies with its holder.

The lock is `fcntl.flock` on `<results>/.segbench.lock`; the kernel releases it when the holding process exits,
however it exits, so a lock left by a dead process is simply taken over. The file also names its holder (pid,
host, start time, command) so that a refused second run can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segbench.errors import ConfigError
from segbench.records.paths import LOCK_FILE
from segbench.records.store import now_iso


@dataclass
class ResultsLock:
    results: Path
    previous_holder: dict[str, Any] | None = None  # set when a stale lock of a dead process was taken over
    _handle: Any = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.results / LOCK_FILE

    def acquire(self) -> ResultsLock:
        self.results.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the life of the run)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self.path)
            handle.close()
            raise ConfigError(
                f"results folder {self.results} is in use by another segbench run ({_describe(holder)}; lock file "
                f"{self.path}); wait for it to finish or choose another --results."
            ) from None
        self.previous_holder = _read_holder(self.path)
        handle.seek(0)
        handle.truncate()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso(), "command": sys.argv}
        handle.write(json.dumps(holder))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ResultsLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"
