"""The terminal leaderboard: one row per cell, derived from records alone.

Cells are shown by their axes (model, encoder, loss, dataset, seed) rather than by their long id, so that the table
stays readable in an 80-column terminal; the ids are in the records and in `segbench report`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

# column -> (header, decimals; None for text)
COLUMNS: dict[str, tuple[str, int | None]] = {
    "model": ("model", None),
    "encoder": ("encoder", None),
    "loss": ("loss", None),
    "dataset": ("data", None),
    "seed": ("seed", None),
    "status": ("status", None),
    "miou": ("mIoU", 3),
    "pixel_accuracy": ("pix.acc", 3),
    "micro_iou": ("microIoU", 3),
    "params_m": ("Mparams", 1),
    "train_time_s": ("train s", 0),
}


def leaderboard_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, sorted by mIoU (failed cells last)."""
    rows = []
    for record in records:
        config = record.get("config") or {}
        metrics = record.get("metrics") or {}
        params = ((record.get("cost") or {}).get("params") or {}).get("total")
        loss = config.get("loss") or {}
        dataset = config.get("dataset") or {}
        rows.append(
            {
                "model": config.get("model"),
                "encoder": config.get("encoder"),
                "loss": loss.get("id") or loss.get("name"),
                "dataset": dataset.get("id") or dataset.get("name"),
                "seed": config.get("seed"),
                "status": record["status"],
                "miou": metrics.get("miou"),
                "pixel_accuracy": metrics.get("pixel_accuracy"),
                "micro_iou": metrics.get("micro_iou"),
                "params_m": params / 1e6 if params else None,
                "train_time_s": (record.get("timing") or {}).get("train_time_s"),
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values("miou", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _format(value: Any, digits: int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return str(value)


def print_leaderboard(console: Console, records: list[dict[str, Any]], title: str = "leaderboard") -> None:
    frame = leaderboard_frame(records)
    # Columns that are the same in every row (one dataset, one seed) say nothing: leave them out.
    shown = [key for key in COLUMNS if key not in ("dataset", "seed") or frame[key].nunique(dropna=False) > 1]
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True)
    for key in shown:
        header, digits = COLUMNS[key]
        table.add_column(header, justify="left" if digits is None else "right", no_wrap=True)
    for row in frame.itertuples(index=False):
        style = None if row.status == "ok" else "red"
        table.add_row(*(_format(getattr(row, key), COLUMNS[key][1]) for key in shown), style=style)
    console.print(table)
    for record in records:
        if record["status"] != "ok":
            error = record.get("error") or {}
            console.print(f"[red]{record['slug']}[/]: {record['status']} ({error.get('kind')}): {error.get('message')}")
