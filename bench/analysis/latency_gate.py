"""What a latency comparison is worth: timed fields are gated only between equal machine fingerprints, and a baseline
is written only from latency that is stable.

Why (docs/report.md, "Latency in the gate"): a model's latency over the reference workload moved by 50-100 % between
the Intel Xeon and the AMD EPYC machines of one cloud kind, while two runs on one machine agree within a few percent.
So `compare` gates latency_ratio (and every other clock-timed field of the catalogue, `TIMED_FIELDS`) only where both
sides were timed on machines with the same fingerprint (segbench.measure.machine) and shows it as "not gated"
otherwise; parameters, MACs and metrics are gated everywhere. `check_stable` is what `make baseline` asks before it
writes: each cell's two timing rounds, and cells that timed the same inference (same architecture, encoder,
parameters, input, precision, threads and machine, whatever their loss or seed), must agree within a tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from segbench.errors import SegbenchError
from segbench.metrics.catalogue import TIMED_FIELDS
from segbench.records.rows import is_timed_deployment_field
from segbench.records.schema import Summary, SummaryRow

STABLE_TOLERANCE_PCT = 10.0  # make baseline: timing rounds and identical workloads must agree within this


class UnstableLatencyError(SegbenchError):
    """Latency too unsteady to become a baseline (exit 2, nothing written)."""


def ungated_reason(base: SummaryRow, current: SummaryRow) -> str | None:
    """Why the timed fields of two summary rows of one cell cannot be compared, or None when they can."""
    if not base.machine:
        return "baseline without a machine fingerprint"
    if not current.machine:
        return "current run without a machine fingerprint"
    if base.machine != current.machine:
        return "other machine"
    return None


@dataclass
class LatencyGating:
    """Which cells had their timed fields gated, which not and why, with what the two sides' timings are worth."""

    timed_checks: list[str] = field(default_factory=list)  # the specs of the checks on timed fields
    gated: list[str] = field(default_factory=list)
    not_gated: dict[str, str] = field(default_factory=dict)  # slug -> reason
    base_machines: dict[str, str] = field(default_factory=dict)  # fingerprint id -> label, of the cells compared
    current_machines: dict[str, str] = field(default_factory=dict)
    base_spread: float | None = None  # largest timing-round spread among the compared cells
    current_spread: float | None = None

    def note(self, base_row: SummaryRow, current_row: SummaryRow, summaries: tuple[Summary, Summary]) -> None:
        """Account for one compared cell."""
        for row, summary, machines in ((base_row, summaries[0], self.base_machines),
                                       (current_row, summaries[1], self.current_machines)):
            if row.machine:
                machines[row.machine] = machine_label(summary, row.machine)
        self.base_spread = _max(self.base_spread, base_row.latency_spread)
        self.current_spread = _max(self.current_spread, current_row.latency_spread)

    def sentence(self) -> str:
        """One sentence: whether latency was gated, why not, and what the comparison is worth."""
        if not self.timed_checks:
            return "latency: not gated (no --fail-on names a timed field such as latency_ratio)."
        if not self.gated and not self.not_gated:
            return "latency: not gated (no cell was compared)."
        worth = (f"tolerance {', '.join(self.timed_checks)}; timing rounds agreed within "
                 f"{_percent(self.base_spread)} in the baseline and {_percent(self.current_spread)} now")
        if not self.not_gated:
            return (f"latency: gated for {_cells(len(self.gated))}, timed on the same machine on both sides "
                    f"({_machines(self.current_machines)}); {worth}.")
        reasons = sorted(set(self.not_gated.values()))
        why = "; ".join(self._reason_text(reason) for reason in reasons)
        head = (f"latency: gated for {_cells(len(self.gated))}, not gated for {_cells(len(self.not_gated))}"
                if self.gated else f"latency: not gated for {_cells(len(self.not_gated))}")
        return (f"{head}: {why}. Parameters, MACs and metrics were gated as usual. To gate latency on this machine, "
                "compare with a baseline made on it (`make baseline`)." + (f" Gated cells: {worth}." if self.gated
                                                                           else ""))

    def _reason_text(self, reason: str) -> str:
        if reason == "other machine":
            return (f"the baseline was timed on another machine, {_machines(self.base_machines)}, than this run, "
                    f"{_machines(self.current_machines)}")
        if reason.startswith("baseline"):
            return "the baseline has no machine fingerprint, being a version 1 summary or made from older records"
        return "this run's records have no machine fingerprint (written before fingerprints)"


def machine_label(summary: Summary, machine_id: str) -> str:
    machine = summary.machines.get(machine_id)
    return (machine.label if machine else None) or "unknown machine"


def is_timed(field_name: str) -> bool:
    return field_name in TIMED_FIELDS or is_timed_deployment_field(field_name)


def stability_problems(summary: Summary, tolerance_pct: float = STABLE_TOLERANCE_PCT) -> list[str]:
    """What keeps the ok cells' latency of `summary` from being a baseline: a cell timed in one round only, rounds
    that disagree by more than `tolerance_pct`, or cells with an identical inference workload whose latency ratios
    disagree by more than it. Each problem is a short clause naming the cells and the two values."""
    limit = tolerance_pct / 100
    ok = {slug: row for slug, row in summary.cells.items() if row.ok and row.latency_ratio is not None}
    problems = []
    for slug, row in sorted(ok.items()):
        spread = row.latency_spread
        if spread is None:
            problems.append(f"{slug} was timed in one round (recorded before repeated timing)")
        elif spread > limit + 1e-12:
            problems.append(f"{slug}'s two timing rounds disagree by {spread * 100:.1f} %")
    workloads: dict[str, list[str]] = {}
    for slug, row in ok.items():
        if row.latency_workload:
            workloads.setdefault(row.latency_workload, []).append(slug)
    for slugs in workloads.values():
        if len(slugs) < 2:
            continue
        ratios = {slug: ok[slug].latency_ratio for slug in slugs}
        low, high = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
        disagreement = ratios[high] / ratios[low] - 1
        if disagreement > limit + 1e-12:
            problems.append(f"{low} and {high} time the same inference but their latency ratios disagree by "
                            f"{disagreement * 100:.1f} % ({ratios[low]:.3f} vs {ratios[high]:.3f})")
    return problems


def check_stable(summary: Summary, tolerance_pct: float = STABLE_TOLERANCE_PCT) -> None:
    """Raise UnstableLatencyError (one sentence) when `stability_problems` finds any."""
    problems = stability_problems(summary, tolerance_pct)
    if problems:
        raise UnstableLatencyError(
            f"latency too unsteady for a baseline (tolerance {tolerance_pct:g} %): {'; '.join(problems)}; the machine "
            "was probably busy while timing, so nothing was written: rerun on a quiet machine (or pass a larger "
            "--stable-latency on purpose).")


def _cells(count: int) -> str:
    return f"{count} cell{'s' if count != 1 else ''}"


def _max(current: float | None, value: float | None) -> float | None:
    if value is None:
        return current
    return value if current is None else max(current, value)


def _percent(value: float | None) -> str:
    return "an unknown spread (one round)" if value is None else f"{value * 100:.1f} %"


def _machines(labels: dict[str, str]) -> str:
    return ", ".join(f"{label} [{machine_id}]" for machine_id, label in sorted(labels.items())) or "unknown"


def timed_specs(specs: Iterable[tuple[str, str]]) -> list[str]:
    """The specs of the (field, spec) pairs whose field is timed."""
    return [spec for name, spec in specs if is_timed(name)]
