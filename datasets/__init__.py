"""Datasets: a registry of loaders following `base.py`'s contract, and the functions the runner calls.

Importing this package registers every built-in dataset (`cityscapes`, `synthetic`, `bdd100k`, `kitti`, `camvid`,
`odgt`, `folder`).

Must not import `models` or any later stage (`metrics`, `grid`, `devices`, `optim`, `records`, `measure`, `cell`,
`execution`, `analysis`, `predict`, `cli`) (docs/architecture.md, "What a stage may import";
tests/test_import_rules.py).
"""

from segbench.datasets import bdd100k, camvid, cityscapes, folder, kitti, odgt, synthetic  # noqa: F401  (registers them)
from segbench.datasets.base import DatasetInfo, DatasetParams
from segbench.datasets.registry import (
    DATASETS,
    build_dataset,
    dataset_info,
    default_cache_dir,
    parse_dataset_params,
    prepare_dataset,
)
from segbench.datasets.transforms import EvalTransform, TrainTransform

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetParams",
    "EvalTransform",
    "TrainTransform",
    "build_dataset",
    "dataset_info",
    "default_cache_dir",
    "parse_dataset_params",
    "prepare_dataset",
]
