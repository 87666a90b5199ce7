"""The worker's side of a cell trained by several processes: torchrun launches the ranks, the worker waits for them
and turns their outcome into the record's parts, or into the error of the rank that failed first.

`python -m torch.distributed.run --standalone --nproc-per-node N -m segbench.execution.rank TASK EXCHANGE`:
`--standalone` gives every cell a local rendezvous on a free port, so cells in flight together never collide. The
ranks and the worker share EXCHANGE, a private temporary folder: rank 0 leaves the record's parts there (PARTS_FILE),
and a rank that raises leaves its error (rank-<r>-error.json). A rank that dies without a word (killed, os._exit) is
named by torchrun's failure summary on stderr, which the worker copies into its log and reads.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from segbench.atomic import atomic_write_json
from segbench.forkserver import PARENT_PID_ENV
from segbench.records.store import error_info

RANK_MODULE = "segbench.execution.rank"
PARTS_FILE = "parts.json"
TASK_FILE = "task.json"
POLL_S = 0.5
# Once rank 0 has left the parts, torchrun has this long to end (its other ranks exit when their last collective is
# done); after it, the launcher is stopped and the cell is recorded all the same.
LAUNCHER_EXIT_S = 120.0
# On an interrupt, torchrun stops its ranks (SIGTERM, then SIGKILL after its own grace period); after this long the
# worker kills it.
STOP_GRACE_S = 60.0
LOG_LINES = 400  # lines of torchrun's stderr kept for the failure summary
# torchrun's failure summary names each failed rank and how it ended: "rank : 1 (local_rank: 1)" and
# "exitcode : -9 (pid: 123)" on the next line.
FAILURE_LINES = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)")


class RankFailure(Exception):
    """A cell trained by several processes failed; `error` is the record's error (error_info) of the first rank to
    fail."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


# PARENT_PID_ENV: set by the executors to their own pid (the fork server's, for the workers it forks) when they start
# a worker: a worker whose parent is already someone else was orphaned before it could ask to die with its parent.


def die_with_parent() -> bool:
    """Ask Linux to send SIGTERM to this process when its parent dies, so no orphan keeps training.

    Returns False when the parent named by PARENT_PID_ENV died before the request (a runner killed while its worker
    was still starting): no signal will ever come for it, and the caller must end by itself."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    expected = os.environ.get(PARENT_PID_ENV)
    return not expected or os.getppid() == int(expected)


def launcher_command(world_size: int, exchange: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world_size),
            "-m", RANK_MODULE, str(exchange / TASK_FILE), str(exchange)]


def train_on_ranks(task: dict[str, Any], world_size: int, threads_per_rank: int) -> dict[str, Any]:
    """Train the task's cell on `world_size` processes; returns rank 0's record parts, or raises RankFailure."""
    exchange = Path(tempfile.mkdtemp(prefix="segbench-ranks-"))
    try:
        atomic_write_json(exchange / TASK_FILE, task)
        # torchrun would set 1 thread per rank (with a warning): each rank gets its share of the cell's threads.
        env = {key: value for key, value in os.environ.items() if key != PARENT_PID_ENV}
        env["OMP_NUM_THREADS"] = str(threads_per_rank)
        process = subprocess.Popen(launcher_command(world_size, exchange), stdin=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, errors="replace", env=env,
                                   preexec_fn=die_with_parent)
        tail: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        reader = threading.Thread(target=_copy_stderr, args=(process, tail), daemon=True)
        reader.start()
        try:
            returncode = _wait(process, exchange / PARTS_FILE)
        except BaseException:  # an interrupt: torchrun stops its ranks, rank 0's last saved state stays
            _stop(process)
            raise
        finally:
            reader.join(timeout=10)
        if (exchange / PARTS_FILE).exists():
            return json.loads((exchange / PARTS_FILE).read_text(encoding="utf-8"))
        raise RankFailure(diagnose(_rank_errors(exchange), "".join(tail), returncode, world_size))
    finally:
        shutil.rmtree(exchange, ignore_errors=True)


def _copy_stderr(process: subprocess.Popen, tail: collections.deque[str]) -> None:
    """Reader thread: torchrun's stderr (its own and its ranks') into the worker's log, the last lines kept."""
    for line in process.stderr:
        sys.stderr.write(line)
        tail.append(line)
    sys.stderr.flush()


def _wait(process: subprocess.Popen, parts: Path) -> int:
    """Wait for torchrun to end; once the parts are there, for at most LAUNCHER_EXIT_S more."""
    deadline = None
    while True:
        try:
            return process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            if deadline is None and parts.exists():
                deadline = time.monotonic() + LAUNCHER_EXIT_S
            if deadline is not None and time.monotonic() > deadline:
                sys.stderr.write(f"torchrun did not end {LAUNCHER_EXIT_S:.0f} s after rank 0 finished: stopped\n")
                return _stop(process)


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _rank_errors(exchange: Path) -> list[dict[str, Any]]:
    errors = []
    for path in sorted(exchange.glob("rank-*-error.json")):
        with contextlib.suppress(OSError, json.JSONDecodeError):  # unreadable: torchrun's summary names the rank
            errors.append(json.loads(path.read_text(encoding="utf-8")))
    return errors


def launcher_failures(output: str) -> dict[int, int]:
    """rank -> exit code of every rank torchrun's failure summary lists (negative: killed by that signal)."""
    return {int(rank): int(code) for rank, code in FAILURE_LINES.findall(output)}


def diagnose(errors: list[dict[str, Any]], output: str, returncode: int, world_size: int) -> dict[str, Any]:
    """The record's error of a cell whose ranks failed: the first rank that failed on its own.

    errors: what the ranks that raised left (rank, time, peer, error); output: torchrun's stderr. In order: a rank's
    own exception (not one caused by a peer that went away), a rank that died without an error (a signal other than
    the SIGTERM with which torchrun stops the survivors, or an exit code), an exception caused by a peer, a stopped
    rank, and torchrun's exit code.
    """
    log_tail = "\n".join(output.splitlines()[-15:])
    by_time = sorted(errors, key=lambda entry: entry["time"])
    own = [entry for entry in by_time if not entry["peer"]]
    if own:
        return _rank_error(own[0], world_size, log_tail)
    exits = {rank: code for rank, code in launcher_failures(output).items()
             if rank not in {entry["rank"] for entry in errors}}
    died = {rank: code for rank, code in exits.items() if code != -signal.SIGTERM}
    if died:
        rank = min(died)
        kind = "killed" if died[rank] < 0 else "worker_lost"
        message = (f"rank {rank} of {world_size} {_ending(died[rank])} without an error of its own; torchrun "
                   "stopped the other ranks")
        return error_info(kind, message, rank=rank, exitcode=died[rank], log_tail=log_tail)
    if by_time:
        return _rank_error(by_time[0], world_size, log_tail)
    if exits:
        rank = min(exits)
        return error_info("killed", f"rank {rank} of {world_size} {_ending(exits[rank])}", rank=rank,
                          exitcode=exits[rank], log_tail=log_tail)
    return error_info("worker_lost", f"torchrun exited with code {returncode} and no rank of {world_size} reported "
                      "an error", exitcode=returncode, log_tail=log_tail)


def _rank_error(entry: dict[str, Any], world_size: int, log_tail: str) -> dict[str, Any]:
    error = entry["error"]
    return {**error, "message": f"rank {entry['rank']} of {world_size}: {error['message']}", "rank": entry["rank"],
            "log_tail": log_tail}


def _ending(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {-code} ({name})"
    return f"exited with code {code}"
