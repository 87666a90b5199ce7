"""The report's writer: Markdown sections, figures and CSV files under one output folder. Its own module, so the
report and the sections it calls (seeds, comparisons) all import it without importing each other."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segbench.analysis import tables


class ReportWriter:
    """Collects Markdown sections, figures and CSV files under one output folder."""

    def __init__(self, results: Path, out: Path) -> None:
        self.results, self.out = results, out
        self.figures_dir = out / "figures"
        self.lines: list[str] = []
        self.written: list[Path] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        self.lines.append("")

    def csv(self, frame: pd.DataFrame, name: str) -> str:
        path = self.out / name
        frame.to_csv(path, index=frame.index.name is not None)
        self.written.append(path)
        return f"[{name}]({name})"

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None:
            return
        self.written.append(path)
        self.add(f"![{caption}]({path.relative_to(self.out).as_posix()})")

    def table(self, frame: pd.DataFrame, columns: dict[str, tables.Column] | None, csv_name: str | None,
              shown: pd.DataFrame | None = None) -> None:
        """`frame` as CSV (raw units) and, or `shown` where given, as a Markdown table."""
        if frame.empty:
            self.add("_(none)_")
            return
        self.add(tables.markdown_table(frame if shown is None else shown, columns))
        if csv_name:
            self.add(f"CSV (raw units): {self.csv(frame, csv_name)}")
