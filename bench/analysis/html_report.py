"""The report as one self-contained HTML page (report.html): the writer's blocks (`analysis.writer`) rendered with
inline CSS and JS, figures as data: URIs, CSVs as data: downloads, every table sortable and filterable, and the
accuracy-vs-cost chart as inline SVG with one pre-drawn layer per x axis.

Safe to open: every text that comes from records, grid files or datasets is escaped (`html.escape`, quotes
included) in text and attributes; the only script is the page's own, which attaches its listeners by class; links go
to anchors of the page or data: URIs only. Nothing on the page requests anything from the network.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections import Counter
from html import escape, unescape
from typing import Any

import numpy as np
import pandas as pd

from segbench.analysis import figures, tables
from segbench.analysis.html_assets import SCRIPT, STYLE
from segbench.analysis.writer import (
    Block,
    CellDetails,
    Chart,
    Curve,
    Details,
    Figure,
    Heading,
    ReportWriter,
    Table,
    Text,
)

# Columns a table filters by a select box (one option per distinct value) besides its text box.
SELECT_COLUMNS = ("dataset", "model", "encoder", "loss", "weights", "status", "kind", "runtime", "precision",
                  "axis", "metric", "verdict", "machine")
CODE = re.compile(r"`([^`]+)`")
# The most bytes of val example images (base64) the page embeds, best cells first: 4 examples of a 96x192 synthetic
# image take about 0.2 MB, so the quickstart's 4 cells all fit and a 200-cell page stays under 8 MB.
EXAMPLE_BYTES = 1_500_000
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*")
ITALIC = re.compile(r"(?<![\w*])_(\S(?:.*?\S)?)_(?!\w)")


def render_html(writer: ReportWriter, title: str) -> str:
    """The writer's blocks as one HTML page that opens from disk without a network."""
    page = _Page(writer)
    body = "\n".join(page.block(block) for block in writer.blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n<script>{SCRIPT}</script>\n"
            "</body>\n</html>\n")


class _Page:
    """Renders blocks, numbering tables and charts and giving headings unique ids (GitHub's slugs, so the
    Markdown's contents links work here too)."""

    def __init__(self, writer: ReportWriter) -> None:
        self.writer = writer
        self.ids: dict[str, int] = {}
        self.count = 0
        # The anchor of each cell's details, by every name a table shows for it (slug, and label where no other
        # cell has it: labels leave out the dataset).
        named = [(name, f"cell-{number}") for block in writer.blocks if isinstance(block, Details)
                 for number, cell in enumerate(block.cells) for name in dict.fromkeys(cell.names)]
        counts = Counter(name for name, _ in named)
        self.cells = {name: anchor for name, anchor in named if counts[name] == 1}
        # The facets a table's row shows for the name in its `cell` column: those every cell of that name shares (a
        # label names one cell per dataset: its model, encoder and loss hold, its dataset does not).
        facets = {f"cell-{number}": dict(cell.facets) for block in writer.blocks if isinstance(block, Details)
                  for number, cell in enumerate(block.cells)}
        self.facets: dict[str, dict[str, str]] = {}
        for name, anchor in named:
            shared = self.facets.get(name, facets[anchor])
            self.facets[name] = {key: value for key, value in shared.items() if facets[anchor].get(key) == value}
        self.example_bytes = 0  # example images embedded so far (EXAMPLE_BYTES)

    def block(self, block: Block) -> str:
        if isinstance(block, Heading):
            level = min(block.level, 6)
            return f'<h{level} id="{escape(self.anchor(block.text))}">{self.inline(block.text)}</h{level}>'
        if isinstance(block, Text):
            return self.text(block.lines)
        if isinstance(block, Table):
            return self.table(block)
        if isinstance(block, Details):
            return self.details(block)
        if isinstance(block, Figure):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(block.caption)}">'
                    f"<figcaption>{escape(block.caption)}</figcaption></figure>")
        return self.chart(block)

    def anchor(self, text: str) -> str:
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        seen = self.ids.get(slug, 0)
        self.ids[slug] = seen + 1
        return slug if not seen else f"{slug}-{seen}"

    def inline(self, text: str) -> str:
        """Markdown inline text as safe HTML: escaped first, then `code`, **bold**, _italic_ and [links](#anchor)
        (a link to a CSV of the report becomes a data: download; any other target is shown as text)."""
        parts = CODE.split(escape(text))
        for index in range(0, len(parts), 2):
            part = ITALIC.sub(r"<em>\1</em>", BOLD.sub(r"<strong>\1</strong>", parts[index]))
            parts[index] = LINK.sub(self._link, part)
        for index in range(1, len(parts), 2):
            parts[index] = f"<code>{parts[index]}</code>"
        return "".join(parts)

    def _link(self, match: re.Match[str]) -> str:
        label, target = match[1], unescape(match[2])
        if target.startswith("#"):
            return f'<a href="{escape(target)}">{label}</a>'
        if target in self.writer.csvs:
            data = base64.b64encode(self.writer.csvs[target].read_bytes()).decode("ascii")
            return f'<a href="data:text/csv;base64,{data}" download="{escape(target)}">{label}</a>'
        return label if label == match[2] else f"{label} ({match[2]})"

    def text(self, lines: tuple[str, ...]) -> str:
        """Paragraphs (consecutive lines, as Markdown joins them), `- ` lists and `> ` quotes."""
        out: list[str] = []
        paragraph: list[str] = []
        items: list[str] = []

        def flush() -> None:
            if paragraph:
                out.append(f"<p>{self.inline(' '.join(paragraph))}</p>")
                paragraph.clear()
            if items:
                out.append("<ul>" + "".join(f"<li>{self.inline(item)}</li>" for item in items) + "</ul>")
                items.clear()

        for line in lines:
            if line.startswith("- "):
                if paragraph:
                    flush()
                items.append(line[2:])
            elif line.startswith("> "):
                flush()
                out.append(f"<blockquote>{self.inline(line[2:])}</blockquote>")
            elif not line.strip():
                flush()
            else:
                if items:
                    flush()
                paragraph.append(line)
        flush()
        return "\n".join(out)

    def table(self, block: Table) -> str:
        """A sortable table (click a header; `data-v` holds each cell's raw value) with a text filter and select
        boxes for the categorical columns of SELECT_COLUMNS; verdicts carry a class that colours them."""
        self.count += 1
        cells = tables.table_cells(block.shown, block.columns)
        raw = block.raw if len(block.raw) == len(block.shown) else block.shown.reset_index(drop=True)
        head = "".join(f'<th class="{"num" if name in cells.numeric else "text"}" data-col="{index}">'
                       f"{escape(header)}</th>"
                       for index, (name, header) in enumerate(zip(cells.names, cells.headers, strict=True)))
        # The facets of the cell each row shows (its model, encoder, loss...), by which its rows filter too.
        facets = [self.facets.get(str(raw["cell"].iloc[position]), {}) if "cell" in raw.columns else {}
                  for position in range(len(cells.rows))]
        rows = ["<tr" + "".join(f' data-f-{key}="{escape(value)}"' for key, value in facets[position].items()) + ">"
                + "".join(self._td(name, text, best, raw[name].iloc[position] if name in raw.columns else text,
                                   name in cells.numeric, block.heatmap)
                          for name, (text, best) in zip(cells.names, row, strict=True)) + "</tr>"
                for position, row in enumerate(cells.rows)]
        selects = []
        for index, (name, header) in enumerate(zip(cells.names, cells.headers, strict=True)):
            values = sorted({_sort_value(value) for value in raw[name]} - {""}) if name in raw.columns else []
            if name in SELECT_COLUMNS and 1 < len(values) <= 50:
                selects.append(_select(header, f'data-col="{index}"', values))
        for key in dict.fromkeys(key for row in facets for key in row):
            values = sorted({row[key] for row in facets if key in row})
            if key not in cells.names and 1 < len(values) <= 50:
                selects.append(_select(key, f'data-facet="{escape(key)}"', values))
        legend = ('<span class="heat-legend">coloured by value: <span class="heat-scale"></span> 0 to 100 %</span>'
                  if block.heatmap else "")
        csv = (f'<p class="csv">{self.inline(f"{block.csv_label}: [{block.csv}]({block.csv})")}</p>'
               if block.csv else "")
        return (f'<div class="table-block" id="table-{self.count}"><div class="table-tools">'
                f'<input type="search" class="table-filter" placeholder="filter rows" aria-label="filter rows">'
                f'{"".join(selects)}<span class="table-count"></span>{legend}</div>'
                f'<div class="table-scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table></div>{csv}</div>")

    def _td(self, name: str, text: str, best: bool, value: Any, numeric: bool = False, heat: bool = False) -> str:
        """One cell: its raw value in `data-v`, its text (bold where best), a link to the cell's details from the
        `cell` column, a class naming the verdict in a `verdict` column, class `num` in a numeric column (right
        aligned, never wrapped: a sort then lays the table out without breaking lines), and where `heat` (numeric
        cells) a background from red (0) to green (1) for its raw value."""
        shown = self.inline(text)
        if best:
            shown = f"<strong>{shown}</strong>"
        if name == "cell" and str(value) in self.cells:
            shown = f'<a class="cell-link" href="#{self.cells[str(value)]}">{shown}</a>'
        verdict = re.sub(r"\W+", "-", str(value)).strip("-")
        classes = (f' class="verdict verdict-{escape(verdict)}"' if name == "verdict" else
                   ' class="num"' if numeric else "")
        raw = _sort_value(value)
        if numeric and heat and raw:
            classes += f' style="background:{_heat(float(raw))}"'
        return f'<td data-v="{escape(raw)}"{classes}>{shown}</td>'

    def details(self, block: Details) -> str:
        """Each cell's details, closed until followed from one of its rows: its items, training curves and val
        examples (embedded while the page's examples stay under EXAMPLE_BYTES, best cells first)."""
        parts = [f'<h2 id="{self.anchor("Cell details")}">Cell details</h2>']
        embedded = [self._examples(cell) for cell in block.cells]
        shown = sum(bool(html) and "<img" in html for html in embedded)
        with_examples = sum(bool(cell.examples) for cell in block.cells)
        if shown < with_examples:
            parts.append(f"<p>Val examples are embedded for {shown} of the {with_examples} cells that saved some (the "
                         f"best first, up to {EXAMPLE_BYTES / 1e6:g} MB of images, to keep the page small); the "
                         "others are in each cell's <code>examples/</code> folder.</p>")
        for number, (cell, examples) in enumerate(zip(block.cells, embedded, strict=True)):
            items = "".join(f"<dt>{escape(name)}</dt><dd>"
                            + (f"<pre>{escape(text)}</pre>" if "\n" in text else escape(text)) + "</dd>"
                            for name, text in cell.items)
            curves = "".join(_curve(curve) for curve in cell.curves)
            curves = f'<div class="curves">{curves}</div>' if curves else ""
            parts.append(f'<details id="cell-{number}"><summary>{escape(cell.title)}</summary>'
                         f"<dl>{items}</dl>{curves}{examples}</details>")
        return "\n".join(parts)

    def _examples(self, cell: CellDetails) -> str:
        """A cell's val examples as strips of EXAMPLE_PANELS (PNG data: URIs), or where the page's budget is spent
        a sentence saying where they are."""
        if not cell.examples:
            return ""
        strips: list[tuple[str, str]] = []
        for example in cell.examples:
            if self.example_bytes + sum(len(data) for _, data in strips) > EXAMPLE_BYTES:
                break
            panels = figures.example_panels(example.record, example.cell_dir, example.example)
            strips.append((example.caption, _png(_strip(panels))))
        size = sum(len(data) for _, data in strips)
        if len(strips) < len(cell.examples) or self.example_bytes + size > EXAMPLE_BYTES:
            self.example_bytes = EXAMPLE_BYTES + 1  # spent: later cells are not drawn at all
            return (f'<p class="note">Val examples: not embedded (the page\'s budget for images is spent); see '
                    f"<code>{escape(cell.examples[0].cell_dir.name)}/examples/</code>.</p>")
        self.example_bytes += size
        head = " | ".join(figures.EXAMPLE_PANELS)
        return (f'<div class="examples"><p>Val examples, best and worst by pixel accuracy ({escape(head)}):</p>'
                + "".join(f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
                          f"<figcaption>{escape(caption)}</figcaption></figure>" for caption, data in strips)
                + "</div>")

    def chart(self, chart: Chart) -> str:
        """mIoU against a choice of cost: one SVG layer per x axis, drawn here from the raw numbers (points, ticks,
        Pareto front); the page's script shows the chosen layer and names the cell under the pointer."""
        self.count += 1
        width, height, left, right, top, bottom = 720, 420, 70, 20, 30, 50
        frame = chart.frame
        ys = pd.to_numeric(frame[chart.y], errors="coerce")
        y_scale = _Scale(ys.dropna().tolist(), height - bottom, top)
        parts = [f'<line class="frame" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>',
                 f'<line class="frame" x1="{left}" y1="{height - bottom}" x2="{width - right}" '
                 f'y2="{height - bottom}"/>',
                 f'<text class="label" transform="rotate(-90)" x="{-(top + height - bottom) / 2}" y="16" '
                 f'text-anchor="middle">{escape(chart.y_label)}</text>']
        for tick in y_scale.ticks():
            y = y_scale(tick)
            parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
                         f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick(tick)}</text>')
        options = []
        for number, (key, label) in enumerate(chart.axes.items()):
            xs = pd.to_numeric(frame[key], errors="coerce")
            points = [(str(cell), float(x), float(y)) for cell, x, y in zip(frame["cell"], xs, ys, strict=True)
                      if not (math.isnan(x) or math.isnan(y))]
            x_scale = _Scale([p[1] for p in points], left, width - right)
            layer = [f'<text class="label" x="{(left + width - right) / 2}" y="{height - 10}" '
                     f'text-anchor="middle">{escape(label)}</text>']
            for tick in x_scale.ticks():
                x = x_scale(tick)
                layer.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}"/>'
                             f'<text class="tick" x="{x:.1f}" y="{height - bottom + 16}" '
                             f'text-anchor="middle">{_tick(tick)}</text>')
            front = figures.pareto_front([p[1] for p in points], [p[2] for p in points])
            coordinates = " ".join(f"{x_scale(points[i][1]):.1f},{y_scale(points[i][2]):.1f}" for i in front)
            layer.append(f'<polyline class="front" points="{coordinates}"/>')
            for cell, x, y in points:
                name = f"{cell}: {label} {_tick(x)}, {chart.y_label} {_tick(y)}"
                layer.append(f'<circle class="point" cx="{x_scale(x):.1f}" cy="{y_scale(y):.1f}" r="5" '
                             f'data-label="{escape(name)}"><title>{escape(name)}</title></circle>')
            hidden = ' display="none"' if number else ""
            parts.append(f'<g class="chart-layer" data-axis="{escape(key)}"{hidden}>{"".join(layer)}</g>')
            options.append(f'<option value="{escape(key)}">{escape(label)}</option>')
        parts.append(f'<text class="chart-hover" x="{left + 8}" y="{top - 10}"></text>')
        return (f'<div class="chart" id="chart-{self.count}"><label>x axis <select class="chart-axis">'
                f'{"".join(options)}</select></label> <span class="note">hover a point for its cell; the line is '
                f'the Pareto front (lower cost, higher {escape(chart.y_label)})</span>'
                f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                f'aria-label="{escape(chart.y_label)} against cost">{"".join(parts)}</svg></div>')


def _select(label: str, attribute: str, values: list[str]) -> str:
    """A select box filtering a table's rows to one value (`attribute`: the column or facet it reads)."""
    options = "".join(f'<option value="{escape(value)}">{escape(value)}</option>' for value in values)
    return (f'<label>{escape(label)} <select class="table-select" {attribute}><option value="">all</option>'
            f"{options}</select></label>")


def _heat(value: float) -> str:
    """A light background from red (0) through yellow to green (1)."""
    return f"hsl({max(0.0, min(1.0, value)) * 120:.0f},70%,82%)"


def _curve(curve: Curve) -> str:
    """One training curve as a small SVG: the line, its points (value on hover) and ticks on both axes."""
    width, height, left, right, top, bottom = 340, 200, 52, 12, 24, 36
    xs, ys = [x for x, _ in curve.points], [y for _, y in curve.points]
    x_scale, y_scale = _Scale(xs, left, width - right), _Scale(ys, height - bottom, top)
    parts = [f'<text class="label" x="{left}" y="14">{escape(curve.title)}</text>',
             f'<line class="frame" x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}"/>',
             f'<line class="frame" x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}"/>',
             f'<text class="tick" x="{(left + width - right) / 2}" y="{height - 4}" '
             f'text-anchor="middle">{escape(curve.x_label)}</text>']
    for tick in y_scale.ticks(4):
        parts.append(f'<text class="tick" x="{left - 4}" y="{y_scale(tick) + 4:.1f}" text-anchor="end">'
                     f"{_tick(tick)}</text>")
    for tick in x_scale.ticks(5):
        if float(tick).is_integer() or curve.x_label != "epoch":
            parts.append(f'<text class="tick" x="{x_scale(tick):.1f}" y="{height - bottom + 14}" '
                         f'text-anchor="middle">{_tick(tick)}</text>')
    coordinates = " ".join(f"{x_scale(x):.1f},{y_scale(y):.1f}" for x, y in curve.points)
    parts.append(f'<polyline class="curve" points="{coordinates}"/>')
    parts.extend(f'<circle class="curve-point" cx="{x_scale(x):.1f}" cy="{y_scale(y):.1f}" r="3">'
                 f"<title>{escape(curve.x_label)} {_tick(x)}: {escape(curve.y_label)} {_tick(y)}</title></circle>"
                 for x, y in curve.points)
    return (f'<svg class="curve-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(curve.title)}">{"".join(parts)}</svg>')


def _strip(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of one height side by side, 4 white pixels apart."""
    gap = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
    joined: list[np.ndarray] = []
    for panel in panels:
        joined.extend([panel.astype(np.uint8), gap])
    return np.concatenate(joined[:-1], axis=1)


def _png(image: np.ndarray) -> str:
    """An RGB array as base64 PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class _Scale:
    """A linear map of `values` (padded by 5 %) onto the pixels [start, end]."""

    def __init__(self, values: list[float], start: float, end: float) -> None:
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        pad = (high - low) * 0.05 or abs(high) * 0.1 or 1.0
        self.low, self.high, self.start, self.end = low - pad, high + pad, start, end

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        step = 10 ** math.floor(math.log10((self.high - self.low) / count))
        step *= next(m for m in (1, 2, 5, 10) if (self.high - self.low) / (step * m) <= count + 1)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step) + 1)]


def _tick(value: float) -> str:
    """3 significant digits, with k/M/G above a thousand: "0.512", "24.5M"."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _sort_value(value: Any) -> str:
    """A cell's raw value as the table's script sorts it: numbers in full precision, "" when missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and pd.api.types.is_integer_dtype(value.dtype)):
        return str(int(value))
    if isinstance(value, float) or (hasattr(value, "dtype") and pd.api.types.is_float_dtype(value.dtype)):
        return repr(float(value))
    return str(value)
