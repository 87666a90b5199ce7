"""The report's writer: the sections as structured blocks (headings, Markdown text, tables, figures, charts) in
order, with their figures and CSV files under one output folder, rendered as Markdown here and as HTML by
`analysis.html_report` (charts and per-cell details in HTML only). Its own module, so the report and the sections
it calls (seeds, comparisons) all import it without importing each other; what a section says is written once,
through `add`, `table`, `figure`, `chart` and `details`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from segbench.analysis import tables
from segbench.records.schema import Example, Record

HEADING = re.compile(r"^(#{1,6}) (.+)$")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    gap: bool = True  # an empty line follows in Markdown (the last line of one `add`)


@dataclass(frozen=True)
class Text:
    """Markdown lines: paragraphs, `- ` lists, `> ` quotes; `""` separates paragraphs."""

    lines: tuple[str, ...]
    gap: bool = True


@dataclass(frozen=True)
class Table:
    """`raw` in raw units (the CSV's rows, row for row with `shown`), `shown` as the table shows it, `columns` how
    (None: every column of `shown`, formatted by `tables.auto_format`)."""

    raw: pd.DataFrame
    shown: pd.DataFrame
    columns: dict[str, tables.Column] | None
    csv: str | None = None
    csv_label: str = "CSV (raw units)"
    heatmap: bool = False  # HTML: numeric cells coloured by their raw value, a fraction in [0, 1]

    @property
    def names(self) -> list[str]:
        """The shown columns in order, as `tables.markdown_table` picks them."""
        return [name for name in (self.columns or self.shown.columns) if name in self.shown.columns]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str
    link: str  # the path relative to report.md


@dataclass(frozen=True)
class Chart:
    """Points to plot against a choice of x axis (HTML only; Markdown has the static figure): `frame` holds a
    "cell" column, `y` and every column of `axes` ({column: axis label}) in raw units."""

    frame: pd.DataFrame
    y: str
    y_label: str
    axes: dict[str, str]


@dataclass(frozen=True)
class Curve:
    """One line of a cell's training history: (x, y) points in raw units."""

    title: str
    x_label: str
    y_label: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ExampleImages:
    """One saved val example of a cell, drawn (`figures.example_panels`) only where the HTML page shows it."""

    caption: str
    record: Record
    cell_dir: Path
    example: Example


@dataclass(frozen=True)
class CellDetails:
    """One cell as the HTML report details it: `names` (its label and slug) are the texts by which a table's `cell`
    column links to it; `facets` ((axis, value): dataset, model, encoder, loss, weights, status, machine) are what
    the rows of any table showing the cell can be filtered by; `items` are (name, text) pairs, a text of several
    lines shown preformatted; `curves` its training history; `examples` its best and worst val images."""

    names: tuple[str, ...]
    title: str
    items: tuple[tuple[str, str], ...]
    facets: tuple[tuple[str, str], ...] = ()
    curves: tuple[Curve, ...] = ()
    examples: tuple[ExampleImages, ...] = ()


@dataclass(frozen=True)
class Details:
    """Every cell's details (HTML only: report.md has its tables and the records themselves)."""

    cells: tuple[CellDetails, ...]


Block = Heading | Text | Table | Figure | Chart | Details


class ReportWriter:
    """Collects a report's blocks in order, and writes its figures and CSV files under one output folder."""

    def __init__(self, results: Path, out: Path) -> None:
        self.results, self.out = results, out
        self.figures_dir = out / "figures"
        self.blocks: list[Block] = []
        self.written: list[Path] = []
        self.csvs: dict[str, Path] = {}

    def add(self, *lines: str) -> None:
        """Markdown lines, ending a paragraph; a line `#... text` is a heading."""
        blocks: list[Heading | Text] = []
        text: list[str] = []
        for line in lines:
            heading = HEADING.match(line)
            if heading is None:
                text.append(line)
                continue
            if text:
                blocks.append(Text(tuple(text), gap=False))
                text = []
            blocks.append(Heading(len(heading[1]), heading[2], gap=False))
        if text or not blocks:
            blocks.append(Text(tuple(text), gap=False))
        blocks[-1] = replace(blocks[-1], gap=True)
        self.blocks.extend(blocks)

    def csv(self, frame: pd.DataFrame, name: str) -> str:
        """Write `frame` as the CSV `name` (its index too where named); returns a Markdown link to it."""
        path = self.out / name
        frame.to_csv(path, index=frame.index.name is not None)
        self.written.append(path)
        self.csvs[name] = path
        return f"[{name}]({name})"

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None:
            return
        self.written.append(path)
        self.blocks.append(Figure(path, caption, path.relative_to(self.out).as_posix()))

    def chart(self, frame: pd.DataFrame, y: str, y_label: str, axes: dict[str, str]) -> None:
        self.blocks.append(Chart(frame, y, y_label, axes))

    def details(self, cells: list[CellDetails]) -> None:
        self.blocks.append(Details(tuple(cells)))

    def table(self, frame: pd.DataFrame, columns: dict[str, tables.Column] | None, csv_name: str | None,
              shown: pd.DataFrame | None = None, csv_label: str = "CSV (raw units)", heatmap: bool = False) -> None:
        """`frame` as CSV (raw units) and, or `shown` where given (row for row), as a table."""
        if frame.empty:
            self.add("_(none)_")
            return
        if csv_name:
            self.csv(frame, csv_name)
        raw = frame.reset_index(drop=frame.index.name is None)
        self.blocks.append(Table(raw, frame if shown is None else shown, columns, csv_name, csv_label, heatmap))

    def markdown(self) -> str:
        """The report as Markdown: report.md."""
        lines: list[str] = []
        for block in self.blocks:
            lines.extend(markdown_lines(block))
        return "\n".join(lines)


def markdown_lines(block: Block) -> list[str]:
    """One block's lines of report.md, with the empty line that ends it."""
    if isinstance(block, Heading):
        return [f"{'#' * block.level} {block.text}", *([""] if block.gap else [])]
    if isinstance(block, Text):
        return [*block.lines, *([""] if block.gap else [])]
    if isinstance(block, Table):
        link = [f"{block.csv_label}: [{block.csv}]({block.csv})", ""] if block.csv else []
        return [tables.markdown_table(block.shown, block.columns), "", *link]
    if isinstance(block, Figure):
        return [f"![{block.caption}]({block.link})", ""]
    return []  # charts and cell details are in the HTML report only
