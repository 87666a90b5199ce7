"""`segbench report RESULTS_DIR`: a Markdown report with figures and CSV tables, derived from records alone."""

from __future__ import annotations

from pathlib import Path

import typer

from segbench.cli.common import err_console, user_errors


@user_errors
def report(
    results: Path = typer.Argument(..., help="Results folder of a `segbench run` (holds cells/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: RESULTS/report)."),
) -> None:
    """Write report.md, figures/ and CSV tables for RESULTS; nothing is trained or measured again."""
    from segbench.analysis.report import write_report

    path = write_report(results, out)
    err_console.print(f"report written to {path}")
