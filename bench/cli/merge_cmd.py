"""`segbench merge A B [C...] --out DIR`: one results folder from several (one per machine or cluster)."""

from __future__ import annotations

from collections import Counter
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from segbench.cli.common import user_errors
from segbench.records.paths import CELLS_DIR

if TYPE_CHECKING:
    from segbench.records.merge import Choice, MergePlan, Placed


class Prefer(str, Enum):
    newest = "newest"
    first = "first"


@user_errors
def merge(
    inputs: list[Path] = typer.Argument(
        ..., metavar="RESULTS...", help="Results folders of `segbench run` (each holds cells/), in order."),
    out: Path = typer.Option(..., "--out", "-o", help="The merged results folder: new, or an empty folder."),
    prefer: Prefer | None = typer.Option(
        None, "--prefer",
        help="Which of two ok records of one cell with different metrics to keep: newest (the later finished_at) or "
             "first (input order). Without it such a cell is a conflict: exit 1, nothing written.",
    ),
) -> None:
    """Merge results folders cell by cell into a new folder; the inputs are never changed. Cells are keyed by cell id
    (slug and config hash): an ok record beats a failed or interrupted one, equal results keep the first, and
    differing ok records are conflicts (exit 1) unless --prefer decides. Files are hard-linked where the filesystem
    allows, else copied; the folder appears whole or not at all."""
    from segbench.records.merge import plan_merge, write_merge

    plan = plan_merge(inputs, out, prefer.value if prefer else None)
    if plan.conflicts:
        for choice in plan.conflicts:
            typer.echo(f"conflict: {choice.label}: {rivals(choice)}", err=True)
        typer.echo(f"error: {len(plan.conflicts)} cell(s) have ok records with different metrics in several inputs; "
                   "nothing was written: keep one with --prefer newest (the later finished_at) or --prefer first "
                   "(input order).", err=True)
        raise typer.Exit(1)
    placed = write_merge(plan, out)
    print_summary(plan, placed, out)


def print_summary(plan: MergePlan, placed: Placed, out: Path) -> None:
    """Cells per input, merged cells by why each was kept, the conflicts settled and what was left out."""
    from segbench.records.merge import SECTIONS

    for results, counts in plan.counts.items():
        typer.echo(f"{results}: {described(counts)}")
    merged = {section: sum(choice.section == section for choice in plan.cells) for section in SECTIONS}
    typer.echo(f"merged into {out}: {described(merged)} ({placed.linked} files hard-linked, {placed.copied} copied)")
    for reason, count in sorted(Counter(choice.reason for choice in plan.cells).items()):
        typer.echo(f"  {count} {reason}")
    for choice in plan.cells:
        if choice.rivals:
            typer.echo(f"  {choice.label}: {rivals(choice)}: kept {choice.kept.results}")
    if len(plan.studies) > 1:
        typer.echo(f"note: {plan.studies[0]} kept; Optuna studies cannot be merged, so the other inputs' "
                   f"({', '.join(str(path) for path in plan.studies[1:])}) are not: their trials' records are merged, "
                   "a later `segbench run` into the merged folder continues the first input's studies.")
    if plan.left_out:
        typer.echo(f"note: not merged: {', '.join(str(path) for path in plan.left_out)} (only cells with a record, "
                   "saved grids and tuning studies are; regenerate reports and summaries from the merged folder).")


def rivals(choice: Choice) -> str:
    """`A mIoU 0.5000 (finished ...) vs B mIoU 0.6000 (finished ...)` of a cell's differing ok records."""
    return " vs ".join(f"{candidate.results} mIoU {_miou(candidate.miou)} (finished {candidate.finished or '?'})"
                       for candidate in choice.rivals)


def _miou(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def described(counts: dict[str, int]) -> str:
    """{"cells": 3, "tuning/cells": 0} -> "3 cells" (tuning trials named only when there are some)."""
    parts = [f"{count} {'cells' if section == CELLS_DIR else 'tuning trials'}" for section, count in counts.items()
             if count or section == CELLS_DIR]
    return ", ".join(parts)
