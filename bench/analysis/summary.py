"""A compact summary of a results folder: one flat row of raw numbers per cell slug, for gates and baselines.

Derived from records alone. When one folder holds several records with the same slug (runs under different
settings), the newest is summarised and the others are listed as superseded: they are not comparable with it.

Version 2 rows say where each cell's latency was timed (`machine`, a fingerprint id, detailed once under `machines`),
how far its timing rounds agreed (`latency_spread`) and which cells timed the same inference (`latency_workload`).
Version 1 summaries still load: their rows have no fingerprint, so their latency is never gated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segbench.atomic import atomic_write_json
from segbench.errors import ConfigError
from segbench.metrics.catalogue import SUMMARY_FIELDS
from segbench.records.paths import cells_dir
from segbench.records.rows import record_row
from segbench.records.store import STATUS_OK, load_records, now_iso

SUMMARY_KIND = "segbench-summary"
SUMMARY_VERSION = 2
READABLE_VERSIONS = (1, 2)
# A summary row: these identity fields, the catalogue's summary fields (the only ones `compare` checks), then where
# and how steadily the latency was timed (segbench.records.rows.latency_provenance).
IDENTITY_FIELDS = ("cell_id", "config_hash", "status", "error", "dataset", "model", "encoder", "loss", "seed")
PROVENANCE_FIELDS = ("machine", "latency_spread", "latency_workload")


@dataclass(frozen=True)
class Selection:
    """The records to report, one per slug (the newest), and the older ones they supersede."""

    records: list[dict[str, Any]]
    superseded: list[dict[str, Any]]


def select_latest(records: Iterable[dict[str, Any]]) -> Selection:
    """Keep the newest record of each slug (by `written_at`); older records with another config hash are
    superseded, never averaged or compared with it."""
    by_slug: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_slug.setdefault(record["slug"], []).append(record)
    chosen: list[dict[str, Any]] = []
    superseded: list[dict[str, Any]] = []
    for slug in sorted(by_slug):
        ordered = sorted(by_slug[slug], key=lambda r: r.get("finished_at") or r.get("written_at") or "", reverse=True)
        chosen.append(ordered[0])
        superseded.extend(ordered[1:])
    return Selection(chosen, superseded)


def summary_row(record: dict[str, Any]) -> dict[str, Any]:
    """The flat summary row of one record: identity and the numeric fields (None where not measured)."""
    row = record_row(record)
    return {key: row[key] for key in (*IDENTITY_FIELDS, *SUMMARY_FIELDS, *PROVENANCE_FIELDS)}


def summarize(records: list[dict[str, Any]], source: str = "") -> dict[str, Any]:
    """The summary document of a list of records: `cells` maps each slug to its row."""
    selection = select_latest(records)
    measured = next((r for r in selection.records if r.get("environment")), None) or {}
    environment = measured.get("environment") or {}
    conditions = ((measured.get("cost") or {}).get("latency") or {}).get("conditions") or {}
    return {
        "kind": SUMMARY_KIND,
        "version": SUMMARY_VERSION,
        "created_at": now_iso(),
        "source": source,
        "environment": {
            "platform": environment.get("platform"),
            "device": conditions.get("device") or (environment.get("device") or {}).get("name"),
            "threads": conditions.get("threads"),
            "torch": (environment.get("packages") or {}).get("torch"),
            "git_commit": environment.get("git_commit"),
        },
        "machines": machines(selection.records),
        "cells": {record["slug"]: summary_row(record) for record in selection.records},
        "superseded": [{"slug": r["slug"], "config_hash": r["config_hash"], "cell_id": r["cell_id"]}
                       for r in selection.superseded],
    }


def machines(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The fingerprints the records' latencies were timed on, by id."""
    found: dict[str, Any] = {}
    for record in records:
        machine = ((((record.get("cost") or {}).get("latency") or {}).get("conditions") or {}).get("machine")) or {}
        if machine.get("id"):
            found.setdefault(machine["id"], machine)
    return found


def summarize_folder(results: Path) -> dict[str, Any]:
    results = Path(results)
    if not cells_dir(results).is_dir():
        raise ConfigError(f"{results} is not a results folder (it has no cells/ folder); pass the --results folder "
                          "of a `segbench run`.")
    loaded = load_records(results)
    return summarize(loaded.records, source=str(results))


def load_summary(path: Path) -> dict[str, Any]:
    """A summary from a summary JSON file, or computed from a results folder."""
    path = Path(path)
    if path.is_dir():
        return summarize_folder(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; pass a results folder or a summary file from `segbench summary`.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a JSON summary ({exc}); write one with `segbench summary`.") from None
    if not isinstance(document, dict) or document.get("kind") != SUMMARY_KIND:
        raise ConfigError(f"{path} is not a segbench summary (no \"kind\": \"{SUMMARY_KIND}\"); write one with "
                          "`segbench summary RESULTS_DIR --out FILE`.")
    if document.get("version") not in READABLE_VERSIONS:
        raise ConfigError(f"{path} has summary version {document.get('version')}, this segbench reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}; regenerate it with `segbench summary` "
                          "(or `make baseline`).")
    return upgrade(document)


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A summary of any readable version in the current shape: a version 1 summary's rows get no fingerprint (their
    latency was timed on an unknown machine) and no spread or workload."""
    if document.get("version") == SUMMARY_VERSION:
        return document
    cells = {slug: {**{key: None for key in PROVENANCE_FIELDS}, **row} for slug, row in document["cells"].items()}
    return {**document, "machines": document.get("machines") or {}, "cells": cells, "upgraded_from": 1}


def write_summary(summary: dict[str, Any], out: Path) -> Path:
    atomic_write_json(Path(out), summary)
    return Path(out)


def ok_count(summary: dict[str, Any]) -> int:
    return sum(row["status"] == STATUS_OK for row in summary["cells"].values())
