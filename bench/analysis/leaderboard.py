"""The terminal leaderboard: one row per cell, derived from records alone.

Cells are shown by their axes (model, encoder, loss, dataset, seed) rather than by their long id, so that the table
stays readable in an 80-column terminal; the ids are in the records and in `segbench report`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from segbench.metrics.catalogue import METRICS
from segbench.records.rows import rows_frame
from segbench.records.schema import Record, as_record

AXES = ("model", "encoder", "loss", "dataset", "seed", "budget", "status")
VARYING_ONLY = ("dataset", "seed", "budget")  # shown only when they differ between rows
SHOWN_METRICS = ("miou", "pixel_accuracy", "micro_iou", "params", "train_time_s")
HEADERS = {"dataset": "data"}  # the other axes are headed by their name


def _header(key: str) -> str:
    return METRICS[key].short if key in METRICS else HEADERS.get(key, key)


def _cell_text(value: Any, key: str) -> str:
    if pd.isna(value):
        return "-"
    if key in METRICS:
        return METRICS[key].fmt(value)
    return str(int(value)) if key == "seed" else str(value)


def print_leaderboard(console: Console, records: Iterable[Record], title: str = "leaderboard") -> None:
    """One line per cell, best mIoU first (cells without mIoU last, in red), then one line per failure."""
    records = [as_record(record) for record in records]
    frame = rows_frame(records, ranked=True)
    # Columns that are the same in every row (one dataset, one seed, one training length) say nothing: leave them
    # out. A compute budget implies different iterations per architecture, so its cells show theirs.
    shown = [key for key in (*AXES, *SHOWN_METRICS)
             if key not in VARYING_ONLY or frame[key].nunique(dropna=False) > 1]
    percent = [METRICS[key].short for key in shown if key in METRICS and METRICS[key].unit == "fraction"]
    table = Table(title=title, caption=f"{', '.join(percent)} in %" if percent else None, box=box.SIMPLE_HEAD,
                  padding=(0, 1), pad_edge=False, collapse_padding=True)
    for key in shown:
        table.add_column(_header(key), justify="right" if key in METRICS else "left", no_wrap=True)
    for _, row in frame.iterrows():
        style = None if row["status"] == "ok" else "red"
        table.add_row(*(_cell_text(row[key], key) for key in shown), style=style)
    console.print(table)
    for record in records:
        if not record.ok:
            message = record.error.message if record.error else None
            console.print(f"[red]{record.slug}[/]: {record.status} ({record.error_kind}): {message}")
