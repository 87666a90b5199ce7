"""TensorBoard logs of a sweep, written on the driver side from the workers' events and the finished records.

The training loop knows nothing about TensorBoard: the runner hands every worker event (segbench.execution.events)
and every finished record to a `TensorBoardLog`, which writes one run folder per cell, `<log_dir>/<cell id>/`, so
TensorBoard lists the cells side by side. What it writes (global step = optimiser steps done, the `iteration` of a
`step` event and the `iterations` of an `epoch` event, so every curve shares one x axis):

    train/loss              every step
    train/epoch_loss        mean training loss of each epoch
    train/lr                learning rate at the end of each epoch
    time/epoch_s            seconds per epoch
    val/miou, val/pixel_accuracy   at each evaluation
    val_iou/<class>         per-class IoU at each evaluation (when the event carries `val_per_class_iou`; class
                            names from `cell_started`, else class_<index>); classes with no defined IoU are skipped
    examples/<rank>-<id>    image | ground truth | prediction, from the record's example PNGs (`on_record`)
    status                  text: the record's status and error, if any

Logging settings are not part of any cell's configuration, so they never change a cell's hash. The runner calls
`cell_started(cell_id, classes)` before a cell's first event (the class names come from the dataset's DatasetInfo),
`on_event` for each event, `on_record` when the record is written, and `close()` at the end of the sweep.
Methods may be called from several threads (one per running cell).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segbench.errors import ConfigError

if TYPE_CHECKING:
    from segbench.records.schema import Record

INSTALL_HINT = "pip install 'segbench[tensorboard]'"
FLUSH_SECONDS = 10  # events reach the files at least this often, so curves move while a cell trains
PANEL_GAP = 2  # px of white between the three pictures of an example


class TensorBoardLog:
    """Per-cell TensorBoard event files under `log_dir` (see the module docstring for the tags)."""

    def __init__(self, log_dir: Path, max_examples: int = 4) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(f"--tensorboard needs the tensorboard package, which is not installed; "
                              f"{INSTALL_HINT}.") from None
        self._summary_writer = SummaryWriter
        self.log_dir = Path(log_dir)
        self.max_examples = max_examples
        self._writers: dict[str, Any] = {}
        self._classes: dict[str, list[str]] = {}
        self._steps: dict[str, int] = {}  # the last global step seen per cell (examples are logged at it)
        self._lock = threading.Lock()

    def cell_started(self, cell_id: str, classes: Sequence[str]) -> None:
        """Name the classes of `cell_id`'s per-class IoU tags."""
        with self._lock:
            self._classes[cell_id] = list(classes)

    def _writer(self, cell_id: str):
        with self._lock:
            if cell_id not in self._writers:
                self._writers[cell_id] = self._summary_writer(str(self.log_dir / cell_id), flush_secs=FLUSH_SECONDS)
            return self._writers[cell_id]

    def on_event(self, cell_id: str, event: dict[str, Any]) -> None:
        """Log one worker event of `cell_id`; kinds other than step, epoch and done are ignored."""
        kind = event.get("event")
        if kind == "step":
            step = int(event["iteration"])
            self._steps[cell_id] = step
            _scalar(self._writer(cell_id), "train/loss", event.get("loss"), step)
        elif kind == "epoch":
            self._log_epoch(cell_id, event)
        elif kind == "done" and cell_id in self._writers:
            self._writers[cell_id].flush()

    def _log_epoch(self, cell_id: str, event: dict[str, Any]) -> None:
        writer = self._writer(cell_id)
        step = int(event["iterations"])
        self._steps[cell_id] = step
        for tag, key in (("train/epoch_loss", "train_loss"), ("train/lr", "lr"), ("time/epoch_s", "epoch_time_s"),
                         ("val/miou", "val_miou"), ("val/pixel_accuracy", "val_pixel_accuracy")):
            _scalar(writer, tag, event.get(key), step)
        names = self._classes.get(cell_id, [])
        for index, iou in enumerate(event.get("val_per_class_iou") or []):
            name = names[index] if index < len(names) else f"class_{index}"
            _scalar(writer, f"val_iou/{name.replace(' ', '_')}", iou, step)
        writer.flush()  # an epoch is rare and worth seeing at once

    def on_record(self, cell_id: str, record: Record, cell_dir: Path) -> None:
        """Log the finished cell's status and up to `max_examples` example predictions as images."""
        from PIL import Image

        from segbench.colours import colourise

        writer = self._writer(cell_id)
        error = record.error
        status = record.status + (f" ({error.kind}: {error.message})" if error else "")
        step = self._steps.get(cell_id, (record.timing.iterations if record.timing else None) or 0)
        writer.add_text("status", status, step)
        dataset = record.dataset
        examples = (record.examples or [])[: self.max_examples] if dataset else []
        for example in examples:
            paths = [Path(cell_dir) / name for name in (example.image, example.label, example.pred)]
            if not all(path.is_file() for path in paths):
                continue
            image, label, pred = (np.asarray(Image.open(path)) for path in paths)
            pictures = [image] + [colourise(values, dataset.palette, dataset.ignore_index) for values in (label, pred)]
            gap = np.full((image.shape[0], PANEL_GAP, 3), 255, dtype=np.uint8)
            panel = np.concatenate([pictures[0], gap, pictures[1], gap, pictures[2]], axis=1)
            writer.add_image(f"examples/{example.rank}-{example.sample_id}", panel, step, dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        """Flush and close every cell's event file."""
        with self._lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()


def _scalar(writer: Any, tag: str, value: Any, step: int) -> None:
    """Add a scalar unless the value is missing or undefined (a class absent from the split has no IoU)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return
    writer.add_scalar(tag, float(value), step)


class TensorBoardView:
    """A progress view that also logs to TensorBoard: it forwards everything to the display view it wraps and hands
    each cell's start, events and finished record to a TensorBoardLog (`segbench run --tensorboard DIR`)."""

    def __init__(self, display: Any, log: TensorBoardLog, results: Path) -> None:
        self.display, self.log, self.results = display, log, Path(results)

    def begin(self, total: int) -> None:
        self.display.begin(total)

    def started(self, cell: Any) -> None:
        from segbench.atomic import atomic_write_json
        from segbench.datasets import dataset_info, parse_dataset_params
        from segbench.records.paths import TENSORBOARD_FILE, cell_dir

        self.display.started(cell)
        info = dataset_info(cell.dataset.name, parse_dataset_params(cell.dataset.name, cell.dataset.params))
        self.log.cell_started(cell.id, list(info.classes))
        # Tell the cell's folder where its curves are (segbench show and report print it).
        folder = cell_dir(self.results, cell.id)
        folder.mkdir(parents=True, exist_ok=True)
        log_dir = self.log.log_dir.resolve()
        atomic_write_json(folder / TENSORBOARD_FILE, {"log_dir": str(log_dir), "run": str(log_dir / cell.id)})

    def event(self, cell: Any, event: dict[str, Any]) -> None:
        self.display.event(cell, event)
        self.log.on_event(cell.id, event)

    def tick(self) -> None:
        self.display.tick()

    def note(self, text: str) -> None:
        self.display.note(text)

    def finished(self, cell: Any, record: Record) -> None:
        from segbench.records.paths import cell_dir

        self.display.finished(cell, record)
        self.log.on_record(cell.id, record, cell_dir(self.results, cell.id))

    def end(self) -> None:
        self.display.end()
        self.log.close()
