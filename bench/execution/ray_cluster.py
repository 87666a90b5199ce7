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
import socket
import threading
from dataclasses import dataclass
from typing import Any

from segbench.devices import resolve_device
from segbench.errors import ConfigError
from segbench.execution.local import cpu_budget, local_slots, visible_gpus

CONNECT_TIMEOUT_S = 60.0  # joining a cluster that has not answered by then is given up
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # tasks pass small dicts only; Ray's default takes 30% of the memory


@dataclass(frozen=True)
class CellResources:
    cpus: int  # CPUs each cell asks Ray for, and its torch threads
    gpus: int  # GPUs each cell asks Ray for
    max_in_flight: int


def connect(ray: Any, address: str | None, device: str) -> str:
    """Start a local Ray instance (address None) or join the cluster at `address`; returns the device the cells
    train on ('cpu' or 'cuda'), resolved against this host (local instance) or the cluster's GPUs."""
    if address is None:
        device = resolve_device(device)
        gpus = len(visible_gpus()) if device == "cuda" else 0
        ray.init(num_cpus=cpu_budget(), num_gpus=gpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        return device
    _check_listening(address)
    _join(ray, address)
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


def _check_listening(address: str) -> None:
    """Fail at once, with the fix, when nothing listens at HOST:PORT (Ray itself would retry for minutes)."""
    if address == "auto":
        return  # Ray finds this host's cluster itself, and says so at once when there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT (e.g. 10.0.0.5:6379) or auto, not '{address}'.")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(f"nothing answers at --address {address} ({exc.strerror or exc}); start the head node "
                          f"there with `ray start --head`, or pass the address it printed.") from None


def _join(ray: Any, address: str) -> None:
    """ray.init(address), given up after CONNECT_TIMEOUT_S: a port that answers but is no Ray head makes Ray retry
    without end. The attempt runs in a daemon thread, which the process leaves behind when it exits."""
    outcome: dict[str, BaseException | None] = {}

    def attempt() -> None:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            outcome["error"] = None
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, name="ray-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if "error" not in outcome:
        raise ConfigError(f"the Ray cluster at --address {address} did not answer within {CONNECT_TIMEOUT_S:.0f} s; "
                          f"check that it is a Ray head node's address (`ray status` there prints it).")
    if outcome["error"] is not None:
        reason = (str(outcome["error"]).strip().splitlines() or [type(outcome["error"]).__name__])[0]
        raise ConfigError(f"could not join the Ray cluster at --address {address} ({reason.rstrip('.')}); "
                          f"start one with `ray start --head` or pass its address.")


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
