"""The environment a number was measured in, recorded next to it."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "timm", "segmentation-models-pytorch", "fvcore", "torchinfo", "numpy", "segbench")


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Versions of the packages a measured number depends on (None for one that is not installed)."""
    return {name: package_version(name) for name in PACKAGES}


def git_commit() -> str | None:
    """The commit of the segbench source tree, with '+dirty' when it has uncommitted changes; None outside git."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device_description(device: Any) -> dict[str, Any]:
    """The device a number was measured on: name, threads; on CUDA memory, capability, CUDA and cuDNN versions,
    cuDNN autotuning and the TF32 settings."""
    import torch

    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            total_memory_bytes=props.total_memory,
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            tf32=tf32_settings(),
        )
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def tf32_settings() -> dict[str, Any]:
    """Whether float32 matrix products and convolutions may run on TF32 tensor cores (10-bit mantissa): PyTorch's
    flags as they stand; the MFU of an fp32 run is taken against the TF32 peak when either allows it."""
    import torch

    return {
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


LOCK_FILE = "constraints.txt"  # beside pyproject.toml: the exact versions `make install` installs


def lock_file(root: Path | None = None) -> dict[str, Any] | None:
    """The constraints file the source tree installs with (its name and sha256), or None outside a checkout."""
    import hashlib

    path = (root or Path(__file__).resolve().parent.parent) / LOCK_FILE
    if not path.is_file():
        return None
    return {"file": LOCK_FILE, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def environment(device: Any) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "lock": lock_file(),
        "device": device_description(device),
    }
