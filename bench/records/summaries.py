"""Summary files (`segbench summary --out FILE`, results/baseline/summary.json): the one reader and writer.

`read_summary` checks what a file claims to be (kind and version, each refusal one sentence) and returns the typed
`Summary` of schema.py; a version 1 summary is upgraded here, in one place: its rows get no fingerprint (their latency
was timed on an unknown machine, so it is never gated), no spread and no workload, and the summary says
`upgraded_from=1`. `write_summary` writes a `Summary` atomically, its rows' fields in the order of `ROW_FIELDS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from segbench.atomic import atomic_write_json
from segbench.errors import ConfigError
from segbench.records.schema import (
    READABLE_SUMMARY_VERSIONS,
    SUMMARY_KIND,
    SUMMARY_VERSION,
    Summary,
    SummaryRow,
)

# A summary row on disk: identity, the catalogue's summary fields, then the latency's provenance (schema.SummaryRow)
ROW_FIELDS = tuple(SummaryRow.model_fields)


def read_summary(path: Path) -> Summary:
    """The summary in a summary JSON file, upgraded to the current version; a missing, unreadable or foreign file,
    or one of a version this segbench cannot read, is a ConfigError (one sentence, exit 2)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; pass a results folder or a summary file from `segbench summary`.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a JSON summary ({exc}); write one with `segbench summary`.") from None
    if not isinstance(document, dict) or document.get("kind") != SUMMARY_KIND:
        raise ConfigError(f"{path} is not a segbench summary (no \"kind\": \"{SUMMARY_KIND}\"); write one with "
                          "`segbench summary RESULTS_DIR --out FILE`.")
    if document.get("version") not in READABLE_SUMMARY_VERSIONS:
        raise ConfigError(f"{path} has summary version {document.get('version')}, this segbench reads versions "
                          f"{', '.join(map(str, READABLE_SUMMARY_VERSIONS))}; regenerate it with `segbench summary` "
                          "(or `make baseline`).")
    try:
        return Summary.model_validate(upgrade(document))
    except ValidationError as exc:
        from segbench.grid.load import describe_validation_error  # loads the loss registry and torch: only here

        problem = describe_validation_error(str(path), exc).removesuffix(".")
        raise ConfigError(f"{problem}; regenerate it with `segbench summary` (or `make baseline`).") from None


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A summary document of any readable version in the current shape: a version 1 summary's rows get no
    fingerprint, spread or workload, nor any summary field added since (None, in ROW_FIELDS order), the summary an
    empty `machines` and `upgraded_from: 1`. A current-version summary is read as written (a field added since it
    was written is missing, hence not gated)."""
    if document["version"] == SUMMARY_VERSION:
        return document
    cells = {slug: {**dict.fromkeys(ROW_FIELDS), **row} if isinstance(row, dict) else row
             for slug, row in (document.get("cells") or {}).items()}
    return {**document, "machines": document.get("machines") or {}, "cells": cells,
            "upgraded_from": document["version"]}


def write_summary(summary: Summary, out: Path) -> Path:
    """Write `summary` to `out` atomically (exactly the fields it was built with); returns `out`."""
    atomic_write_json(Path(out), summary.to_json())
    return Path(out)
