"""`segbench report --html`: report.html beside report.md, from the same blocks, on written records of 8 cells
(2 models x 2 losses x 2 seeds) and a failed one, never trained. A class name and an error message carry markup:
the page must show them as text. The page is parsed with html.parser; a headless browser check runs only where
selenium, chromium and chromedriver are installed (it is skipped otherwise)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import segbench.analysis.report as report_module
from segbench.analysis.html_report import _Page
from segbench.analysis.writer import ReportWriter
from segbench.cli import app

from support.browser import check_report_page, chromium
from support.records import record, write_results

CLASSES = ["road", "<img src=x onerror=alert(1)>", "sky"]
ERROR = 'RuntimeError: <script>alert("boom")</script> & <b>not bold</b>'
CELLS = [record(f"{model}__resnet18__{loss}__synthetic__s{seed}", miou=base + (0.05 if loss == "focal" else 0)
                + 0.004 * seed, classes=CLASSES, quality=True)
         for model, base in (("unet", 0.50), ("fpn", 0.48)) for loss in ("ce", "focal") for seed in (0, 1)]
REASON = "no <i>kernel</i> for this op"
DEPLOYED_MS = {0: 8.0, 1: 6.5}


def deployment(seed: int, miou: float) -> dict:
    """Eager fp32, ONNX Runtime fp32 timed beside it, INT8 failed with a reason that carries markup."""
    timed = {"batch_1": {"latency_ms_p50": DEPLOYED_MS[seed], "ratio_to_eager": DEPLOYED_MS[seed] / 12.0,
                         "eager_latency_ms_p50": 12.0}, "batch_n": {"throughput_images_per_s": 300.0}}
    return {"threads": 1, "forms": [
        {"runtime": "torch", "precision": "fp32", "status": "reference", "miou": miou},
        {"runtime": "onnxruntime", "precision": "fp32", "status": "ok", "miou": miou, "miou_change": 0.0,
         "agreement": 1.0, "latency": timed},
        {"runtime": "onnxruntime", "precision": "int8", "status": "failed", "reason": REASON}]}


for seed, cell in enumerate(CELLS[:2]):  # unet/resnet18/ce at both seeds
    cell["deployment"] = deployment(seed, cell["metrics"]["miou"])
FAILED = record("fpn__resnet18__ce__synthetic__s2", status="failed", error_message=ERROR)
MAX_BYTES = 5_000_000


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def of(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bytes, str]]:
    """One report written twice into the same folder at a fixed time: without --html (its report.md kept), then with
    it through the CLI. Yields the output folder, the first report.md and the command's output."""
    root = tmp_path_factory.mktemp("html")
    results = write_results(root / "results", [*CELLS, FAILED], files=True)
    out = root / "report"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_module, "now_iso", lambda: "2026-12-07T00:00:00+00:00")
        plain = report_module.write_report(results, out).read_bytes()
        assert not (out / "report.html").exists()
        outcome = CliRunner().invoke(app, ["report", str(results), "--out", str(out), "--html"])
    assert outcome.exit_code == 0, outcome.output
    yield out, plain, outcome.output


@pytest.fixture(scope="module")
def page(written: tuple[Path, bytes, str]) -> str:
    return (written[0] / "report.html").read_text(encoding="utf-8")


def test_the_option_writes_the_page_beside_the_markdown(written):
    out, _, output = written
    assert (out / "report.html").is_file() and "report.html" in " ".join(output.split())
    assert "--html" in CliRunner().invoke(app, ["report", "--help"]).output


def test_markdown_is_the_same_bytes_with_and_without_html(written):
    out, plain, _ = written
    assert (out / "report.md").read_bytes() == plain


def test_a_report_without_the_option_removes_an_earlier_page(tmp_path: Path):
    results = write_results(tmp_path / "results", CELLS[:1])
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("<p>an earlier report</p>")
    report_module.write_report(results, out)
    assert not (out / "report.html").exists() and (out / "report.md").is_file()


def test_the_page_is_self_contained_and_small(page: str):
    size = len(page.encode("utf-8"))
    print(f"report.html of {len(CELLS)} cells and a failed one: {size / 1e6:.2f} MB")
    assert size < MAX_BYTES
    elements = Elements(page)
    links = [attrs.get("href") or "" for attrs in elements.of("a")] + [attrs.get("src") or "" for attrs in
                                                                        elements.of("img")]
    assert links and all(link.startswith(("data:", "#")) for link in links), [link[:60] for link in links
                                                                              if not link.startswith("data:")]
    assert not elements.of("link") and all("src" not in attrs for attrs in elements.of("script"))
    assert all(attrs["src"].startswith("data:image/png;base64,") for attrs in elements.of("img"))


def test_every_table_is_sortable_with_raw_values(page: str):
    elements = Elements(page)
    assert elements.of("table") and all(attrs.get("class") == "sortable" for attrs in elements.of("table"))
    cells = elements.of("td")
    assert cells and all("data-v" in attrs for attrs in cells)
    assert all(attrs.get("data-col") is not None for attrs in elements.of("th"))
    values = {attrs["data-v"] for attrs in cells}
    assert repr(max(c["metrics"]["miou"] for c in CELLS)) in values  # the leaderboard's raw mIoU, not "54.40"
    assert len(elements.of("input")) == len(elements.of("table"))  # a filter box per table
    loss = [attrs for attrs in elements.of("select") if attrs.get("class") == "table-select"]
    assert loss, "no select box for the categorical columns (status, axis, verdict, ...)"
    verdicts = [attrs["class"] for attrs in cells if "verdict" in (attrs.get("class") or "")]
    assert "verdict verdict-better" in verdicts  # focal beats ce by 5 points on both seeds


def test_text_from_records_is_escaped(page: str):
    elements = Elements(page)
    assert all("onerror" not in attrs for _, attrs in elements.tags)
    assert all(attrs.get("src", "").startswith("data:") for attrs in elements.of("img"))
    assert len(elements.of("script")) == 1 and not elements.of("b") and not elements.of("i")
    text = "".join(elements.text)
    assert CLASSES[1] in text and ERROR in text and REASON in text  # shown as text, exactly
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;script&gt;alert(&quot;boom&quot;)" in page


def test_the_cost_chart_draws_every_cell_on_each_axis(page: str):
    elements = Elements(page)
    layers = [attrs for attrs in elements.of("g") if attrs.get("class") == "chart-layer"]
    assert [layer["data-axis"] for layer in layers] == ["latency_ms_p50", "gmacs", "params", "train_time_s",
                                                        "deployed_latency_ms_p50"]
    assert [attrs.get("display") for attrs in layers] == [None, "none", "none", "none", "none"]
    points = [attrs for attrs in elements.of("circle") if attrs.get("class") == "point"]
    assert len(points) == len(CELLS) * 4 + 2  # the deployed latency where measured: two cells
    deployed = [p["data-label"] for p in points if "deployed" in p["data-label"]]
    assert sorted(deployed) == ["unet/resnet18/ce/s0: fastest deployed form, p50 b1 (ms) 8, val mIoU 0.5",
                                "unet/resnet18/ce/s1: fastest deployed form, p50 b1 (ms) 6.5, val mIoU 0.504"]
    assert all(70 <= float(p["cx"]) <= 700 and 30 <= float(p["cy"]) <= 370 for p in points)
    assert {p["data-label"].split(":")[0] for p in points} == {"unet/resnet18/ce/s0", "unet/resnet18/ce/s1",
                                                                "unet/resnet18/focal/s0", "unet/resnet18/focal/s1",
                                                                "fpn/resnet18/ce/s0", "fpn/resnet18/ce/s1",
                                                                "fpn/resnet18/focal/s0", "fpn/resnet18/focal/s1"}


def test_each_cell_row_links_to_its_details(page: str):
    elements = Elements(page)
    details = {attrs["id"] for attrs in elements.of("details")}
    assert len(details) == len(CELLS) + 1  # and the failed cell
    targets = {attrs["href"][1:] for attrs in elements.of("a") if attrs.get("class") == "cell-link"}
    assert targets == details  # every cell is linked from some table: ok ones from the leaderboard, failed ones
    failed = page.split(f'<summary>{FAILED["slug"]}</summary>')[1].split("</details>")[0]
    assert "Traceback" in failed and "&lt;script&gt;" in failed and "&quot;model&quot;: &quot;fpn&quot;" in failed


def test_rows_filter_by_the_axes_of_their_cells(page: str):
    """The leaderboard shows cells by label only; its rows still filter by model, loss and seed's other axes."""
    board = page.split('class="table-block"')[1]
    elements = Elements(board)
    selects = [chunk.split("</select>")[0] for chunk in board.split('data-facet="')[1:]]
    facets = {chunk.split('"')[0]: [o["value"] for o in Elements(chunk).of("option")] for chunk in selects}
    assert facets["model"] == ["", "fpn", "unet"] and facets["loss"] == ["", "ce", "focal"]
    assert "encoder" not in facets and "dataset" not in facets  # one value: nothing to choose
    rows = [attrs for attrs in elements.of("tr") if "data-f-model" in attrs]
    assert len(rows) == len(CELLS) and sorted(row["data-f-model"] for row in rows) == ["fpn"] * 4 + ["unet"] * 4
    assert {row["data-f-status"] for row in rows} == {"ok"}


def test_rows_of_cells_named_alike_on_two_datasets_still_filter_by_model(tmp_path: Path):
    """Leaderboard labels leave the dataset out, so each label names two cells here: the rows keep the axes both
    share (model, loss) and drop the one they do not (dataset); each dataset's leaderboard filters by model."""
    cells = [record(f"{model}__resnet18__ce__{dataset}__s0", miou=base) for model, base in (("unet", 0.5), ("fpn", 0.4))
             for dataset in ("synthetic", "camvid")]
    results = write_results(tmp_path / "results", cells)
    page = report_module.write_report(results, tmp_path / "report", html=True).with_name("report.html").read_text()
    boards = page.split('<h3 id="leaderboard')[1:]
    assert len(boards) == 2
    for board in boards:
        rows = [attrs for attrs in Elements(board.split("</table>")[0]).of("tr") if "data-f-model" in attrs]
        assert sorted(row["data-f-model"] for row in rows) == ["fpn", "unet"]
        assert all("data-f-dataset" not in row and row["data-f-loss"] == "ce" for row in rows)
        assert 'data-facet="model"' in board.split("</table>")[0]


def test_cell_details_show_curves_and_examples(page: str):
    """Each finished cell: its training loss and val mIoU per epoch drawn as SVG, and its 4 saved val examples as
    image | ground truth | prediction | error map strips; a failed cell has neither."""
    import base64
    import io

    from PIL import Image

    ok = page.split(f'<summary>{CELLS[0]["slug"]}</summary>')[1].split("</details>")[0]
    elements = Elements(ok)
    charts = [attrs["aria-label"] for attrs in elements.of("svg") if attrs.get("class") == "curve-chart"]
    assert charts == ["training loss", "val mIoU"]
    epochs = len(CELLS[0]["history"])
    assert len(elements.of("circle")) == epochs + sum(h.get("val_miou") is not None for h in CELLS[0]["history"])
    images = [attrs["src"] for attrs in elements.of("img")]
    assert len(images) == len(CELLS[0]["examples"]) == 4
    strip = Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1])))
    height, width = CELLS[0]["config"]["dataset"]["params"]["height"], CELLS[0]["config"]["dataset"]["params"]["width"]
    assert strip.size == (4 * width + 3 * 4, height) and strip.mode == "RGB"
    assert f"{CELLS[0]['examples'][0]['rank']}: {CELLS[0]['examples'][0]['sample_id']}" in ok
    failed = page.split(f'<summary>{FAILED["slug"]}</summary>')[1].split("</details>")[0]
    assert "curve-chart" not in failed and "<img" not in failed


def test_examples_stop_at_the_pages_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Past EXAMPLE_BYTES the best cells keep their images and the page says where the others' are."""
    import segbench.analysis.html_report as html_module

    results = write_results(tmp_path / "results", CELLS[:3], files=True)
    full = report_module.write_report(results, tmp_path / "full", html=True).with_name("report.html").read_text()
    one_cell = sum(len(attrs["src"]) - len("data:image/png;base64,")
                   for attrs in Elements(full.split('<h2 id="cell-details">')[1].split("</details>")[0]).of("img"))
    assert one_cell > 0
    monkeypatch.setattr(html_module, "EXAMPLE_BYTES", int(one_cell * 1.5))
    page = report_module.write_report(results, tmp_path / "cut", html=True).with_name("report.html").read_text()
    details = page.split('<h2 id="cell-details">')[1]
    assert "Val examples are embedded for 1 of the 3 cells" in details
    best = max(CELLS[:3], key=lambda c: c["metrics"]["miou"])["slug"]
    assert details.index(f"<summary>{best}</summary>") < details.index("<img") < details.index("not embedded")
    assert details.count("not embedded") == 2 and len(Elements(details).of("img")) == 4


def test_a_diverged_epoch_is_left_out_of_the_curves(tmp_path: Path):
    """A loss that became NaN or infinite is not drawn (nor does it break the axes); the other epochs are."""
    from segbench.analysis.html_report import _curve
    from segbench.records.schema import Record

    item = record("unet__resnet18__ce__synthetic__s0", miou=0.5, history_shares=[0.5, 0.8, 1.0])
    item["history"][1]["train_loss"] = float("inf")
    loss, miou = report_module.cell_details(Record.model_validate(item), tmp_path).curves
    assert [x for x, _ in loss.points] == [1, 3] and [x for x, _ in miou.points] == [1, 2, 3]
    drawn = Elements(_curve(loss))
    assert len(drawn.of("circle")) == 2 and "nan" not in _curve(loss) and "inf" not in _curve(loss)


def test_per_class_iou_is_a_heatmap(page: str):
    """The per-class table's cells are coloured by IoU: red at 0, green at 1 (hue 0 to 120)."""
    table = page.split('id="per-class-iou"')[1].split("</table>")[0]
    coloured = [(float(attrs["data-v"]), attrs["style"]) for attrs in Elements(table).of("td") if "style" in attrs]
    assert coloured and all(style == f"background:hsl({value * 120:.0f},70%,82%)" for value, style in coloured)
    assert "heat-legend" in table


def test_markdown_inline_text_becomes_safe_html(tmp_path: Path):
    page = _Page(ReportWriter(tmp_path, tmp_path))
    assert page.inline("**best** `a<b` and _(none)_") == "<strong>best</strong> <code>a&lt;b</code> and <em>(none)</em>"
    assert page.inline("[Seeds](#seeds)") == '<a href="#seeds">Seeds</a>'
    for target in ("https://example.com/x", "javascript:alert(1)", "../docs/metrics.md"):
        assert "<a" not in page.inline(f"[here]({target})")
    assert page.text(("- one", "- two", "", "> note")) == (
        "<ul><li>one</li><li>two</li></ul>\n<blockquote>note</blockquote>")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    driver = chromium(logs=True)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_in_a_browser_sorting_and_filtering_work(written, browser, tmp_path):
    """Headless chromium: the page opens from disk with no console error and no request outside the file, the
    leaderboard sorts by mIoU and filters to one model with its select box, then by text; a row's link opens its
    cell's details; a screenshot is saved under the test's folder. Skipped where selenium, chromium or chromedriver
    is missing, unless SEGBENCH_BROWSER_TEST=required (.ci/run sets it)."""
    board = check_report_page(browser, written[0] / "report.html", tmp_path / "report.png")
    shown = [row.text for row in board.find_elements("css selector", "tbody tr") if row.is_displayed()]
    assert len(shown) == 4 and all(text.startswith("fpn/") for text in shown)
    assert shown[0].startswith("fpn/resnet18/focal/s1")  # the best fpn cell first: sorted by mIoU, descending
    board.find_element("css selector", ".table-filter").send_keys("/s1")  # and the text box with it
    shown = [row.text for row in board.find_elements("css selector", "tbody tr") if row.is_displayed()]
    assert len(shown) == 2 and all(text.startswith(("fpn/resnet18/ce/s1", "fpn/resnet18/focal/s1")) for text in shown)


@pytest.mark.slow
def test_a_given_report_in_a_browser(browser, tmp_path):
    """`make html-check`: the same checks on the page named by SEGBENCH_HTML_PAGE (the quickstart's, after
    `make demo`); skipped where it is not set."""
    import os

    page = os.environ.get("SEGBENCH_HTML_PAGE")
    if not page:
        pytest.skip("SEGBENCH_HTML_PAGE is not set (make html-check sets it to the quickstart's report.html)")
    assert Path(page).is_file(), f"{page} does not exist: run make demo, then segbench report --html"
    check_report_page(browser, Path(page), tmp_path / "report.png")


def test_the_script_parses(tmp_path: Path):
    """The inline script is valid JavaScript (node --check), where node is installed."""
    import subprocess

    from segbench.analysis.html_assets import SCRIPT

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the script's syntax is not checked")
    script = tmp_path / "report.js"
    script.write_text(SCRIPT)
    checked = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
