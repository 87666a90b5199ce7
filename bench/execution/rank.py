"""Entry point of one rank of a cell trained by several processes, started by torchrun (see launch.py):
`python -m segbench.execution.rank TASK_JSON EXCHANGE_DIR`.

Every rank joins the process group and runs the cell's training function; rank 0 alone reports progress events (on
the stdout it shares with the worker) and leaves the record's parts in EXCHANGE_DIR. A rank that raises leaves its
error there, marked `peer` when a peer that went away caused it, and exits with code 1 (torchrun then stops the
other ranks).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from segbench.atomic import atomic_write_json
from segbench.execution.events import emit
from segbench.execution.launch import PARTS_FILE, die_with_parent

# Messages of errors that a rank raises because another rank went away (a closed connection, a collective that
# timed out), in gloo's and NCCL's words; torch.distributed.DistError covers the rest in recent versions.
PEER_FAILURES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
                 "NCCL communicator was aborted", "ProcessGroupNCCL", "ProcessGroupGloo")


def run_rank(task: dict[str, Any], exchange: Path) -> None:
    import torch

    from segbench.cell.distributed import init_process_group
    from segbench.cell.pipeline import train_and_evaluate
    from segbench.grid.cells import Cell
    from segbench.records.paths import cell_dir

    cell = Cell.model_validate(task["cell"])
    dist = init_process_group(task["device"], cell.train.sync_bn, int(task["placement"]["threads"]))
    device = dist.device if dist.device.type == "cuda" else torch.device("cpu")
    parts = train_and_evaluate(cell, cell_dir(Path(task["results"]), cell.id), device,
                               emit if dist.is_main else _silent, cache_dir=Path(task["cache_dir"]),
                               batch_size=task.get("batch_size"), dist=dist)
    if parts is not None:
        atomic_write_json(exchange / PARTS_FILE, parts)


def _silent(event: dict[str, Any]) -> None:
    """The progress events of ranks other than 0, which the runner never sees."""


def peer_failure(exc: BaseException) -> bool:
    """Whether `exc` was raised because another rank went away (so it is not this cell's root cause)."""
    import torch.distributed

    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    return any(marker in str(exc) for marker in PEER_FAILURES)


def main(argv: list[str]) -> int:
    # An interrupt reaches the ranks through torchrun, which stops them; a Ctrl-C from the terminal is left to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(argv) != 2:
        sys.stderr.write("usage: python -m segbench.execution.rank TASK_JSON EXCHANGE_DIR\n")
        return 2
    die_with_parent()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    task_file, exchange = Path(argv[0]), Path(argv[1])
    rank = int(os.environ["RANK"])
    try:
        run_rank(json.loads(task_file.read_text(encoding="utf-8")), exchange)
    except Exception as exc:
        from segbench.execution.worker import failure_error

        traceback.print_exc()
        atomic_write_json(exchange / f"rank-{rank}-error.json", {"rank": rank, "time": time.time(),
                                                                   "peer": peer_failure(exc),
                                                                   "error": failure_error(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
