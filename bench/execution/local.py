"""The executor of this host: one fresh worker process per cell, up to N in flight, each with a GPU of its own
(CUDA_VISIBLE_DEVICES) and an even share of the CPU threads. The worker sets exactly these threads and its record
states them (the record's `execution`).

On the CPU each worker is forked from segbench's fork server (segbench/forkserver.py), which has imported torch, smp,
timm and the worker's modules once, so a cell does not spend seconds importing them. On CUDA every worker is a new
interpreter: a process forked after CUDA's driver was loaded cannot use it, and a few seconds are small next to a GPU
cell."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from segbench import forkserver
from segbench.atomic import atomic_write_json
from segbench.errors import ConfigError
from segbench.execution.events import Event, OnEvent, parse_event
from segbench.execution.executor import CellTask, Placement, TaskHandle, TaskOutcome
from segbench.forkserver import PARENT_PID_ENV
from segbench.records.paths import TASK_FILE, WORKER_LOG_FILE, cell_dir

LOCAL = "local"
WORKER_MODULE = "segbench.execution.worker"
WORKER_NAME = "segbench-worker"  # the forked worker's process name (ps, top): its command line is the server's
# What the fork server imports once for all workers: what a worker imports before it trains.
WORKER_PRELOAD = ("torch", "segmentation_models_pytorch", "timm", WORKER_MODULE, "segbench.cell.pipeline")


def prestart_worker_server(device: str) -> None:
    """Start the workers' fork server at once, before the runner imports torch itself, when the cells will run on
    this host's CPU (--device cpu, or auto on a host without an NVIDIA device): the two imports then overlap. Costs
    nothing to call twice (start_worker_server returns the running server)."""
    if device == "cpu" or (device == "auto" and not any(Path("/dev").glob("nvidia[0-9]*"))):
        start_worker_server("cpu")


def start_worker_server(device: str, env: dict[str, str] | None = None) -> forkserver.ForkServer | None:
    """The fork server the workers of `device` start from (None on CUDA, or when SEGBENCH_FORK_SERVER=0), with
    `env` as its own environment (default: this process's). It starts in the background: call this early, and the
    imports overlap with the runner's own start."""
    return forkserver.start_server(WORKER_PRELOAD, env) if device == "cpu" else None


def start_worker(task_file: Path, env: dict[str, str], log: IO[str],
                 server: forkserver.ForkServer | None) -> tuple[forkserver.Process, IO[str]]:
    """The worker process of one cell (forked from `server` when it serves) with stderr to `log`, and the read end
    of its stdout (event lines, text); the caller closes both files."""
    read_end, write_end = os.pipe()
    try:
        process = forkserver.start_module(WORKER_MODULE, [str(task_file)], env=env, stdout=write_end,
                                          stderr=log.fileno(), server=server, name=WORKER_NAME)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return process, open(read_end, encoding="utf-8", errors="replace")  # noqa: SIM115 (the caller's)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, named as CUDA_VISIBLE_DEVICES names them (indices or UUIDs)."""
    import torch

    count = torch.cuda.device_count()
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is None:
        return [str(index) for index in range(count)]
    return [name.strip() for name in declared.split(",") if name.strip()][:count]


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask (a container's CPU set), else every core of the host."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_budget() -> int:
    """CPU threads for all cells in flight together: PyTorch's own default (physical cores, or OMP_NUM_THREADS),
    capped by the usable cores. One cell alone therefore computes with the threads it always had, and its metrics
    do not move (float sums depend on the thread count)."""
    import torch

    return max(1, min(torch.get_num_threads(), usable_cores()))


def local_slots(device: str, parallel: int | None, world_size: int = 1) -> list[Placement]:
    """One placement per cell that may be in flight at once on this host.

    device: 'cpu' or 'cuda' (resolved). parallel: cells in flight; None means as many as the visible GPUs hold on
    CUDA and one on the CPU. world_size: processes per cell (train.world_size): on CUDA each cell gets that many
    GPUs of its own. The CPU threads are split evenly between the cells (and a cell's between its ranks).
    """
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, not {parallel}.")
    host = socket.gethostname()
    budget = cpu_budget()
    if device == "cuda":
        gpus = visible_gpus()
        cells = parallel or max(len(gpus) // world_size, 1)
        if cells * world_size > len(gpus):
            each = "a GPU" if world_size == 1 else f"{world_size} GPUs (train.world_size)"
            raise ConfigError(f"--parallel {cells} asks for more cells in flight than the {len(gpus)} visible GPUs "
                              f"hold (each cell gets {each} of its own); use --parallel "
                              f"{max(len(gpus) // world_size, 1)} or less.")
        return [Placement(LOCAL, host, max(1, budget // cells), tuple(gpus[slot * world_size:][:world_size]))
                for slot in range(cells)]
    cells = parallel or 1
    if cells > budget:
        raise ConfigError(f"--parallel {cells} asks for more cells in flight than the {budget} CPU cores this run "
                          f"may use; use --parallel {budget} or less.")
    return [Placement(LOCAL, host, budget // cells) for _ in range(cells)]


def oversubscription(device: str, cells: int, world_size: int, cores: int) -> str | None:
    """A warning when the training processes of the cells in flight (cells x world_size ranks, each with at least one
    thread) outnumber the CPU cores they were given; None otherwise, and always on CUDA."""
    if device != "cpu" or cells * world_size <= cores:
        return None
    return (f"{cells} cell(s) in flight x train.world_size {world_size} = {cells * world_size} training processes on "
            f"{cores} CPU core(s): the ranks share cores and train slower; lower --parallel or train.world_size")


@dataclass
class _Worker:
    process: forkserver.Process
    on_event: OnEvent
    log_path: Path
    reader: threading.Thread


class LocalProcessExecutor:
    """One fresh Python process per cell (as timm's bulk runner does): a crash or leak cannot reach the sweep.

    device: 'cpu' or 'cuda'; parallel: cells in flight (default: as many as the visible GPUs hold on CUDA, one on
    the CPU). Each worker gets its own GPUs (world_size of them) and an even share of the CPU threads (local_slots).
    """

    def __init__(self, device: str = "cpu", parallel: int | None = None, interrupt_grace_s: float = 60.0,
                 world_size: int = 1) -> None:
        self._free = local_slots(device, parallel, world_size)
        self.max_in_flight = len(self._free)
        self.warning = oversubscription(device, self.max_in_flight, world_size, cpu_budget())
        self.interrupt_grace_s = interrupt_grace_s
        self._running: dict[TaskHandle, _Worker] = {}
        # Reader threads put (handle, event) here, and (handle, None) at the end of a worker's stdout; wait() hands
        # the events over in the caller's thread, so progress displays need no locks.
        self._inbox: queue.Queue[tuple[TaskHandle, Event | None]] = queue.Queue()
        self._server = start_worker_server(device)

    def submit(self, task: CellTask, on_event: OnEvent) -> TaskHandle:
        assert self._free, "submit() called with max_in_flight tasks already running"
        handle = TaskHandle(replace(task, placement=self._free.pop(0)))
        placement = handle.task.placement
        folder = cell_dir(task.results, task.cell.id)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / TASK_FILE, handle.task.to_json())
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}
        if placement.gpu_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(placement.gpu_ids)
        log = open(folder / WORKER_LOG_FILE, "w", encoding="utf-8")  # noqa: SIM115 (the reader thread closes it)
        try:
            process, stdout = start_worker(folder / TASK_FILE, env, log, self._server)
        except BaseException:
            log.close()
            self._free.insert(0, placement)
            raise
        reader = threading.Thread(target=self._read, args=(handle, stdout, log), daemon=True)
        self._running[handle] = _Worker(process, on_event, folder / WORKER_LOG_FILE, reader)
        reader.start()
        return handle

    def wait(self, timeout: float) -> list[TaskOutcome]:
        deadline = time.monotonic() + timeout
        while self._running:
            try:
                handle, event = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if handle not in self._running:
                continue  # a late line of a worker that interrupt() already settled
            if event is not None:
                self._running[handle].on_event(event)
            else:
                return [self._finish(handle)]  # any other worker that ended too is returned by the next call
        return []

    def interrupt(self) -> list[TaskOutcome]:
        # Ctrl-C in a terminal reaches the workers too (same process group); a signal sent to the runner alone does
        # not, so pass it on. The worker acts on its first interrupt and ignores the rest (worker.py).
        for worker in self._running.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + self.interrupt_grace_s
        for worker in self._running.values():
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        return [self._finish(handle) for handle in list(self._running)]

    def _read(self, handle: TaskHandle, stdout: IO[str], log: IO[str]) -> None:
        """Reader thread: events go to the inbox, any other stdout line to the worker's log."""
        try:
            with log, stdout:
                for line in stdout:
                    event = parse_event(line)
                    if event is None:
                        log.write(line)
                    else:
                        self._inbox.put((handle, event))
        finally:
            self._inbox.put((handle, None))  # always, or wait() would never see this worker end

    def _finish(self, handle: TaskHandle) -> TaskOutcome:
        worker = self._running.pop(handle)
        returncode = worker.process.wait()
        worker.reader.join(timeout=10)  # at once, unless a grandchild still holds the pipe open
        self._free.append(handle.task.placement)
        return TaskOutcome(handle, returncode, _tail(worker.log_path))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
