"""Several results folders into one (`segbench merge`), e.g. one per machine or cluster; records and files are moved,
never changed.

Cell folders are keyed by cell id (the folder name, `<slug>-<config hash>`), the grid's cells and the tuning trials
(`tuning/cells/`) alike. Records of different config hashes or benchmark-semantics versions have different ids and
are all kept; the report and summary show the newest record of a slug and list the others as superseded. Where one
id is in several inputs:

- an `ok` record beats records that are not (failed, interrupted); among records none of which is ok, the newest
  (finished_at, else written_at) is kept;
- `ok` records with equal metrics and confusion matrix are one result: the first (in input order) is kept;
- `ok` records that differ are a conflict, which `prefer` settles (`newest`: the latest finished_at, else written_at;
  `first`: input order); without it the plan holds the conflicts and nothing may be written.

A cell folder comes whole from the input whose record is kept (weights, per-image counts, examples, exports, logs),
each file hard-linked where the filesystem allows and copied otherwise. Saved grids (`grids/<name>-<hash>.yaml`) are
merged by name: a name holds the hash of its text, so two files of one name that differ are refused. Optuna's
`tuning/studies.db` cannot be merged: the first input's is kept. The lock file and anything else at the top of an
input (reports, summaries) are left out. The output is built in a hidden folder beside `out` and renamed into place
at the end: an interrupted merge leaves no `out` and no half-written folder.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segbench.errors import ConfigError, SegbenchError
from segbench.records.paths import (
    CELLS_DIR,
    GRIDS_DIR,
    LOCK_FILE,
    RECORD_FILE,
    STUDIES_FILE,
    TUNING_DIR,
    cells_dir,
    grids_dir,
    studies_file,
    tuning_dir,
)
from segbench.records.schema import Record
from segbench.records.store import read_record

PREFER_NEWEST = "newest"
PREFER_FIRST = "first"
PREFERENCES = (PREFER_NEWEST, PREFER_FIRST)

# The folders of cell folders in a results folder, relative to it: the grid's cells and the tuning trials.
SECTIONS = (CELLS_DIR, f"{TUNING_DIR}/{CELLS_DIR}")
# What a merge carries at the top of a results folder and of its tuning/ folder; everything else there is left out.
MERGED_TOP = {CELLS_DIR, GRIDS_DIR, TUNING_DIR}
MERGED_TUNING = {CELLS_DIR, STUDIES_FILE}

# Why a cell's folder was taken from the input it was taken from (printed after a count of cells).
ONLY = "in one input"
IDENTICAL = "in several inputs with equal results (the first kept)"
OK_OVER_NOT_OK = "ok in one input, failed or interrupted in another (the ok one kept)"
NEWEST_ATTEMPT = "failed or interrupted in every input (the newest attempt kept)"
CONFLICT = "conflict"
SETTLED = "ok in several inputs with different results, settled by --prefer {prefer}"


@dataclass(frozen=True)
class Candidate:
    """A cell folder of one input and its record."""

    results: Path
    folder: Path
    record: Record

    @property
    def finished(self) -> str:
        """When the record's attempt ended (ISO 8601 UTC), as select_latest orders records."""
        return self.record.finished_at or self.record.written_at or ""

    @property
    def miou(self) -> float | None:
        return self.record.metrics.miou if self.record.metrics else None

    def result(self) -> tuple[object, object]:
        """What two ok records of one cell must agree on to be one result: metrics and confusion matrix."""
        return (self.record.metrics.to_json() if self.record.metrics else None, self.record.confusion_matrix)


@dataclass(frozen=True)
class Choice:
    """One cell of the merged folder: the candidate kept, why, and for a conflict the differing ok results (the
    first candidate of each)."""

    section: str
    cell_id: str
    kept: Candidate
    reason: str
    rivals: list[Candidate] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.section}/{self.cell_id}"


@dataclass(frozen=True)
class MergePlan:
    """What a merge writes, decided before anything is written."""

    inputs: list[Path]
    cells: list[Choice]
    grids: dict[str, Path]  # file name -> the first input's file of that name
    studies: list[Path]  # the inputs' tuning/studies.db; the first is kept
    left_out: list[Path]  # top-level entries not merged, cell folders without a record
    counts: dict[Path, dict[str, int]]  # per input, cell folders with a record per section

    @property
    def conflicts(self) -> list[Choice]:
        return [choice for choice in self.cells if choice.reason == CONFLICT]


def choose(section: str, cell_id: str, candidates: list[Candidate], prefer: str | None) -> Choice:
    """The candidate to keep of one cell id (candidates in input order), by the rules in the module docstring."""
    ok = [candidate for candidate in candidates if candidate.record.ok]
    if not ok:  # max keeps the first of equals: input order breaks ties
        reason = ONLY if len(candidates) == 1 else NEWEST_ATTEMPT
        return Choice(section, cell_id, max(candidates, key=lambda c: c.finished), reason)
    distinct: list[Candidate] = []
    for candidate in ok:
        if all(candidate.result() != seen.result() for seen in distinct):
            distinct.append(candidate)
    if len(distinct) == 1:
        reason = ONLY if len(candidates) == 1 else IDENTICAL if len(ok) == len(candidates) else OK_OVER_NOT_OK
        return Choice(section, cell_id, ok[0], reason)
    if prefer is None:
        return Choice(section, cell_id, ok[0], CONFLICT, distinct)
    kept = max(ok, key=lambda c: c.finished) if prefer == PREFER_NEWEST else ok[0]
    return Choice(section, cell_id, kept, SETTLED.format(prefer=prefer), distinct)


def check_inputs(inputs: Sequence[Path], out: Path) -> None:
    """ConfigError (one sentence) unless there are two or more results folders and `out` is a new or empty folder
    outside every one of them."""
    if len(inputs) < 2:
        raise ConfigError(f"segbench merge needs two or more results folders, got {len(inputs)}; name every folder "
                          "to merge, then --out.")
    for results in inputs:
        if not cells_dir(results).is_dir():
            raise ConfigError(f"{results} is not a results folder (it has no {CELLS_DIR}/ folder); pass folders "
                              "written by `segbench run`.")
    target = out.resolve()
    for results in inputs:
        if target == results.resolve() or results.resolve() in target.parents:
            raise ConfigError(f"--out {out} is the input {results} or inside it; choose a folder outside every input, "
                              "which a merge never changes.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not an empty folder; choose a new folder for the "
                          "merged results.")


def plan_merge(inputs: Sequence[Path], out: Path, prefer: str | None = None) -> MergePlan:
    """Read every input and decide what the merged folder holds; writes nothing. SegbenchError (one sentence) for a
    bad input: not a results folder, an unreadable record (named), `out` not new, two saved grids of one name that
    differ."""
    if prefer is not None and prefer not in PREFERENCES:
        raise ConfigError(f"--prefer {prefer} is not one of {', '.join(PREFERENCES)}.")
    inputs, out = [Path(results) for results in inputs], Path(out)
    check_inputs(inputs, out)
    found: dict[tuple[str, str], list[Candidate]] = {}
    counts: dict[Path, dict[str, int]] = {}
    left_out: list[Path] = []
    for results in inputs:
        counts[results] = {}
        for section in SECTIONS:
            folders = sorted(path for path in (results / section).glob("*") if path.is_dir())
            with_record = [folder for folder in folders if (folder / RECORD_FILE).is_file()]
            left_out += [folder for folder in folders if folder not in with_record]
            counts[results][section] = len(with_record)
            for folder in with_record:
                candidate = Candidate(results, folder, read_record(folder / RECORD_FILE))
                found.setdefault((section, folder.name), []).append(candidate)
        left_out += [path for path in sorted(results.iterdir()) if path.name not in MERGED_TOP | {LOCK_FILE}]
        if tuning_dir(results).is_dir():
            left_out += [path for path in sorted(tuning_dir(results).iterdir()) if path.name not in MERGED_TUNING]
    cells = [choose(section, cell_id, candidates, prefer) for (section, cell_id), candidates in sorted(found.items())]
    studies = [studies_file(results) for results in inputs if studies_file(results).is_file()]
    return MergePlan(inputs, cells, saved_grids(inputs), studies, left_out, counts)


def saved_grids(inputs: Sequence[Path]) -> dict[str, Path]:
    """The saved grid files of all inputs by name (the first input's of each); ConfigError when two of one name
    differ, which their names (a hash of the text) rule out unless one was edited."""
    chosen: dict[str, Path] = {}
    for results in inputs:
        for path in sorted(grids_dir(results).glob("*")):
            first = chosen.setdefault(path.name, path)
            if path.is_file() and first != path and not filecmp.cmp(first, path, shallow=False):
                raise ConfigError(f"{first} and {path} have the same name but different text, although a saved grid "
                                  "is named by the hash of its text; remove the edited one and merge again.")
    return {name: path for name, path in chosen.items() if path.is_file()}


def place_file(source: Path, target: Path) -> bool:
    """`source` at `target`: a hard link (True) where the filesystem allows, else a copy with its times (False).

    A hard link shares the input's file; segbench replaces files by rename and never writes into one, so later runs
    into the merged folder leave the inputs as they were.
    """
    try:
        os.link(source, target)
        return True
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(source, target)
        return False


@dataclass
class Placed:
    """How many files a merge hard-linked and how many it copied."""

    linked: int = 0
    copied: int = 0

    def add(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if place_file(source, target):
            self.linked += 1
        else:
            self.copied += 1


def write_merge(plan: MergePlan, out: Path) -> Placed:
    """Build the merged folder beside `out` and rename it into place; nothing is left behind when it fails or is
    interrupted (SegbenchError for a failing filesystem, naming it). Returns how many files were linked and copied."""
    if plan.conflicts:
        raise SegbenchError(f"{len(plan.conflicts)} cells have differing ok records; settle them with --prefer.")
    out = Path(out)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.merging"
    try:
        staging.mkdir(parents=True)
    except OSError as exc:
        raise SegbenchError(f"cannot write beside --out {out} ({exc}); choose another folder.") from None
    placed = Placed()
    try:
        cells_dir(staging).mkdir()
        for choice in plan.cells:
            target = staging / choice.section / choice.cell_id
            target.mkdir(parents=True)
            for source in sorted(choice.kept.folder.rglob("*")):
                if source.is_dir():
                    (target / source.relative_to(choice.kept.folder)).mkdir(parents=True, exist_ok=True)
                else:
                    placed.add(source, target / source.relative_to(choice.kept.folder))
        for name, source in plan.grids.items():
            placed.add(source, grids_dir(staging) / name)
        if plan.studies:
            placed.add(plan.studies[0], studies_file(staging))
        os.replace(staging, out)
    except BaseException as exc:  # Ctrl-C included: no half-built folder stays behind
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise SegbenchError(f"merging into {out} failed ({exc}); nothing was written.") from None
        raise
    return placed
