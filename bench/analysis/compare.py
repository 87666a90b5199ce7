"""Compare two summaries cell by cell and gate regressions with small check objects.

A check `FIELD:THRESHOLD` names a numeric summary field and how far it may move in the direction of a regression:
the sign is that direction. `miou:-0.02` fails when mIoU drops by more than 0.02 (absolute); `gmacs:+0%` fails on any
increase of GMACs; `latency_ratio:+25%` fails when the latency ratio grows by more than 25 % (relative). Cells whose
config hashes differ were measured under different settings: they are "not comparable", never regressions, but a
gate that could not compare a baseline cell fails unless that is allowed (otherwise any change of hash would leave
the gate checking nothing).

Seeds: where a configuration (slugs that differ only by `__s<seed>`) has two or more comparable seeds, each checked
field is gated once on its mean over those seeds: it fails only when the mean's change passes the threshold AND the
current mean lies outside the baseline's seed spread, the 95 % prediction interval for one more baseline seed
(mean +- t(0.975, n-1) x sd x sqrt(1 + 1/n); docs/report.md says why). Single-seed configurations are gated cell by
cell, as before.

Machines: clock-timed fields (latency_ratio, latency and training times: the catalogue's `timed` entries) are gated
only where both sides were timed on machines with the same fingerprint; elsewhere their rows say "not gated" and why,
and `Comparison.latency` says it once for the whole comparison (segbench.analysis.latency_gate).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from segbench.analysis.latency_gate import LatencyGating, is_timed, timed_specs, ungated_reason
from segbench.analysis.statistics import prediction_interval
from segbench.errors import ConfigError
from segbench.metrics.catalogue import SUMMARY_FIELDS
from segbench.records.rows import configuration_slug
from segbench.registry import did_you_mean

SPEC = re.compile(r"^(?P<field>[a-z0-9_]+):(?P<sign>[+-])(?P<amount>\d+(?:\.\d*)?|\.\d+)(?P<percent>%?)$")
SHOWN_FIELDS = ("miou", "pixel_accuracy", "params", "gmacs", "latency_ratio")


@dataclass(frozen=True)
class Check:
    """A regression threshold on one field. direction: +1 when an increase is the regression, -1 a decrease."""

    field: str
    direction: int
    amount: float
    relative: bool

    @property
    def spec(self) -> str:
        sign = "+" if self.direction > 0 else "-"
        return f"{self.field}:{sign}{self.amount:g}{'%' if self.relative else ''}"

    def regressed(self, base: float, current: float) -> bool:
        """Whether moving from `base` to `current` goes further in the regression direction than allowed."""
        change = (current - base) * self.direction  # positive = towards the regression
        if not self.relative:
            return change > self.amount + 1e-12
        if base == 0:
            return change > 0
        return change / abs(base) * 100 > self.amount + 1e-9


def parse_check(text: str) -> Check:
    """Parse `FIELD:[+-]AMOUNT[%]`; a malformed spec or an unknown field is a ConfigError (exit 2)."""
    match = SPEC.match(text.strip())
    if match is None:
        raise ConfigError(
            f"--fail-on '{text}' is not FIELD:[+-]AMOUNT[%]; write e.g. miou:-0.02 (absolute drop) or gmacs:+0% "
            "(relative rise), the sign being the direction of a regression."
        )
    name = match["field"]
    if name not in SUMMARY_FIELDS:
        choices = sorted(SUMMARY_FIELDS)
        raise ConfigError(f"--fail-on '{text}' names an unknown field '{name}'{did_you_mean(name, choices)}; "
                          f"valid fields: {', '.join(choices)}.")
    return Check(name, +1 if match["sign"] == "+" else -1, float(match["amount"]), bool(match["percent"]))


@dataclass(frozen=True)
class Failure:
    """One failed check. cell: a slug, or "<configuration> (mean of n seeds)" for a check on seed means, which
    also carries the baseline's seed spread (low, high)."""

    cell: str
    field: str
    base: Any
    current: Any
    threshold: str
    spread: tuple[float, float] | None = None

    @property
    def message(self) -> str:
        if self.field == "status":
            return f"{self.cell}: status went from {self.base} to {self.current} ({self.threshold})"
        text = (f"{self.cell}: {self.field} went from {format_value(self.base)} to {format_value(self.current)} "
                f"({describe_change(self.base, self.current)}), beyond the threshold {self.threshold}")
        if self.spread is not None:
            text += (f" and outside the baseline's seed spread [{format_value(self.spread[0])}, "
                     f"{format_value(self.spread[1])}]")
        return text


@dataclass
class Comparison:
    """Per-cell outcome: compared rows, cells that are not comparable, cells missing on one side, failures."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # cell, field, base, current, verdict
    not_comparable: list[dict[str, Any]] = field(default_factory=list)
    missing_in_current: list[str] = field(default_factory=list)
    missing_in_base: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    compared: int = 0
    seed_gated: list[str] = field(default_factory=list)  # configurations whose checks ran on seed means
    allow_not_comparable: bool = False
    latency: LatencyGating = field(default_factory=LatencyGating)  # where timed fields were gated, and why not

    @property
    def not_comparable_failure(self) -> str | None:
        """One sentence when baseline cells had no comparable counterpart and that was not allowed, else None."""
        count = len(self.not_comparable)
        if not count or self.allow_not_comparable:
            return None
        cells = "1 baseline cell has" if count == 1 else f"{count} baseline cells have"
        return (f"{cells} no comparable counterpart (other config hashes): the gate compared nothing for "
                f"{'it' if count == 1 else 'them'}; refresh the baseline with `make baseline` after an intended "
                "change, or pass --allow-not-comparable.")

    @property
    def exit_code(self) -> int:
        return 1 if self.failures or self.not_comparable_failure else 0


def _defined(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def format_value(value: Any) -> str:
    if not _defined(value):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(value)
    return f"{value:.4f}" if magnitude < 1000 else f"{value:,.1f}"


def describe_change(base: Any, current: Any) -> str:
    if not (_defined(base) and _defined(current)):
        return ""
    delta = current - base
    text = f"{delta:+,}" if isinstance(delta, int) else f"{delta:+.4g}"
    if base:
        text += f", {delta / abs(base) * 100:+.1f}%"
    return text


def _seed_groups(base_cells: dict[str, Any], current_cells: dict[str, Any], slugs: list[str]) -> dict[str, list[str]]:
    """Configurations with two or more comparable seeds, ok on both sides: {configuration slug: [cell slugs]}."""
    groups: dict[str, list[str]] = {}
    for slug in slugs:
        if base_cells[slug]["status"] == "ok" and current_cells[slug]["status"] == "ok":
            groups.setdefault(configuration_slug(slug), []).append(slug)
    return {configuration: members for configuration, members in groups.items() if len(members) >= 2}


def _gate_seed_means(outcome: Comparison, configuration: str, before: list[dict[str, Any]],
                     after: list[dict[str, Any]], check: Check) -> dict[str, Any] | None:
    """Gate one field on its mean over the seeds of one configuration (a failure goes into `outcome`); returns the
    row to show, or None when fewer than two seeds have the field on both sides."""
    pairs = [(b.get(check.field), a.get(check.field)) for b, a in zip(before, after, strict=True)]
    pairs = [(old, new) for old, new in pairs if _defined(old) and _defined(new)]
    if len(pairs) < 2:
        return None
    old_mean = sum(old for old, _ in pairs) / len(pairs)
    new_mean = sum(new for _, new in pairs) / len(pairs)
    low, high = prediction_interval([old for old, _ in pairs])
    outside = not low - 1e-12 <= new_mean <= high + 1e-12
    passed_threshold = check.regressed(old_mean, new_mean)
    verdict = "FAIL" if passed_threshold and outside else "noise" if passed_threshold else "ok"
    label = f"{configuration} (mean of {len(pairs)} seeds)"
    if verdict == "FAIL":
        outcome.failures.append(Failure(label, check.field, old_mean, new_mean, check.spec, (low, high)))
    return {"cell": label, "field": check.field, "base": old_mean, "current": new_mean,
            "change": describe_change(old_mean, new_mean),
            "check": f"{check.spec}, spread [{format_value(low)}, {format_value(high)}]", "verdict": verdict}


def compare_summaries(base: dict[str, Any], current: dict[str, Any], checks: list[Check],
                      fail_on_missing: bool = False, allow_not_comparable: bool = False) -> Comparison:
    """Compare every cell present in both summaries; run `checks` on cells with the same config hash.

    Cells present on both sides with different config hashes fail the comparison unless `allow_not_comparable`.
    Checks on configurations with two or more comparable seeds run on the seed means (see the module docstring);
    their cells' rows show the values with the verdict "seeds".
    """
    outcome = Comparison(allow_not_comparable=allow_not_comparable)
    outcome.latency.timed_checks = timed_specs((check.field, check.spec) for check in checks)
    base_cells, current_cells = base["cells"], current["cells"]
    outcome.missing_in_current = sorted(set(base_cells) - set(current_cells))
    outcome.missing_in_base = sorted(set(current_cells) - set(base_cells))
    if fail_on_missing:
        outcome.failures += [Failure(slug, "status", "present", "missing", "--fail-on-missing")
                             for slug in outcome.missing_in_current]
    by_field = {check.field: check for check in checks}
    fields = list(SHOWN_FIELDS) + [name for name in by_field if name not in SHOWN_FIELDS]
    comparable = []
    for slug in sorted(set(base_cells) & set(current_cells)):
        if base_cells[slug]["config_hash"] != current_cells[slug]["config_hash"]:
            outcome.not_comparable.append({"cell": slug, "base_hash": base_cells[slug]["config_hash"],
                                           "current_hash": current_cells[slug]["config_hash"]})
        else:
            comparable.append(slug)
    seed_gated: set[tuple[str, str]] = set()  # (slug, field) checked on its configuration's seed mean
    mean_rows: list[dict[str, Any]] = []
    for configuration, members in _seed_groups(base_cells, current_cells, comparable).items():
        before, after = [base_cells[s] for s in members], [current_cells[s] for s in members]
        other_machine = any(ungated_reason(b, a) for b, a in zip(before, after, strict=True))
        group_checks = [check for check in checks if not (other_machine and is_timed(check.field))]
        rows = [row for check in group_checks
                if (row := _gate_seed_means(outcome, configuration, before, after, check))]
        seed_gated |= {(slug, row["field"]) for slug in members for row in rows}
        if any(is_timed(row["field"]) for row in rows):
            outcome.latency.gated += members
        mean_rows += rows
        if rows:
            outcome.seed_gated.append(configuration)
    for slug in comparable:
        before, after = base_cells[slug], current_cells[slug]
        outcome.compared += 1
        outcome.latency.note(before, after, (base, current))
        ungated = ungated_reason(before, after)
        if before["status"] == "ok" and after["status"] != "ok":
            outcome.failures.append(Failure(slug, "status", before["status"], after["status"],
                                            f"error: {after.get('error')}"))
        for name in fields:
            check = by_field.get(name)
            old, new = before.get(name), after.get(name)
            verdict = ""
            if (slug, name) in seed_gated:
                verdict = "seeds"  # decided on the configuration's mean, in its own row
            elif check is not None and is_timed(name) and ungated is not None:
                verdict = f"not gated: {ungated}"
                outcome.latency.not_gated[slug] = ungated
            elif check is not None and _defined(old) and _defined(new):
                verdict = "FAIL" if check.regressed(old, new) else "ok"
                if is_timed(name) and slug not in outcome.latency.gated:
                    outcome.latency.gated.append(slug)
                if verdict == "FAIL":
                    outcome.failures.append(Failure(slug, name, old, new, check.spec))
            outcome.rows.append({"cell": slug, "field": name, "base": old, "current": new,
                                 "change": describe_change(old, new), "check": check.spec if check else "",
                                 "verdict": verdict})
    outcome.rows += mean_rows
    return outcome
