"""What runs on a Ray node: the task that runs one cell in today's isolated worker process, and the inbox actor that
carries the worker's progress events (and the driver's request to stop) between the nodes and the driver.

Nothing here imports Ray at module level: ray_executor.py wraps these with `ray.remote` once Ray is known to be
installed, so segbench imports without it.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from segbench.atomic import atomic_write_json
from segbench.execution.events import Event, parse_event
from segbench.execution.local import _tail, start_worker, start_worker_server
from segbench.faults import ENV as FAULT_ENV
from segbench.forkserver import PARENT_PID_ENV
from segbench.records.paths import TASK_FILE, WORKER_LOG_FILE

PUSH_INTERVAL_S = 0.5  # how often a task sends its events to the inbox (and learns whether to stop)
RAY_TOKEN_ENV = "RAY_AUTH_TOKEN"


class EventInbox:
    """A small actor on the driver's side of the cluster: tasks push events, the driver drains them.

    Keys are attempt ids (one per task). `stop` is the driver's Ctrl-C: every task learns it at its next push and
    signals its worker, which then writes its own "interrupted" record, as under the local executor.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []
        self.placements: dict[str, dict[str, Any]] = {}
        self.stopping = False

    def placed(self, attempt: str, placement: dict[str, Any]) -> bool:
        """A task started on a node; returns whether the run is stopping (then the task starts no worker)."""
        self.placements[attempt] = placement
        return self.stopping

    def push(self, attempt: str, events: list[Event]) -> bool:
        """Events of one task, in order; returns whether the run is stopping."""
        self.events.extend((attempt, event) for event in events)
        return self.stopping

    def drain(self) -> tuple[list[tuple[str, Event]], dict[str, dict[str, Any]]]:
        """Every event pushed since the last drain, and where each task started since then."""
        events, placements = self.events, self.placements
        self.events, self.placements = [], {}
        return events, placements

    def stop(self) -> None:
        self.stopping = True


def node_placement(threads: int) -> dict[str, Any]:
    """Where this task runs, as the record's `execution` says it: node, threads, and the GPUs Ray gave it."""
    import ray

    declared = os.environ.get("CUDA_VISIBLE_DEVICES")  # set by Ray from the task's GPUs; the worker inherits it
    gpu_ids = [name.strip() for name in declared.split(",") if name.strip()] if declared else None
    return {"executor": "ray", "threads": threads, "host": socket.gethostname(), "gpu_ids": gpu_ids or None,
            "node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


def run_cell(task: dict[str, Any], folder: str, inbox: Any, fault: str | None) -> dict[str, Any]:
    """Run the worker of one cell on this node and wait for it; returns its exit code and the tail of its log.

    task: CellTask.to_json(); the placement is completed here, where the node is known. folder: the cell's folder
    on the shared results storage. fault: the driver's SEGBENCH_FAULT, so fault injection reaches a remote worker
    as it reaches a local one.
    """
    import ray

    task = {**task, "placement": node_placement(task["placement"]["threads"])}
    if ray.get(inbox.placed.remote(task["attempt"], task["placement"])):
        return {"returncode": 130, "log_tail": "not started: the run was interrupted"}
    cell_folder = Path(folder)
    cell_folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cell_folder / TASK_FILE, task)
    env = worker_environment(dict(os.environ), fault)
    # This Ray worker process's fork server (its later tasks reuse it), in a worker's environment: no Ray token.
    server = start_worker_server(task["device"], env=worker_environment(dict(os.environ), None))
    with open(cell_folder / WORKER_LOG_FILE, "w", encoding="utf-8") as log:
        process, stdout = start_worker(cell_folder / TASK_FILE, env, log, server)
        with stdout:
            pending: list[Event] = []
            lock = threading.Lock()
            reader = threading.Thread(target=_read, args=(stdout, log, pending, lock), daemon=True)
            reader.start()
            _relay(process, reader, inbox, task["attempt"], pending, lock)
    return {"returncode": process.returncode, "log_tail": _tail(cell_folder / WORKER_LOG_FILE)}


def worker_environment(node_env: dict[str, str], fault: str | None) -> dict[str, str]:
    """The environment of a cell's worker process, from its Ray worker's: the driver's fault injection, and no Ray
    authentication token (a node started with RAY_AUTH_TOKEN passes it to its tasks; the cell's worker never talks
    to Ray, and what it runs must not hold the cluster's credential)."""
    env = {**node_env, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}
    env.pop(RAY_TOKEN_ENV, None)
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return env


def _read(stdout: Any, log: Any, pending: list[Event], lock: threading.Lock) -> None:
    """Reader thread: event lines are queued for the inbox, every other stdout line goes to the worker's log."""
    for line in stdout:
        event = parse_event(line)
        if event is None:
            log.write(line)
        else:
            with lock:
                pending.append(event)


def _relay(process: Any, reader: threading.Thread, inbox: Any, attempt: str, pending: list[Event],
           lock: threading.Lock) -> None:
    """Push the worker's events every PUSH_INTERVAL_S until its stdout ends; pass the driver's stop on to it."""
    import ray

    signalled = False
    while True:
        try:
            reader.join(timeout=PUSH_INTERVAL_S)
            done = not reader.is_alive()
            with lock:
                events = pending[:]
                pending.clear()
            stopping = ray.get(inbox.push.remote(attempt, events))
        except ray.exceptions.RayError:  # the inbox is gone (its node died): train on, unseen until the end
            stopping = False
        if stopping and not signalled and process.poll() is None:
            # SIGTERM, not SIGINT: Ray's processes block SIGINT and the worker inherits that mask. The worker takes
            # both the same way (its first one stops the cell, the rest are ignored).
            process.send_signal(signal.SIGTERM)
            signalled = True
        if done:
            process.wait()
            return

