"""Per-cell records: one `record.json` per cell folder is the only source of truth for results (layout: paths.py).

The one reader and writer of records: `write_record` validates through the typed model (schema.py) and writes
atomically; `read_record` and `load_records` return typed `Record`s, migrating older formats (schema.migrate) and
keeping, and saying, what a newer segbench added.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from segbench import BENCH_SEMANTICS_VERSION, __version__
from segbench.atomic import atomic_write_json
from segbench.errors import SegbenchError
from segbench.records.paths import RECORD_FILE, cell_dir, cells_dir
from segbench.records.schema import RECORD_SCHEMA_VERSION, Record, migrate, unknown_fields

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"

# Failure kinds that a second attempt can cure; other failures are kept until --retry-failed.
TRANSIENT_FAILURES = {"killed", "oom", "interrupted", "worker_lost"}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_record(cell: Any, status: str, **parts: Any) -> Record:
    """A record with the identity fields filled in; `parts` adds metrics, history, error and so on (validated here:
    a part of the wrong shape is a bug of the writer and fails loudly)."""
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
    record.update({key: value.to_json() if hasattr(value, "to_json") else value for key, value in parts.items()})
    return Record.model_validate(record)


def error_info(kind: str, message: str, **details: Any) -> dict[str, Any]:
    """A record's `error` part (schema.ErrorInfo), as the JSON that workers and ranks pass on."""
    return {"kind": kind, "message": message, **details}


def write_record(results: Path, record: Record | dict[str, Any]) -> Path:
    """Write a record atomically (a dict is validated into a Record first). Fields the schema does not describe
    are written too, and named on stderr (which a worker's log keeps) so that they get described in schema.py."""
    if not isinstance(record, Record):
        record = Record.model_validate(record)
    undescribed = unknown_fields(record)
    if undescribed:
        sys.stderr.write(f"segbench: record {record.cell_id} has fields that records/schema.py does not describe: "
                         f"{', '.join(undescribed)}\n")
    path = cell_dir(results, record.cell_id) / RECORD_FILE
    atomic_write_json(path, record.to_json())
    return path


def read_record(path: Path) -> Record:
    """Read one record, migrated to the current format; a damaged or foreign file is a SegbenchError naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegbenchError(
            f"record {path} cannot be read ({exc}); delete its cell folder and run the grid again."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("schema_version"), int):
        raise SegbenchError(f"{path} is not a segbench record (it has no schema_version); delete its cell folder "
                            "and run the grid again.")
    try:
        return Record.model_validate(migrate(data))
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise SegbenchError(f"record {path} has a bad field {where} ({problem['msg']}); delete its cell folder and "
                            "run the grid again.") from None


def newer_format_note(records: list[Record]) -> str | None:
    """One sentence when some records come from a newer segbench: what this version does not know is kept, not
    shown."""
    newer = [record for record in records if record.schema_version > RECORD_SCHEMA_VERSION]
    if not newer:
        return None
    fields = sorted({name for record in newer for name in unknown_fields(record)})
    return (f"{len(newer)} record(s) were written by a newer segbench (record format "
            f"{max(r.schema_version for r in newer)}, this one reads {RECORD_SCHEMA_VERSION}); their fields "
            f"unknown here are kept but not shown{': ' + ', '.join(fields[:8]) if fields else ''}"
            f"{' ...' if len(fields) > 8 else ''}. Upgrade segbench to see them.")


@dataclass(frozen=True)
class LoadedRecords:
    records: list[Record]
    unreadable: list[str]
    notes: list[str] = field(default_factory=list)


def load_records(results: Path) -> LoadedRecords:
    """All readable records under a results folder, one message per unreadable one, and a note when some come
    from a newer segbench."""
    records: list[Record] = []
    unreadable: list[str] = []
    for path in sorted(cells_dir(results).glob(f"*/{RECORD_FILE}")):
        try:
            records.append(read_record(path))
        except SegbenchError as exc:
            unreadable.append(str(exc))
    note = newer_format_note(records)
    return LoadedRecords(records, unreadable, [note] if note else [])


def is_finished(record: Record | None, config_hash: str, retry_failed: bool) -> bool:
    """Whether a cell needs no new run: it succeeded, or it failed for a reason a rerun cannot cure."""
    if record is None or record.config_hash != config_hash:
        return False
    if record.status == STATUS_OK:
        return True
    if record.status == STATUS_FAILED:
        return not retry_failed and record.error_kind not in TRANSIENT_FAILURES
    return False
