"""Benchmarks of segbench itself (`make bench`): each compares segbench with a plain alternative measured in the same
run and reports the ratio (segbench time / alternative time) against a target; a missed target fails its benchmark,
so `make bench` exits non-zero. The ratios are printed together at the end of the session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Ratio:
    name: str
    ratio: float
    target: float | None  # the largest acceptable ratio; None: reported only
    detail: str

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "met" if self.ratio <= self.target else "MISSED"


RATIOS: list[Ratio] = []

ReportRatio = Callable[[str, float, float | None, str], None]


@pytest.fixture
def report_ratio(benchmark) -> ReportRatio:
    """Record `ratio` against `target` (the largest acceptable ratio, or None to report it only) and fail the
    benchmark when the target is missed."""

    def record(name: str, ratio: float, target: float | None, detail: str) -> None:
        benchmark.extra_info.update(ratio=ratio, target=target, detail=detail)
        result = Ratio(name, ratio, target, detail)
        RATIOS.append(result)
        assert result.verdict != "MISSED", f"{name}: ratio {ratio:.3f} is above its target {target:.3f} ({detail})"

    return record


@dataclass(frozen=True)
class Limit:
    name: str
    value: float
    limit: float  # the largest acceptable value
    unit: str
    detail: str

    @property
    def verdict(self) -> str:
        return "met" if self.value <= self.limit else "MISSED"


LIMITS: list[Limit] = []

ReportLimit = Callable[[str, float, float, str, str], None]


@pytest.fixture
def report_limit(benchmark) -> ReportLimit:
    """Record an absolute measurement (a page's size, a browser's time) against its limit and fail the benchmark
    when it is above it: for what has no plain alternative to time beside it."""

    def record(name: str, value: float, limit: float, unit: str, detail: str) -> None:
        benchmark.extra_info.update(value=value, limit=limit, unit=unit, detail=detail)
        result = Limit(name, value, limit, unit, detail)
        LIMITS.append(result)
        assert result.verdict != "MISSED", f"{name}: {value:.3g} {unit} is above its limit {limit:g} {unit} ({detail})"

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if LIMITS:
        terminalreporter.section("segbench against absolute limits")
        for result in LIMITS:
            terminalreporter.write_line(f"{result.name:<30} {result.value:8.3g} {result.unit:<3} limit "
                                        f"{result.limit:<6g} {result.verdict:<6}  {result.detail}")
    if not RATIOS:
        return
    terminalreporter.section("segbench vs alternatives (ratio = segbench time / alternative time, same run)")
    for result in RATIOS:
        target = "no target" if result.target is None else f"target <= {result.target:.3f}"
        terminalreporter.write_line(f"{result.name:<30} {result.ratio:6.3f}   {target:<16} {result.verdict:<6}  "
                                    f"{result.detail}")
