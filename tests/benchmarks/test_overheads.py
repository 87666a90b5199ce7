"""segbench's own overheads, each as a ratio to a plain alternative timed in the same run (`make bench`):

- harness: a training epoch through `segbench.cell.loop.train_epoch` against a bare PyTorch loop on the same model,
  optimizer and batches (already in memory), as the median of 5 repetitions that alternate the two in the order
  bare, harness, harness, bare (target: at most 2 % slower);
- metrics: `ConfusionMatrix.update` against torchmetrics' `MulticlassJaccardIndex.update` on the same batches
  (target: at least 3x faster, a time ratio of at most 1/3);
- data: training steps fed by segbench's loader with a loader process against the same batches already in memory
  (target: within 5 %); without loader processes, the CPU default, the ratio is reported with no target.

Everything runs on one intra-op thread: on a shared machine a multi-threaded step waits for its slowest thread,
which makes timings swing; ratios between two loops stay meaningful single-threaded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from segbench.grid.cells import Cell
from segbench.grid.schema import DatasetSpec, EvalConfig, LossSpec, MeasureConfig, TrainConfig

CPU = torch.device("cpu")
DATASET = DatasetSpec(name="synthetic", params={"n_train": 32, "n_val": 4, "height": 64, "width": 128, "seed": 0})
HARNESS_STEPS = 5  # steps per epoch
HARNESS_REPEATS = 5  # repetitions, each of four epochs in the order bare, harness, harness, bare
DATA_ROUNDS = 4  # passes over the loader, each step alternating with an in-memory one


def tiny_cell(num_workers: int = 0) -> Cell:
    return Cell(dataset=DATASET, model="unet", encoder="resnet18", loss=LossSpec(name="ce"), seed=0,
                train=TrainConfig(iterations=8, batch_size=4, crop=(64, 128), scale_range=(0.75, 1.25),
                                  precision="fp32", num_workers=num_workers, eval_every=1000),
                eval=EvalConfig(batch_size=4), measure=MeasureConfig(enabled=False))


def training_parts(cell: Cell, cache_dir: Path):
    """segbench's loader for `cell`, and the model, loss and optimizer a hand-written loop would use."""
    from segbench.cell.data import make_datasets, make_loaders
    from segbench.cell.state import seed_everything
    from segbench.datasets import dataset_info, parse_dataset_params
    from segbench.losses import build_loss
    from segbench.models import build_model
    from segbench.optim import make_optimizer

    seed_everything(cell.seed)
    train_set, val_set = make_datasets(cell, 32, cache_dir)
    loader, _ = make_loaders(cell, train_set, val_set, cell.train.batch_size, CPU,
                             torch.Generator().manual_seed(cell.seed))
    info = dataset_info(cell.dataset.name, parse_dataset_params(cell.dataset.name, cell.dataset.params))
    model = build_model(cell.model, encoder=cell.encoder, classes=info.num_classes)
    criterion = build_loss("ce", num_classes=info.num_classes, class_weights=None, ignore_index=info.ignore_index)
    return loader, model.train(), criterion, make_optimizer(cell, model)


def bare_step(model, criterion, optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One optimisation step as a plain PyTorch loop writes it."""
    loss = criterion(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def cycle(loader) -> Iterator:
    while True:
        yield from loader


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    import os

    from segbench.datasets import parse_dataset_params, prepare_dataset

    path = Path(os.environ["SEGBENCH_CACHE"])
    prepare_dataset(DATASET.name, parse_dataset_params(DATASET.name, DATASET.params), path)
    return path


def test_harness_overhead(benchmark, report_ratio, cache_dir: Path):
    from segbench.cell.loop import step_setup, train_epoch
    from segbench.cell.state import TrainState

    cell = tiny_cell()
    loader, model, criterion, optimizer = training_parts(cell, cache_dir)
    batches = list(islice(cycle(loader), HARNESS_STEPS))
    # One model and optimizer for both sides: the step time of a CPU convolution does not depend on the weights.
    setup = step_setup(model, optimizer, contextlib.nullcontext(), precision="fp32", device=CPU, channels_last=False,
                       compile_mode=None, cudnn_benchmark=False)
    state = TrainState()

    def harness() -> float:
        start = time.perf_counter()
        train_epoch(model, criterion, optimizer, batches, CPU, setup, state, state.epoch + 1,
                    state.iteration + len(batches), lambda iteration: cell.train.lr, lambda event: None)
        state.epoch += 1
        return time.perf_counter() - start

    def bare() -> float:
        model.train()
        start = time.perf_counter()
        for images, labels in batches:
            bare_step(model, criterion, optimizer, images, labels)
        return time.perf_counter() - start

    ratios: list[float] = []

    def compare() -> float:
        harness(), bare()  # warm-up: allocator, first-call costs
        for _ in range(HARNESS_REPEATS):
            # ABBA: each side runs once first and once second, and a steady drift of the machine's load adds the
            # same to both sums, so neither the order nor the drift favours a side.
            bare_s = bare()
            harness_s = harness() + harness()
            ratios.append(harness_s / (bare_s + bare()))
        return float(np.median(ratios))

    ratio = benchmark.pedantic(compare, rounds=1, iterations=1)
    report_ratio("harness vs bare loop", ratio, 1.02,
                 f"median of {HARNESS_REPEATS} ABBA repetitions of {HARNESS_STEPS}-step epochs (range "
                 f"{min(ratios):.3f}-{max(ratios):.3f}), unet/resnet18, batch 4, 64x128")


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
    report_ratio("ConfusionMatrix.update", ratio, 1 / 3,
                 "vs torchmetrics MulticlassJaccardIndex.update (>= 3x faster), 12 x 8x128x256, median of 5")


@pytest.mark.parametrize("num_workers", [1, 0])
def test_data_pipeline(benchmark, report_ratio, cache_dir: Path, num_workers: int):
    loader, model, criterion, optimizer = training_parts(tiny_cell(num_workers), cache_dir)
    in_memory = list(loader)

    def compare() -> float:
        for images, labels in in_memory[:2]:  # warm-up
            bare_step(model, criterion, optimizer, images, labels)
        real, resident = [], []
        for _ in range(DATA_ROUNDS):
            # Alternate step by step (and which side goes first), so a burst of load from another process or a
            # cache effect of the previous step hits both sides alike.
            batches = iter(loader)
            for index, (images, labels) in enumerate(in_memory):
                for side in ((0, 1) if index % 2 else (1, 0)):
                    start = time.perf_counter()
                    bare_step(model, criterion, optimizer, *(next(batches) if side == 0 else (images, labels)))
                    (real if side == 0 else resident).append(time.perf_counter() - start)
        return float(np.median(real)) / float(np.median(resident))

    ratio = benchmark.pedantic(compare, rounds=1, iterations=1)
    kind = "1 loader process (persistent, prefetch)" if num_workers else "no loader process (the CPU default)"
    report_ratio(f"real loader (workers={num_workers})", ratio, 1.05 if num_workers else None,
                 f"vs batches in memory, median step time, {kind}, batch 4, 64x128")
