"""Benchmarks of segbench itself (`make bench`): each compares segbench with a plain alternative measured in the same
run and reports the ratio; the ratios are printed at the end of the session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

RATIOS: list[tuple[str, float, str, bool]] = []  # name, ratio, target, met


@pytest.fixture
def report_ratio(benchmark) -> Callable[[str, float, float, str], None]:
    """Record `ratio` (segbench / alternative) against `target` (the largest acceptable ratio)."""

    def record(name: str, ratio: float, target: float, detail: str) -> None:
        benchmark.extra_info.update(ratio=ratio, target=target, detail=detail)
        RATIOS.append((name, ratio, f"<= {target:.2f} ({detail})", ratio <= target))

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not RATIOS:
        return
    terminalreporter.section("segbench vs alternatives (ratio = segbench / alternative, same run)")
    for name, ratio, target, met in RATIOS:
        terminalreporter.write_line(f"{name:<28} {ratio:6.3f}   target {target}   {'met' if met else 'MISSED'}")
