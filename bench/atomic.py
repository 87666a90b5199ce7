"""Atomic writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a temporary file in the same folder, fsync (unless not `durable`), then rename over `path`.

    Without fsync a power loss can leave an empty file behind the rename: acceptable only for caches that are
    checked when read (such as the per-epoch training state), not for records.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_json"):  # a typed record part (segbench.records.schema), as it is stored
        return _nan_to_none(value.to_json())
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def atomic_write_json(path: Path, payload: Any) -> None:
    """JSON with NaN and infinities stored as null (strict JSON readers reject them)."""
    text = json.dumps(_nan_to_none(payload), indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value


def atomic_torch_save(path: Path, obj: Any, durable: bool = True) -> None:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue(), durable=durable)
