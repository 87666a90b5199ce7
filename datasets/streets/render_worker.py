"""Worker process of the synthetic generator: `python -m segbench.datasets.streets.render_worker < job.json`.

A plain subprocess rather than multiprocessing: it never re-imports the caller's main module (so an unguarded script
or a notebook can call `prepare_dataset`) and never forks a parent that holds torch's thread pools. The job is read
from stdin as JSON: {"root": ..., "seed": ..., "height": ..., "width": ..., "domain": ..., "tasks": [[split, index],
...]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from segbench.datasets.synthetic import render_files


def main() -> None:
    job = json.load(sys.stdin)
    for split, index in job["tasks"]:
        render_files(Path(job["root"]), split, [index], job["seed"], job["height"], job["width"], job["domain"])


if __name__ == "__main__":
    main()
