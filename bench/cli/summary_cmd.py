"""`segbench summary RESULTS_DIR --out FILE`: one compact row per cell, the input of baselines and gates."""

from __future__ import annotations

from pathlib import Path

import typer

from segbench.cli.common import err_console, user_errors


@user_errors
def summary(
    results: Path = typer.Argument(..., help="Results folder of a `segbench run` (holds cells/)."),
    out: Path = typer.Option(Path("summary.json"), "--out", "-o", help="Summary JSON file to write."),
    stable_latency: float = typer.Option(
        None, "--stable-latency", metavar="PCT", min=0,
        help="Write nothing (exit 2) unless each cell's two latency timing rounds, and cells timing an identical "
             "inference workload, agree within PCT %: what `make baseline` asks (10).",
    ),
) -> None:
    """Write a summary of RESULTS: per cell slug its config hash, status, metrics, params, GMACs, latency ratio, and
    the machine fingerprint and timing-round spread of its latency."""
    from segbench.analysis.latency_gate import check_stable
    from segbench.analysis.summary import summarize_folder
    from segbench.records.summaries import write_summary

    summarised = summarize_folder(results)
    if stable_latency is not None:
        check_stable(summarised, stable_latency)
    write_summary(summarised, out)
    err_console.print(f"{len(summarised.cells)} cells ({summarised.ok_count()} ok) summarised in {out}")
