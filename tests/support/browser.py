"""Headless chromium for the HTML report's checks (tests/test_report_html.py, tests/benchmarks/test_html_page.py):
Debian's `chromium` with its version-matched `chromium-driver`, driven by Selenium, and the checks every report page
must pass in it.

Where selenium, chromium or chromedriver is missing the caller is skipped with the reason, unless
SEGBENCH_BROWSER_TEST=required (.ci/run sets it once it has installed them), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest


def chromium(*, logs: bool = False) -> Any:
    """A headless chromium WebDriver (logs: keep the console and network logs), or skip/fail saying what is missing."""
    required = os.environ.get("SEGBENCH_BROWSER_TEST") == "required"

    def unavailable(reason: str) -> None:
        if required:
            pytest.fail(f"{reason}, and SEGBENCH_BROWSER_TEST=required")
        pytest.skip(reason)

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed: no browser check")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        unavailable("chromium and chromedriver are not installed (Debian: apt-get install chromium "
                    "chromium-driver): no browser check")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")  # Debian's, with its own driver: Selenium Manager (which
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):  # would look
        options.add_argument(argument)  # for a browser online) is not asked
    if logs:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))


def check_report_page(driver: Any, page: Path, screenshot: Path) -> Any:
    """Open a report.html from disk in `driver` (made with logs=True) and check what any report page must do: the
    first table (the leaderboard) sorts by its second column (mIoU), descending on the second click, by the rows' raw
    values; its model select box keeps exactly the rows of that model; a row's link opens the cell's details; no
    console error; no request outside the file. Saves a screenshot; returns the leaderboard's element, sorted and
    filtered to its first model."""
    from selenium.webdriver.support.ui import Select

    uri = page.resolve().as_uri()
    driver.get(uri)
    board = driver.find_element("css selector", ".table-block")
    rows = board.find_elements("css selector", "tbody tr")
    header = board.find_elements("css selector", "th")[1]
    header.click()
    header.click()  # descending
    values = [row.find_elements("css selector", "td")[1].get_attribute("data-v")
              for row in board.find_elements("css selector", "tbody tr")]
    numbers = [float(value) for value in values if value]
    assert numbers == sorted(numbers, reverse=True) and values[len(numbers):] == [""] * (len(values) - len(numbers))
    models = [row.get_attribute("data-f-model") for row in rows]
    select = board.find_elements("css selector", 'select[data-facet="model"]')
    if len(set(models)) > 1:  # a select box exactly where the rows differ in model
        (select,) = select
        model = sorted(set(models))[0]
        Select(select).select_by_value(model)
        shown = [row for row in board.find_elements("css selector", "tbody tr") if row.is_displayed()]
        assert len(shown) == models.count(model) and {row.get_attribute("data-f-model") for row in shown} == {model}
        assert board.find_element("css selector", ".table-count").text == f"{len(shown)} of {len(rows)} rows"
    else:
        assert not select
    link = next(link for link in driver.find_elements("css selector", "a.cell-link") if link.is_displayed())
    target = link.get_attribute("href").split("#")[1]
    link.click()
    assert driver.find_element("id", target).get_attribute("open") is not None
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    requested = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    urls = {event["params"]["request"]["url"] for event in requested if event["method"] == "Network.requestWillBeSent"}
    assert urls and all(url.split("#")[0] == uri or url.startswith("data:") for url in urls), urls
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
    return board
