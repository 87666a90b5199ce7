"""The terminal leaderboard: one row per cell, derived from records alone."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

COLUMNS = {
    "cell": "cell",
    "status": "status",
    "miou": "mIoU",
    "pixel_accuracy": "pixel acc",
    "micro_iou": "micro IoU",
    "params_m": "params (M)",
    "train_time_s": "train time (s)",
}


def leaderboard_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, sorted by mIoU (failed cells last)."""
    rows = []
    for record in records:
        metrics = record.get("metrics") or {}
        params = ((record.get("cost") or {}).get("params") or {}).get("total")
        rows.append(
            {
                "cell": record["slug"],
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


def _format(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_leaderboard(console: Console, records: list[dict[str, Any]], title: str = "leaderboard") -> None:
    frame = leaderboard_frame(records)
    table = Table(title=title)
    for key, header in COLUMNS.items():
        table.add_column(header, justify="left" if key in ("cell", "status") else "right", no_wrap=key == "cell")
    digits = {"miou": 4, "pixel_accuracy": 4, "micro_iou": 4, "params_m": 2, "train_time_s": 1}
    for row in frame.itertuples(index=False):
        style = None if row.status == "ok" else "red"
        table.add_row(*(_format(getattr(row, key), digits.get(key, 0)) for key in COLUMNS), style=style)
    console.print(table)
    failed = [r for r in records if r["status"] != "ok"]
    for record in failed:
        error = record.get("error") or {}
        console.print(f"[red]{record['slug']}[/]: {record['status']} ({error.get('kind')}): {error.get('message')}")
