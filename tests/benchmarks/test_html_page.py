"""The HTML report of 200 cells (`segbench report --html`, issue 25: "a 200-cell report loads and sorts without a
visible wait"), measured against absolute limits (`make bench`): its size, and in headless chromium its load, a sort
of the 200-row leaderboard and a filter to one model.

The cells are written records (5 models x 5 encoders x 2 losses x 4 seeds, each with its 4 val example images and
3 epochs of history), never trained. Times are taken inside the page (`performance.now()` around a dispatched click
or change event and a forced layout), so WebDriver's round trips are not in them. Limits, for a 2-core machine up to
twice as slow as ours: a sort or filter within 200 ms (Nielsen, "Response Times: The 3 Important Limits", 1993: 0.1 s
feels instantaneous, 1 s keeps the user's flow; a sort measured a median 70-100 ms here on a quiet machine, most of
it the browser laying out the re-ordered 200-row table), the page ready (DOMContentLoaded) within 3 s from disk (0.7-0.9
s here), the file under 10 MB (8.0 MB).
Skipped, with the reason, where selenium, chromium or chromedriver is missing (support.browser)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from support.browser import chromium
from support.records import record, write_results

MODELS = ("unet", "fpn", "linknet", "pspnet", "deeplabv3plus")
ENCODERS = ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0", "resnext50_32x4d")
SIZE_MB, READY_MS, SCRIPT_MS = 10.0, 3000.0, 200.0
# Dispatch an event on an element and force the layout it causes; returns the milliseconds this took in the page.
TIMED = """
const [element, kind] = arguments;
const start = performance.now();
if (kind === "click") { element.click(); } else { element.dispatchEvent(new Event("change")); }
document.body.offsetHeight;
return performance.now() - start;
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segbench.analysis.report import write_report

    root = tmp_path_factory.mktemp("page200")
    cells = [record(f"{model}__{encoder}__{loss}__synthetic__s{seed}",
                    miou=0.3 + 0.01 * ((7 * m + 3 * e + 2 * k + seed) % 20))
             for m, model in enumerate(MODELS) for e, encoder in enumerate(ENCODERS)
             for k, loss in enumerate(("ce", "focal")) for seed in range(4)]
    results = write_results(root / "results", cells, files=True)
    return write_report(results, root / "report", html=True).with_name("report.html")


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_the_200_cell_page_is_small(benchmark, report_limit, page: Path):
    size = benchmark.pedantic(lambda: page.stat().st_size / 1e6, rounds=1, iterations=1)
    report_limit("report.html, 200 cells", size, SIZE_MB, "MB", "file size, 4 val examples per cell saved")


def test_the_200_cell_page_loads_sorts_and_filters_at_once(benchmark, report_limit, page: Path, browser):
    from selenium.webdriver.support.ui import Select

    def measure() -> dict[str, float]:
        browser.get(page.as_uri())
        ready = browser.execute_script("return performance.getEntriesByType('navigation')[0]"
                                       ".domContentLoadedEventEnd")
        board = browser.find_element("css selector", ".table-block")
        assert len(board.find_elements("css selector", "tbody tr")) == 200
        header = board.find_elements("css selector", "th")[1]  # mIoU
        sort = statistics.median(browser.execute_script(TIMED, header, "click") for _ in range(5))
        select = board.find_element("css selector", 'select[data-facet="model"]')
        Select(select).select_by_value("fpn")  # selecting fires the filter once; time it again, dispatched
        filtered = browser.execute_script(TIMED, select, "change")
        shown = [row for row in board.find_elements("css selector", "tbody tr") if row.is_displayed()]
        assert len(shown) == 40
        assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        return {"ready": ready, "sort": sort, "filter": filtered}

    times = benchmark.pedantic(measure, rounds=1, iterations=1)
    report_limit("200-cell page ready", times["ready"], READY_MS, "ms", "DOMContentLoaded, from disk")
    report_limit("200-row sort", times["sort"], SCRIPT_MS, "ms", "median of 5 clicks on the mIoU header, with layout")
    report_limit("200-row filter", times["filter"], SCRIPT_MS, "ms", "one model of 5 by its select box, with layout")
