"""Per-cell records: one `record.json` per cell folder is the only source of truth for results (layout: paths.py)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench import BENCH_SEMANTICS_VERSION, __version__
from segbench.atomic import atomic_write_json
from segbench.errors import SegbenchError
from segbench.records.paths import RECORD_FILE, cell_dir, cells_dir

RECORD_SCHEMA_VERSION = 1

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"

# Failure kinds that a second attempt can cure; other failures are kept until --retry-failed.
TRANSIENT_FAILURES = {"killed", "oom", "interrupted", "worker_lost"}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_record(cell: Any, status: str, **parts: Any) -> dict[str, Any]:
    """A record with the identity fields filled in; `parts` adds metrics, history, error and so on."""
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "segbench_version": __version__,
        "semantics_version": BENCH_SEMANTICS_VERSION,
        "cell_id": cell.id,
        "slug": cell.slug,
        "config_hash": cell.config_hash,
        "config": cell.resolved(),
        "status": status,
        "error": None,
        "written_at": now_iso(),
    }
    record.update(parts)
    return record


def error_info(kind: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": kind, "message": message, **details}


def write_record(results: Path, record: dict[str, Any]) -> Path:
    path = cell_dir(results, record["cell_id"]) / RECORD_FILE
    atomic_write_json(path, record)
    return path


def read_record(path: Path) -> dict[str, Any]:
    """Read one record; a damaged or foreign file is a SegbenchError naming it."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegbenchError(
            f"record {path} cannot be read ({exc}); delete its cell folder and run the grid again."
        ) from None
    if not isinstance(record, dict) or record.get("schema_version") != RECORD_SCHEMA_VERSION:
        raise SegbenchError(
            f"record {path} has schema version {record.get('schema_version') if isinstance(record, dict) else None}, "
            f"this segbench reads version {RECORD_SCHEMA_VERSION}; rerun the grid with this version."
        )
    return record


@dataclass(frozen=True)
class LoadedRecords:
    records: list[dict[str, Any]]
    unreadable: list[str]


def load_records(results: Path) -> LoadedRecords:
    """All readable records under a results folder, and one message per unreadable one."""
    records: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for path in sorted(cells_dir(results).glob(f"*/{RECORD_FILE}")):
        try:
            records.append(read_record(path))
        except SegbenchError as exc:
            unreadable.append(str(exc))
    return LoadedRecords(records, unreadable)


def is_finished(record: dict[str, Any] | None, config_hash: str, retry_failed: bool) -> bool:
    """Whether a cell needs no new run: it succeeded, or it failed for a reason a rerun cannot cure."""
    if record is None or record.get("config_hash") != config_hash:
        return False
    if record["status"] == STATUS_OK:
        return True
    if record["status"] == STATUS_FAILED:
        kind = (record.get("error") or {}).get("kind")
        return not retry_failed and kind not in TRANSIENT_FAILURES
    return False
