"""One cell folder and its record: finding the record of a folder a user names, and the weights it selected.

Read by `segbench show` and `segbench predict`; nothing here imports torch, so showing a cell stays cheap.
"""

from __future__ import annotations

from pathlib import Path

from segbench.errors import ConfigError
from segbench.records.paths import CELLS_DIR, CHECKPOINT_FILE, RECORD_FILE
from segbench.records.schema import Record
from segbench.records.store import read_record


def read_cell_record(cell_folder: Path) -> Record:
    """The record of the cell folder `cell_folder`; ConfigError (one sentence) when the folder is not a cell."""
    cell_folder = Path(cell_folder)
    if (cell_folder / RECORD_FILE).is_file():
        return read_record(cell_folder / RECORD_FILE)
    if not cell_folder.is_dir():
        raise ConfigError(f"{cell_folder} does not exist; pass a cell folder such as <results>/{CELLS_DIR}/<cell id>.")
    cells = sorted(path.parent.name for path in (cell_folder / CELLS_DIR).glob(f"*/{RECORD_FILE}"))
    if cells:
        raise ConfigError(
            f"{cell_folder} is a results folder, not a cell folder; pass one of its {len(cells)} cells, e.g. "
            f"{cell_folder / CELLS_DIR / cells[0]}."
        )
    raise ConfigError(
        f"{cell_folder} is not a cell folder (it has no {RECORD_FILE}); pass a folder such as "
        f"<results>/{CELLS_DIR}/<cell id> written by `segbench run`."
    )


def checkpoint_path(cell_folder: Path, record: Record | None = None) -> Path:
    """The selected weights of a cell folder: the file its record names (records of older formats name theirs
    through schema.migrate), else model.pt. The path may not exist (a failed cell has no weights)."""
    named = record.checkpoint if record is not None else None
    return Path(cell_folder) / (named or CHECKPOINT_FILE)
