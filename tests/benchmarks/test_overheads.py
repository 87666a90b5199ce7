"""segbench's own overheads, each as a ratio to a plain alternative timed in the same run (`make bench`):

- harness: median step time of `train_and_evaluate` against a bare PyTorch loop on the same model, data and batch
  (target: at most 5 % slower);
- metrics: `ConfusionMatrix.update` against torchmetrics' `MulticlassJaccardIndex.update` on the same batches
  (target: at least as fast);
- data: training step time with the real loader against the same batches already in memory (target: within 5 %).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segbench.grid.cells import Cell
from segbench.grid.schema import DatasetSpec, EvalConfig, LossSpec, MeasureConfig, TrainConfig

DATASET = DatasetSpec(name="synthetic", params={"n_train": 32, "n_val": 4, "height": 64, "width": 128, "seed": 0})
ROUNDS = 2


def tiny_cell(iterations: int) -> Cell:
    return Cell(dataset=DATASET, model="unet", encoder="resnet18", loss=LossSpec(name="ce"), seed=0,
                train=TrainConfig(iterations=iterations, batch_size=4, crop=(64, 128), scale_range=(0.75, 1.25),
                                  eval_every=1000),
                eval=EvalConfig(batch_size=4), measure=MeasureConfig(enabled=False))


def timed_steps(batches: Iterable, step: Callable[[torch.Tensor, torch.Tensor], None]) -> list[float]:
    """Seconds per step, each from the end of the previous one, so loading the batch counts (as in segbench)."""
    times = []
    start = time.perf_counter()
    for images, labels in batches:
        step(images, labels)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times


def bare_setup(cell: Cell, cache_dir: Path, num_workers: int = 0):
    """The plain-PyTorch ingredients of a cell: loader, model, loss, optimizer (what a hand-written loop uses)."""
    from segbench.cell.data import make_datasets
    from segbench.cell.optim import make_optimizer
    from segbench.cell.state import seed_everything
    from segbench.datasets import dataset_info, parse_dataset_params
    from segbench.losses import build_loss
    from segbench.models import build_model

    seed_everything(cell.seed)
    train_set, _ = make_datasets(cell, 32, cache_dir)
    info = dataset_info(cell.dataset.name, parse_dataset_params(cell.dataset.name, cell.dataset.params))
    loader = DataLoader(train_set, batch_size=cell.train.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(cell.seed), num_workers=num_workers,
                        persistent_workers=num_workers > 0)
    model = build_model(cell.model, encoder=cell.encoder, classes=info.num_classes)
    criterion = build_loss("ce", num_classes=info.num_classes, class_weights=None, ignore_index=info.ignore_index)
    optimizer = make_optimizer(cell, model)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    return loader, step


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared machine a multi-threaded step waits for its slowest thread, which makes
    timings swing; ratios between two loops stay meaningful single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    from segbench.datasets import parse_dataset_params, prepare_dataset

    path = Path(os.environ["SEGBENCH_CACHE"])
    prepare_dataset(DATASET.name, parse_dataset_params(DATASET.name, DATASET.params), path)
    return path


def test_harness_overhead(benchmark, report_ratio, cache_dir: Path, tmp_path: Path):
    from segbench.cell.pipeline import train_and_evaluate

    cell = tiny_cell(iterations=16)

    def compare() -> float:
        harness, bare = [], []
        for round_index in range(ROUNDS + 1):
            loader, step = bare_setup(cell, cache_dir)
            steps = iter(range(cell.train.iterations))
            bare += timed_steps((batch for batch, _ in zip(_cycle(loader), steps, strict=False)), step)
            parts = train_and_evaluate(cell, tmp_path / f"cell{round_index}", torch.device("cpu"), lambda e: None,
                                       cache_dir=cache_dir)
            harness.append(parts["timing"]["train_step_s_median"])
        return float(np.median(harness)) / float(np.median(bare))

    ratio = benchmark.pedantic(compare, rounds=1, iterations=1)
    report_ratio("harness vs bare loop", ratio, 1.05, "median step time, unet/resnet18, batch 4, 64x128")


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def test_metric_accumulation(benchmark, report_ratio):
    from torchmetrics.classification import MulticlassJaccardIndex

    from segbench.metrics.confusion import ConfusionMatrix

    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(12):
        target = torch.randint(0, 19, (8, 128, 256), generator=generator)
        target[:, :8] = 255  # a void band, as in real label maps
        pred = torch.where(torch.rand(target.shape, generator=generator) < 0.7, target.clamp(max=18),
                           torch.randint(0, 19, target.shape, generator=generator))
        batches.append((pred, target))

    def compare() -> float:
        ours, theirs = [], []
        for _ in range(5):
            confusion = ConfusionMatrix(19, ignore_index=255)
            start = time.perf_counter()
            for pred, target in batches:
                confusion.update(pred, target)
            ours.append(time.perf_counter() - start)
            jaccard = MulticlassJaccardIndex(num_classes=19, ignore_index=255, average="macro")
            start = time.perf_counter()
            for pred, target in batches:
                jaccard.update(pred, target)
            theirs.append(time.perf_counter() - start)
        assert confusion.compute()["miou"] == pytest.approx(float(jaccard.compute()), abs=1e-6)
        return float(np.median(ours)) / float(np.median(theirs))

    ratio = benchmark.pedantic(compare, rounds=1, iterations=1)
    report_ratio("ConfusionMatrix.update", ratio, 1.0, "vs torchmetrics MulticlassJaccardIndex.update, 12 x 8x128x256")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_data_pipeline(benchmark, report_ratio, cache_dir: Path, num_workers: int):
    cell = tiny_cell(iterations=8)

    def compare() -> float:
        loader, step = bare_setup(cell, cache_dir, num_workers)
        in_memory = list(loader)
        timed_steps(in_memory[:2], step)  # warm-up
        real, resident = [], []
        for _ in range(2 * ROUNDS):
            # Alternate step by step (and which side goes first), so a burst of load from another process or a
            # cache effect of the previous step hits both sides alike.
            batches = iter(loader)
            for index, (images, labels) in enumerate(in_memory):
                for side in ((0, 1) if index % 2 else (1, 0)):
                    start = time.perf_counter()
                    step(*(next(batches) if side == 0 else (images, labels)))
                    (real if side == 0 else resident).append(time.perf_counter() - start)
        return float(np.median(real)) / float(np.median(resident))

    ratio = benchmark.pedantic(compare, rounds=1, iterations=1)
    report_ratio(f"real loader (workers={num_workers})", ratio, 1.05,
                 "vs batches in memory, median step time, batch 4, 64x128")
