"""Joining or starting a Ray cluster, and sizing the cells on it: CPUs and GPUs per cell, cells in flight.

Without an address, a local Ray instance is started on this host with the local executor's CPU budget, and a cell
gets the threads the local executor would give it (local.local_slots): the same machine, seeds and thread count
give the same metrics under both executors. On a cluster, a cell gets by default a GPU's even share of its node's
CPUs on CUDA, and the smallest node's CPUs on the CPU (as one local cell gets every core); either way the smallest
such share among the nodes, so that every cell computes with the same thread count wherever it lands (float sums
depend on it). --cpus-per-cell sets it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from segbench.devices import resolve_device
from segbench.errors import ConfigError
from segbench.execution.local import cpu_budget, local_slots, visible_gpus
from segbench.execution.ray_auth import DriverAuth
from segbench.execution.ray_join import join

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # tasks pass small dicts only; Ray's default takes 30% of the memory


@dataclass(frozen=True)
class CellResources:
    cpus: int  # CPUs each cell asks Ray for, and its torch threads
    gpus: int  # GPUs each cell asks Ray for
    max_in_flight: int


def connect(ray: Any, address: str | None, device: str, auth: DriverAuth | None = None) -> str:
    """Start a local Ray instance (address None) or join the cluster at `address` (ray_join), authenticating as
    `auth` settles it; returns the device the cells train on ('cpu' or 'cuda'), resolved against this host (local
    instance) or the cluster's GPUs."""
    if address is None:
        device = resolve_device(device)
        gpus = len(visible_gpus()) if device == "cuda" else 0
        ray.init(num_cpus=cpu_budget(), num_gpus=gpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        return device
    assert auth is not None, "joining a cluster needs the driver's DriverAuth (ray_auth.driver_auth)"
    join(ray, address, auth)
    gpus = sum(node["Resources"].get("GPU", 0) for node in ray.nodes() if node["Alive"])
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if device == "cuda" and not gpus:
        ray.shutdown()
        raise ConfigError(f"--device cuda was requested but the Ray cluster at {address} has no GPU; "
                          f"use --device cpu or auto.")
    if device not in ("cpu", "cuda"):
        ray.shutdown()
        raise ConfigError(f"--device must be auto, cpu or cuda, not '{device}'.")
    return device


def plan_cells(ray: Any, device: str, local_instance: bool, parallel: int | None, cpus_per_cell: int | None,
               gpus_per_cell: int | None, world_size: int = 1) -> CellResources:
    """Resources per cell and cells in flight, from the alive nodes of the connected cluster."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    default_cpus = (local_slots(device, parallel, world_size)[0].threads if local_instance and cpus_per_cell is None
                    else None)
    return size_cells(nodes, device, parallel, cpus_per_cell or default_cpus, gpus_per_cell, world_size)


def size_cells(nodes: list[dict[str, float]], device: str, parallel: int | None, cpus_per_cell: int | None,
               gpus_per_cell: int | None, world_size: int = 1) -> CellResources:
    """nodes: each alive node's Ray resources ({"CPU": 8.0, "GPU": 2.0, ...}). parallel caps the cells in flight
    (default: as many as the nodes hold at once); cpus_per_cell None: the smallest, among the nodes, of a cell's
    share of its node's CPUs (CUDA: by its GPUs) or of the node's CPUs (CPU). gpus_per_cell None: a cell asks for
    as many GPUs as its world size (train.world_size) on CUDA, none on the CPU."""
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, not {parallel}.")
    if cpus_per_cell is not None and cpus_per_cell < 1:
        raise ConfigError(f"--cpus-per-cell must be at least 1, not {cpus_per_cell}.")
    gpus = gpus_per_cell if gpus_per_cell is not None else world_size * int(device == "cuda")
    usable = [node for node in nodes if node.get("CPU", 0) >= 1 and node.get("GPU", 0) >= gpus]
    if not usable:
        what = f"{gpus} GPU(s) and a CPU" if gpus else "a CPU"
        raise ConfigError(f"no node of the Ray cluster has {what} for a cell; add such a node, or use --device cpu.")
    if cpus_per_cell is None:
        cpus_per_cell = min(int(node["CPU"] // (node["GPU"] // gpus if gpus else 1)) for node in usable)
    cpus_per_cell = max(1, cpus_per_cell)
    capacity = sum(min(int(node["CPU"] // cpus_per_cell), int(node.get("GPU", 0) // gpus) if gpus else 1 << 30)
                   for node in usable)
    if capacity == 0:
        most = max(int(node["CPU"]) for node in usable)
        raise ConfigError(f"--cpus-per-cell {cpus_per_cell} is more than any node of the Ray cluster has (at most "
                          f"{most} CPUs); use --cpus-per-cell {most} or less.")
    return CellResources(cpus_per_cell, gpus, parallel or capacity)
