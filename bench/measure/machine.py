"""The machine a latency was timed on, as a fingerprint: latency is gated only between equal fingerprints.

Machines of one cloud kind are not one CPU: the same "2-core" machine is an Intel Xeon one day and an AMD EPYC the
next, and a model's time over a fixed reference workload moved by 50-100 % between the two (docs/report.md). asv keys
its results by machine for the same reason. A CPU's model name alone is too coarse ("AMD EPYC" covers many parts), so
the fingerprint holds what decides the speed of a convolution on it: vendor, family/model/stepping, the vector
instruction sets PyTorch's kernels dispatch on, cache sizes and logical cores; then the measurement's own threads, the
torch version and the device (on CUDA its name, capability and CUDA version). Its `id` is a short digest of all of
that; two latencies are comparable only when their ids are equal.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

FINGERPRINT_VERSION = 1
# The CPU flags (as /proc/cpuinfo spells them) that change which kernels oneDNN and ATen dispatch to.
VECTOR_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")
CPUINFO = Path("/proc/cpuinfo")
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_caches(cache_dir: Path = CACHE_DIR) -> dict[str, str]:
    """Cache sizes of the first CPU as the kernel reports them: {"L1d": "48K", "L1i": "32K", "L2": "1280K", ...}."""
    caches: dict[str, str] = {}
    for index in sorted(cache_dir.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[f"L{level}{suffix}"] = size
    return caches


def cpu_description(cpuinfo: str | None = None, cache_dir: Path = CACHE_DIR) -> dict[str, Any]:
    """The CPU: vendor, family, model, stepping, model name, the vector flags present, caches, logical cores."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            cpuinfo = ""
    fields = cpuinfo_fields(cpuinfo)
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
        "family": fields.get("cpu family") or fields.get("CPU architecture"),
        "model": fields.get("model") or fields.get("CPU part"),
        "stepping": fields.get("stepping") or fields.get("CPU variant"),
        "model_name": fields.get("model name"),
        "vector_flags": [flag for flag in VECTOR_FLAGS if flag in flags],
        "caches": cpu_caches(cache_dir),
        "logical_cores": os.cpu_count(),
    }


def gpu_description(device: torch.device) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(device)
    return {"name": props.name, "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
            "total_memory_bytes": props.total_memory}


def fingerprint(device: torch.device, threads: int, method: str, cpu: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """The fingerprint of the machine timing on `device` with `threads` CPU threads, with its digest under `id`.

    method: the timing method (reference workload and rounds), part of the id because a ratio to one reference is
    not comparable with a ratio to another. cpu: a `cpu_description` (read from this machine when None). `label` is
    a short human name, not part of the id.
    """
    cpu = cpu if cpu is not None else cpu_description()
    parts: dict[str, Any] = {
        "version": FINGERPRINT_VERSION,
        "method": method,
        "cpu": cpu,
        "threads": threads,
        "torch": torch.__version__,
        "device_type": device.type,
        "gpu": gpu_description(device) if device.type == "cuda" else None,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return {"id": digest, "label": fingerprint_label(parts), **parts}


def fingerprint_label(parts: dict[str, Any]) -> str:
    """"Intel(R) Xeon(R) Processor @ 2.80GHz (6/106/6, avx512, 2 cores), 1 thread, torch 2.9.1"; a GPU's name
    first when it timed on one."""
    cpu = parts.get("cpu") or {}
    flags = cpu.get("vector_flags") or []
    widest = next((flag for flag in ("amx_tile", "avx512f", "avx2", "avx", "sve", "asimd") if flag in flags), None)
    widest = {"amx_tile": "amx", "avx512f": "avx512"}.get(widest, widest)
    family = "/".join(str(cpu.get(key)) for key in ("family", "model", "stepping"))
    cpu_text = (f"{cpu.get('model_name') or cpu.get('vendor') or 'unknown CPU'} ({family}"
                f"{', ' + widest if widest else ''}, {cpu.get('logical_cores')} cores)")
    threads = parts.get("threads")
    text = f"{cpu_text}, {threads} thread{'s' if threads != 1 else ''}, torch {parts.get('torch')}"
    gpu = parts.get("gpu")
    return f"{gpu['name']} (CUDA {gpu['cuda']}) on {text}" if gpu else text
