"""`segbench report RESULTS_DIR [--html]`: a Markdown report (and an HTML page) with figures and CSV tables, derived
from records alone."""

from __future__ import annotations

from pathlib import Path

import typer

from segbench.cli.common import err_console, user_errors


@user_errors
def report(
    results: Path = typer.Argument(..., help="Results folder of a `segbench run` (holds cells/)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: RESULTS/report)."),
    baseline: list[str] = typer.Option(
        [], "--baseline",
        help="AXIS=VALUE: the level of an axis (model, encoder, loss) every other level is compared with, e.g. "
             "loss=ce. Default: the axis's first value in the grid file saved in RESULTS/grids/. Repeatable.",
    ),
    margin: float = typer.Option(
        0.01, "--margin",
        help="Practical margin of a verdict in the metric's raw unit (0.01 = one mIoU point): 'better'/'worse' need "
             "a difference at least this large, 'within margin' an interval inside +-margin.",
    ),
    top: int = typer.Option(3, "--top", help="Top configurations per dataset (by mean mIoU) compared pairwise."),
    alpha: float = typer.Option(
        0.05, "--alpha",
        help="Significance level of the verdicts: 'better'/'worse' need a Holm-adjusted p below it; intervals are "
             "(1 - alpha) intervals (0.05: 95 %).",
    ),
    html: bool = typer.Option(
        False, "--html",
        help="Also write report.html beside report.md: the same sections as one self-contained page (sortable, "
             "filterable tables, an accuracy-vs-cost chart with a choice of x axis), which opens from disk offline.",
    ),
) -> None:
    """Write report.md, figures/ and CSV tables (comparisons.csv among them) for RESULTS, with --html also
    report.html; nothing is trained or measured again, and no option changes a record or a cell's hash."""
    from segbench.analysis.effects import parse_baselines
    from segbench.analysis.effects_section import ComparisonOptions
    from segbench.analysis.report import write_report

    options = ComparisonOptions(parse_baselines(baseline), margin, top, alpha)
    path = write_report(results, out, options, html=html)
    err_console.print(f"report written to {path}" + (f" and {path.with_suffix('.html')}" if html else ""))
