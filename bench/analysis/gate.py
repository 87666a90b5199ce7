"""Compare two summaries cell by cell and gate regressions with small check objects.

A check `FIELD:THRESHOLD` names a numeric summary field and how far it may move in the direction of a regression:
the sign is that direction. `miou:-0.02` fails when mIoU drops by more than 0.02 (absolute); `gmacs:+0%` fails on any
increase of GMACs; `latency_ratio:+25%` fails when the latency ratio grows by more than 25 % (relative). Cells whose
config hashes differ were measured under different settings: they are "not comparable", never regressions, but a
gate that could not compare a baseline cell fails unless that is allowed (otherwise any change of hash would leave
the gate checking nothing).

Seeds: where a configuration (slugs that differ only by `__s<seed>`) has two or more ok seeds on both sides, each
checked field is gated once on its mean over those seeds: it fails only when the mean's change passes the threshold
AND a one-sided test in the regression direction gives p < 0.05 (a paired t-test on the per-seed differences when
both sides ran the same seeds, a Welch t-test otherwise; segbench.analysis.seed_gate, docs/report.md says why).
Single-seed configurations are gated cell by cell, as before.

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
from segbench.analysis.seed_gate import SeedTest, seed_test
from segbench.errors import ConfigError
from segbench.metrics.catalogue import SUMMARY_FIELDS
from segbench.records.rows import configuration_slug, is_deployment_field
from segbench.records.schema import Summary, SummaryRow
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
    if name not in SUMMARY_FIELDS and not is_deployment_field(name):
        choices = sorted(SUMMARY_FIELDS)
        raise ConfigError(f"--fail-on '{text}' names an unknown field '{name}'{did_you_mean(name, choices)}; "
                          f"valid fields: {', '.join(choices)}, and where measured latency_ratio_<runtime>_"
                          "<precision>, miou_<runtime>_<precision> and int8_miou_drop.")
    return Check(name, +1 if match["sign"] == "+" else -1, float(match["amount"]), bool(match["percent"]))


@dataclass(frozen=True)
class Failure:
    """One failed check. cell: a slug, or "<configuration> (mean of n seeds)" for a check on seed means, which
    also names its seeds and the test that found the move beyond noise."""

    cell: str
    field: str
    base: Any
    current: Any
    threshold: str
    seeds: str | None = None
    test: SeedTest | None = None

    @property
    def message(self) -> str:
        if self.field == "status":
            return f"{self.cell}: status went from {self.base} to {self.current} ({self.threshold})"
        text = (f"{self.cell}: {self.field} went from {format_value(self.base)} to {format_value(self.current)} "
                f"({describe_change(self.base, self.current)}), beyond the threshold {self.threshold}")
        if self.test is not None:
            text += f"; seeds {self.seeds}; {self.test.text}"
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
        return (f"{cells} no comparable counterpart (other config hashes or evaluation settings): the gate "
                f"compared nothing for {'it' if count == 1 else 'them'}; refresh the baseline with `make baseline` "
                "after an intended change, or pass --allow-not-comparable.")

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


@dataclass(frozen=True)
class SeedGroup:
    """A configuration with two or more ok seeds on both sides: the slugs of its seeds on each side."""

    configuration: str
    base: list[str]
    current: list[str]

    @property
    def paired(self) -> bool:
        """Both sides ran the same seeds: seed s of one side pairs with seed s of the other."""
        return self.base == self.current


def _seed_groups(base_cells: dict[str, SummaryRow], current_cells: dict[str, SummaryRow], not_comparable: set[str]
                 ) -> list[SeedGroup]:
    """Configurations with two or more ok seeds on each side, sharing at least one comparable seed (the same config
    hash on both sides: the check that it is one configuration); seeds with other hashes on the two sides are left
    out, seeds present on one side only are kept (then the sides are tested unpaired)."""
    sides: list[dict[str, list[str]]] = [{}, {}]
    for cells, by_configuration in zip((base_cells, current_cells), sides, strict=True):
        for slug in sorted(cells):
            if cells[slug].ok and slug not in not_comparable:
                by_configuration.setdefault(configuration_slug(slug), []).append(slug)
    groups = []
    for configuration in sorted(set(sides[0]) & set(sides[1])):
        base, current = sides[0][configuration], sides[1][configuration]
        if len(base) >= 2 and len(current) >= 2 and set(base) & set(current):
            groups.append(SeedGroup(configuration, base, current))
    return groups


def _seed_names(slugs: list[str]) -> str:
    """"s0, s1, s2": the seed suffixes of slugs."""
    return ", ".join(slug.rsplit("__", 1)[-1] for slug in slugs)


def _gate_seed_means(outcome: Comparison, group: SeedGroup, base_cells: dict[str, SummaryRow],
                     current_cells: dict[str, SummaryRow], check: Check) -> dict[str, Any] | None:
    """Gate one field on its mean over the seeds of one configuration (a failure goes into `outcome`); returns the
    row to show, or None when fewer than two seeds have the field on a side (or, paired, on both sides)."""
    if group.paired:
        pairs = [(base_cells[s].value(check.field), current_cells[s].value(check.field), s) for s in group.base]
        pairs = [(old, new, s) for old, new, s in pairs if _defined(old) and _defined(new)]
        old_values, new_values = [old for old, _, _ in pairs], [new for _, new, _ in pairs]
        seeds = _seed_names([s for _, _, s in pairs])
        label = f"{group.configuration} (mean of {len(pairs)} seeds)"
    else:
        olds = [(base_cells[s].value(check.field), s) for s in group.base]
        news = [(current_cells[s].value(check.field), s) for s in group.current]
        olds, news = [item for item in olds if _defined(item[0])], [item for item in news if _defined(item[0])]
        old_values, new_values = [value for value, _ in olds], [value for value, _ in news]
        seeds = f"{_seed_names([s for _, s in olds])} (baseline) and {_seed_names([s for _, s in news])} (current)"
        label = f"{group.configuration} (means of {len(olds)} baseline and {len(news)} current seeds)"
    if len(old_values) < 2 or len(new_values) < 2:
        return None
    old_mean, new_mean = sum(old_values) / len(old_values), sum(new_values) / len(new_values)
    passed_threshold = check.regressed(old_mean, new_mean)
    test = seed_test(old_values, new_values, check.direction, group.paired)
    verdict = ("FAIL" if test.significant else "noise") if passed_threshold else "ok"
    if verdict == "FAIL":
        outcome.failures.append(Failure(label, check.field, old_mean, new_mean, check.spec, seeds, test))
    return {"cell": label, "field": check.field, "base": old_mean, "current": new_mean,
            "change": describe_change(old_mean, new_mean), "check": f"{check.spec}; {test.text}", "verdict": verdict}


def _one_machine(rows: list[SummaryRow]) -> bool:
    """Whether every row's latency was timed on one and the same fingerprint."""
    machines = {row.machine for row in rows}
    return len(machines) == 1 and None not in machines


def compare_summaries(base: Summary, current: Summary, checks: list[Check],
                      fail_on_missing: bool = False, allow_not_comparable: bool = False) -> Comparison:
    """Compare every cell present in both summaries; run `checks` on cells with the same config hash.

    Cells present on both sides with different config hashes or evaluation settings (SummaryRow.evaluation) fail
    the comparison unless `allow_not_comparable`.
    Checks on configurations with two or more comparable seeds run on the seed means (see the module docstring);
    their cells' rows show the values with the verdict "seeds".
    """
    outcome = Comparison(allow_not_comparable=allow_not_comparable)
    outcome.latency.timed_checks = timed_specs((check.field, check.spec) for check in checks)
    base_cells, current_cells = base.cells, current.cells
    outcome.missing_in_current = sorted(set(base_cells) - set(current_cells))
    outcome.missing_in_base = sorted(set(current_cells) - set(base_cells))
    if fail_on_missing:
        outcome.failures += [Failure(slug, "status", "present", "missing", "--fail-on-missing")
                             for slug in outcome.missing_in_current]
    by_field = {check.field: check for check in checks}
    fields = list(SHOWN_FIELDS) + [name for name in by_field if name not in SHOWN_FIELDS]
    comparable = []
    for slug in sorted(set(base_cells) & set(current_cells)):
        before, after = base_cells[slug], current_cells[slug]
        if (before.config_hash, before.evaluation) != (after.config_hash, after.evaluation):
            outcome.not_comparable.append({"cell": slug, "base_hash": before.config_hash,
                                           "current_hash": after.config_hash, "base_evaluation": before.evaluation,
                                           "current_evaluation": after.evaluation})
        else:
            comparable.append(slug)
    seed_gated: set[tuple[str, str]] = set()  # (slug, field) checked on its configuration's seed mean
    mean_rows: list[dict[str, Any]] = []
    not_comparable = {item["cell"] for item in outcome.not_comparable}
    for group in _seed_groups(base_cells, current_cells, not_comparable):
        members = sorted(set(group.base) & set(group.current))  # the cells whose own rows defer to the group's
        one_machine = _one_machine([base_cells[s] for s in group.base] + [current_cells[s] for s in group.current])
        group_checks = [check for check in checks if one_machine or not is_timed(check.field)]
        rows = [row for check in group_checks
                if (row := _gate_seed_means(outcome, group, base_cells, current_cells, check))]
        seed_gated |= {(slug, row["field"]) for slug in members for row in rows}
        if any(is_timed(row["field"]) for row in rows):
            outcome.latency.gated += members
        mean_rows += rows
        if rows:
            outcome.seed_gated.append(group.configuration)
    for slug in comparable:
        before, after = base_cells[slug], current_cells[slug]
        outcome.compared += 1
        outcome.latency.note(before, after, (base, current))
        ungated = ungated_reason(before, after)
        if before.ok and not after.ok:
            outcome.failures.append(Failure(slug, "status", before.status, after.status, f"error: {after.error}"))
        for name in fields:
            check = by_field.get(name)
            old, new = before.value(name), after.value(name)
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
