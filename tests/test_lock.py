"""The lock: constraints.txt pins what `make install` installs, the installed versions are the pinned ones, and
records name the file they were made with."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import torch

from segbench.env import LOCK_FILE, environment, lock_file

ROOT = Path(__file__).resolve().parents[1]
# The packages a recorded number depends on: a change of any of them may move metrics, latency or checksums.
PINNED = ("torch", "torchvision", "timm", "segmentation_models_pytorch", "numpy", "fvcore", "torchinfo", "scipy")


def pins(text: str) -> dict[str, str]:
    lines = (line.strip() for line in text.splitlines())
    pairs = (line.split("==", 1) for line in lines if line and not line.startswith("#"))
    return {name.lower().replace("-", "_"): version for name, version in pairs}


def test_the_lock_pins_every_package_a_number_depends_on_at_its_installed_version():
    locked = pins((ROOT / LOCK_FILE).read_text())
    for name in PINNED:
        assert name in locked, f"{LOCK_FILE} does not pin {name}; refresh it with `make lock`"
        installed = metadata.version(name)
        assert installed.split("+")[0] == locked[name].split("+")[0], (
            f"{name} {installed} is installed but {LOCK_FILE} pins {locked[name]}: reinstall with `make install`, "
            "or refresh the lock on purpose with `make lock`")


def test_records_name_the_lock_they_were_made_with(tmp_path: Path):
    digest = hashlib.sha256((ROOT / LOCK_FILE).read_bytes()).hexdigest()
    assert environment(torch.device("cpu"))["lock"] == {"file": LOCK_FILE, "sha256": digest}
    assert lock_file(tmp_path) is None  # an installed wheel has no lock beside it
