"""`segbench schema record|summary`: the JSON Schema of `record.json` or `summary.json`, for other tools."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from segbench.cli.common import err_console, user_errors
from segbench.errors import ConfigError

DOCUMENTS = ("record", "summary")


@user_errors
def schema(
    document: str = typer.Argument(..., metavar="record|summary", help="record: a cell's record.json; summary: a "
                                   "summary.json of `segbench summary`."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the schema to this file instead of standard output."),
) -> None:
    """Print the JSON Schema (draft 2020-12, from the typed models in segbench.records.schema) of a record or a
    summary. Fields a newer segbench adds are allowed by it (every object accepts additional properties)."""
    from segbench.records.schema import json_schema

    if document not in DOCUMENTS:
        raise ConfigError(f"segbench schema takes record or summary, not '{document}'.")
    text = json.dumps(json_schema(document), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    from segbench.atomic import atomic_write_text

    atomic_write_text(out, text)
    err_console.print(f"JSON Schema of {document}.json written to {out}")
