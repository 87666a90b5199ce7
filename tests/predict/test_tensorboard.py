"""TensorBoardLog: a scripted event sequence and a finished record (written, not trained: tests/predict/conftest.py),
read back from the event files."""

from __future__ import annotations

import math
import sys

import pytest

from segbench.errors import ConfigError
from segbench.execution.tensorboard import PANEL_GAP, TensorBoardLog
from segbench.records.paths import cell_dir, tensorboard_run
from segbench.records.schema import as_record

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

EPOCHS, STEPS_PER_EPOCH = 3, 4
CLASSES = ["road", "traffic light", "sky"]


def scripted_events() -> list[dict]:
    """What a worker emits for a 3-epoch cell: start, steps, epochs (the sky class absent at epoch 1), done."""
    events = [{"event": "start", "epochs": EPOCHS, "iterations": EPOCHS * STEPS_PER_EPOCH, "resumed_from_epoch": 0}]
    for epoch in range(1, EPOCHS + 1):
        for step in range(STEPS_PER_EPOCH):
            iteration = (epoch - 1) * STEPS_PER_EPOCH + step + 1
            events.append({"event": "step", "epoch": epoch, "iteration": iteration, "loss": 3.0 / iteration})
        events.append({
            "event": "epoch", "epoch": epoch, "iterations": epoch * STEPS_PER_EPOCH, "train_loss": 2.0 / epoch,
            "lr": 0.001 * (1 - epoch / (EPOCHS + 1)), "epoch_time_s": 1.5, "val_miou": 0.1 * epoch,
            "val_pixel_accuracy": 0.5 + 0.1 * epoch,
            "val_per_class_iou": [0.2 * epoch, 0.05 * epoch, math.nan if epoch == 1 else 0.3],
        })
    events.append({"event": "progress-of-a-future-kind"})  # unknown kinds are ignored
    events.append({"event": "done", "status": "ok"})
    return events


def test_scalars_for_every_epoch_and_example_images(written_cell, tmp_path):
    log = TensorBoardLog(tmp_path / "tb")
    cell_id = written_cell.record["cell_id"]
    log.cell_started(cell_id, CLASSES)
    for event in scripted_events():
        log.on_event(cell_id, event)
    log.on_record(cell_id, as_record(written_cell.record), written_cell.cell_dir)  # typed, as the runner passes it
    log.on_event("other-cell", {"event": "step", "epoch": 1, "iteration": 1, "loss": 1.0})  # no class names given
    log.close()

    events = EventAccumulator(str(tmp_path / "tb" / cell_id), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    ends = [epoch * STEPS_PER_EPOCH for epoch in range(1, EPOCHS + 1)]

    def series(tag: str) -> list[tuple[int, float]]:
        return [(point.step, point.value) for point in events.Scalars(tag)]

    assert [step for step, _ in series("train/loss")] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    for tag in ("train/epoch_loss", "train/lr", "time/epoch_s", "val/miou", "val/pixel_accuracy",
                "val_iou/road", "val_iou/traffic_light"):
        assert [step for step, _ in series(tag)] == ends, tag
    assert [value for _, value in series("val/miou")] == pytest.approx([0.1, 0.2, 0.3])
    assert [value for _, value in series("val_iou/traffic_light")] == pytest.approx([0.05, 0.1, 0.15])
    assert [step for step, _ in series("val_iou/sky")] == ends[1:]  # undefined IoU (NaN) is not logged

    images = events.Tags()["images"]
    examples = written_cell.record["examples"]
    assert sorted(images) == sorted(f"examples/{e['rank']}-{e['sample_id']}" for e in examples)
    picture = events.Images(images[0])[0]
    assert picture.step == ends[-1]
    params = written_cell.record["config"]["dataset"]["params"]
    # image | ground truth | prediction side by side
    assert (picture.width, picture.height) == (3 * params["width"] + 2 * PANEL_GAP, params["height"])
    assert (tmp_path / "tb" / "other-cell").is_dir()


def test_without_tensorboard_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'segbench\[tensorboard\]'"):
        TensorBoardLog(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


class _Display:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append(name)


def test_the_run_view_feeds_the_display_and_the_log(tmp_path):
    from segbench.execution.tensorboard import TensorBoardView
    from segbench.grid.cells import expand
    from segbench.grid.load import parse_grid
    from segbench.records.store import new_record

    cell = expand(parse_grid({
        "datasets": [{"name": "synthetic", "params": {"n_train": 8, "n_val": 4, "height": 64, "width": 128}}],
        "models": ["unet"], "encoders": ["resnet18"], "losses": ["ce"], "train": {"epochs": 1, "crop": [64, 128]},
    })).cells[0]
    display = _Display()
    view = TensorBoardView(display, TensorBoardLog(tmp_path / "tb"), tmp_path / "results")
    view.begin(1)
    view.started(cell)
    for event in scripted_events():
        view.event(cell, event)
    view.finished(cell, new_record(cell, "ok", examples=[]))
    view.end()
    assert display.calls[:2] == ["begin", "started"] and display.calls[-2:] == ["finished", "end"]
    accumulator = EventAccumulator(str(tmp_path / "tb" / cell.id))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "val/miou" in tags and "val_iou/road" in tags  # class names from the cell's dataset
    assert len(accumulator.Scalars("val/miou")) == EPOCHS
    # The cell's folder says where its run is, for `segbench show` and `segbench report`.
    logged = tensorboard_run(cell_dir(tmp_path / "results", cell.id))
    log_dir = (tmp_path / "tb").resolve()
    assert logged == {"log_dir": str(log_dir), "run": str(log_dir / cell.id)}
