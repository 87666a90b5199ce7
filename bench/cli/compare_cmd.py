"""`segbench compare BASE CURRENT`: per-cell differences between two runs, and regression gates."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from segbench.cli.common import err_console, user_errors


@user_errors
def compare(
    base: Path = typer.Argument(..., help="Baseline: a results folder or a summary JSON file."),
    current: Path = typer.Argument(..., help="Current run: a results folder or a summary JSON file."),
    fail_on: list[str] = typer.Option(
        [], "--fail-on",
        help="FIELD:[+-]AMOUNT[%], the sign being the direction of a regression: miou:-0.02 fails on a drop of more "
             "than 0.02, gmacs:+0% on any rise, latency_ratio:+25% on a rise of more than 25 %. Repeatable.",
    ),
    fail_on_missing: bool = typer.Option(False, "--fail-on-missing", help="Fail when a base cell is missing."),
    allow_not_comparable: bool = typer.Option(
        False, "--allow-not-comparable",
        help="Pass even when base cells have only counterparts with other config hashes (nothing compared for them).",
    ),
) -> None:
    """Print per-cell differences; exit 1 when a check fails or a base cell has no comparable counterpart (2 on bad
    input). Cells whose config hashes differ are "not comparable": they never fail a check, but the gate fails
    unless --allow-not-comparable. Compare latency through latency_ratio, never absolute times; clock-timed fields are
    gated only between equal machine fingerprints (one line says whether they were, and why not). Configurations with
    two or more seeds on both sides are checked on their seed means and fail only when a one-sided t-test (paired by
    seed, or Welch) also finds the move beyond noise, p < 0.05 (docs/report.md)."""
    from segbench.analysis.gate import compare_summaries, format_value, parse_check
    from segbench.analysis.summary import load_summary

    checks = [parse_check(spec) for spec in fail_on]
    outcome = compare_summaries(load_summary(base), load_summary(current), checks, fail_on_missing,
                                allow_not_comparable)
    console = Console(width=160)
    table = Table(title=f"{base} -> {current}")
    for column in ("cell", "field", "base", "current", "change", "check", "verdict"):
        table.add_column(column, justify="right" if column in ("base", "current", "change") else "left")
    for row in outcome.rows:
        style = {"FAIL": "red", "noise": "yellow"}.get(row["verdict"])
        table.add_row(row["cell"], row["field"], format_value(row["base"]), format_value(row["current"]),
                      row["change"], row["check"], row["verdict"], style=style)
    console.print(table)
    for item in outcome.not_comparable:
        if item["base_hash"] != item["current_hash"]:
            what = f"config hash {item['base_hash']} -> {item['current_hash']}: trained under different settings"
        else:
            what = (f"evaluation settings {item.get('base_evaluation') or 'default'} -> "
                    f"{item.get('current_evaluation') or 'default'}: evaluated differently (eval.mode, tta, datasets "
                    "or corruptions)")
        console.print(f"not comparable: {item['cell']} ({what}; regenerate the baseline to compare it)")
    for slug in outcome.missing_in_current:
        console.print(f"missing in current: {slug}")
    for slug in outcome.missing_in_base:
        console.print(f"missing in base: {slug}")
    if outcome.compared == 0:
        err_console.print("warning: no cell could be compared (none is present on both sides with the same config "
                          "hash); run `make baseline` if the grid or segbench's semantics changed on purpose.")
    err_console.print(outcome.latency.sentence(), highlight=False, soft_wrap=True)
    for failure in outcome.failures:
        typer.echo(f"REGRESSION {failure.message}", err=True)
    if outcome.not_comparable_failure:
        typer.echo(f"NOT COMPARABLE {outcome.not_comparable_failure}", err=True)
    if outcome.seed_gated:
        err_console.print(f"{len(outcome.seed_gated)} configurations with two or more seeds gated on their seed means: "
                          "a check fails only beyond its threshold and when a one-sided t-test in the regression "
                          "direction (paired by seed when both sides ran the same seeds, else Welch) gives p < 0.05 "
                          "(verdict 'noise': beyond the threshold, p >= 0.05).", highlight=False)
    summary = f"{outcome.compared} cells compared, {len(outcome.failures)} checks failed"
    err_console.print(summary if not outcome.exit_code else f"[red]{summary}[/]")
    raise typer.Exit(outcome.exit_code)
