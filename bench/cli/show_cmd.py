"""`segbench show CELL_DIR`: one cell in the terminal, from its record alone.

Configuration, status or error, metrics, cost, per-class IoU as text bars, and where the cell's files are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from segbench.cli.common import user_errors

if TYPE_CHECKING:  # the schema is imported when a cell is shown, not whenever a command starts
    from segbench.records.schema import CellConfig, Record

BAR_WIDTH = 30  # characters for an IoU of 1.0
EIGHTHS = " ▏▎▍▌▋▊▉"  # partial blocks, so a bar's length resolves 1/8 of a character


@user_errors
def show(cell_dir: Path = typer.Argument(..., help="A cell folder of a results folder (<results>/cells/<cell id>).")
         ) -> None:
    """Show one cell: configuration, status or error, metrics, cost, per-class IoU and its files."""
    from segbench.records.cells import read_cell_record

    record = read_cell_record(cell_dir)
    console = Console()
    colour = "green" if record.ok else "red"
    console.print(f"[bold]{record.cell_id}[/bold]")
    console.print(f"status [{colour}]{record.status}[/{colour}], device {record.device or 'n/a'}, "
                  f"written {record.written_at}", highlight=False)
    if record.error:
        console.print(f"[red]error[/red] {escape(record.error.kind)}: {escape(record.error.message)}",
                      highlight=False)
    console.print(_configuration(record.config))
    if record.metrics:
        console.print(_numbers(record, quality=True, title="metrics (val split)"))
        interval = (record.intervals or {}).get("miou")
        if interval:
            console.print(f"mIoU {100 * interval.low:.2f}-{100 * interval.high:.2f} % "
                          f"({100 * interval.confidence:.0f}% interval, {interval.method}, "
                          f"{interval.resamples} resamples)", highlight=False)
        console.print(_training(record), highlight=False)
        console.print(_cost(record))
        console.print(_per_class_iou(record))
    console.print(_files(Path(cell_dir), record))


def _configuration(config: CellConfig) -> Table:
    """One row per part of the resolved configuration, as stored; nested options as key=value."""
    table = Table("", "", title="configuration", title_justify="left", show_header=False, box=None, padding=(0, 1))
    for key, value in config.to_json().items():
        if isinstance(value, dict):
            value = " ".join(f"{k}={_flat(v)}" for k, v in value.items())
        table.add_row(f"[bold]{key}[/bold]", _flat(value))
    return table


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return str(value)


def _numbers(record: Record, quality: bool, title: str) -> Table:
    """The catalogue's metrics (or its cost and timing fields) that the record has, formatted as reports show them."""
    from segbench.metrics.catalogue import CATALOGUE
    from segbench.records.rows import record_row

    row = record_row(record)
    table = Table("", "", title=title, title_justify="left", show_header=False, box=None, padding=(0, 1))
    shown_as: set[str] = set()
    for metric in CATALOGUE:
        # The non-summary matrix metrics repeat others for single-label predictions (see the catalogue), and two
        # entries with one short header are one number in two units (macs, gmacs): the first is shown.
        shown = (metric.summary or not metric.from_matrix) and metric.short not in shown_as
        if metric.is_quality == quality and shown and row.get(metric.key) is not None:
            table.add_row(metric.label, metric.fmt(row[metric.key]))
            shown_as.add(metric.short)
    if not table.rows:
        table.add_row("not measured", "")
    return table


def _cost(record: Record) -> Table:
    return _numbers(record, quality=False, title="cost")


def _training(record: Record) -> str:
    from segbench.records.rows import selection_text

    history = record.history or []
    if not history:
        return "training: no history recorded"
    last = history[-1]
    loss = last.train_loss if last.train_loss is not None else float("nan")
    return (f"training: {len(history)} epochs, {last.iterations} iterations, final train loss {loss:.4f}; "
            f"reported weights: {selection_text(record)}")


def iou_bar(value: float | None, width: int = BAR_WIDTH) -> str:
    """A text bar of `value` in [0, 1] as `width` characters at 1.0 (eighths of a character resolved)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    eighths = round(max(0.0, min(1.0, value)) * width * 8)
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def _per_class_iou(record: Record) -> Table:
    classes = record.dataset.classes if record.dataset else []
    per_class = record.metrics.per_class if record.metrics else None
    ious = per_class.iou if per_class else []
    table = Table("class", "IoU", "", title="per-class IoU (val split)", title_justify="left", box=None,
                  padding=(0, 1))
    for index, iou in enumerate(ious):
        name = classes[index] if index < len(classes) else str(index)
        undefined = iou is None or (isinstance(iou, float) and math.isnan(iou))
        table.add_row(name, "n/a" if undefined else f"{iou:.3f}",
                      "absent from ground truth and prediction" if undefined else iou_bar(iou))
    return table


def _files(cell_dir: Path, record: Record) -> Table:
    from segbench.records.cells import checkpoint_path
    from segbench.records.paths import (
        EXAMPLES_DIR,
        RECORD_FILE,
        TASK_FILE,
        TRAIN_STATE_FILE,
        WORKER_LOG_FILE,
        tensorboard_run,
    )

    table = Table("", "", "", title="files", title_justify="left", show_header=False, box=None, padding=(0, 1))
    examples = cell_dir / EXAMPLES_DIR
    entries = [("record", cell_dir / RECORD_FILE), ("checkpoint", checkpoint_path(cell_dir, record)),
               ("training state", cell_dir / TRAIN_STATE_FILE), ("worker log", cell_dir / WORKER_LOG_FILE),
               ("task", cell_dir / TASK_FILE), ("examples", examples)]
    for what, path in entries:
        if path.is_dir():
            table.add_row(what, str(path), f"{sum(1 for _ in path.glob('*.png'))} PNGs")
        elif path.is_file():
            table.add_row(what, str(path), _size(path.stat().st_size))
        elif what == "checkpoint":
            table.add_row(what, str(path), "[red]missing[/red]")
    logged = tensorboard_run(cell_dir)
    if logged:
        table.add_row("TensorBoard", logged["run"], f"tensorboard --logdir {logged['log_dir']}")
    return table


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
