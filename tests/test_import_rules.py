"""Imports follow the flow (docs/architecture.md, "What a stage may import"): a module imports only from its own
stage or an earlier one, type-only imports included, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"bench": "segbench", "models": "segbench.models", "datasets": "segbench.datasets"}
# Earliest first; a stage names the first part after `segbench.` (a subpackage or a top-level module).
STAGES: tuple[tuple[str, ...], ...] = (
    ("segbench", "errors", "registry", "atomic", "env", "faults", "colours", "forkserver"),  # shared by every stage
    ("losses",),
    ("datasets",),
    ("models",),
    ("metrics",),
    ("grid",),  # validates names against the registries above
    ("devices", "optim"),  # how a grid's settings run: device, precision, optimizer and schedule
    ("records",),
    ("measure",),
    ("cell",),
    ("execution",),
    ("analysis",),
    ("predict",),
    ("cli", "__main__"),
)
RANK = {name: index for index, stage in enumerate(STAGES) for name in stage}


def module_name(path: Path) -> str:
    top = path.relative_to(ROOT).parts[0]
    parts = path.relative_to(ROOT / top).with_suffix("").parts
    name = ".".join((PACKAGES[top], *parts))
    return name.removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Every segbench module `path` imports, at any depth of the file (inside functions and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name == "segbench" or name.startswith("segbench."))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for top in PACKAGES for path in (ROOT / top).rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        # `from segbench.x import y` names module x.y when it exists, else the package x
        edges[name] = {target for target in imports(path) if target in modules} | {
            target.rpartition(".")[0] for target in imports(path) if target not in modules and target != "segbench"}
        edges[name] = {target for target in edges[name] if target in modules and target != name}
    return edges


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "segbench"


def test_every_module_belongs_to_a_stage():
    unknown = sorted({stage(module) for module in graph()} - set(RANK))
    assert not unknown, f"add these to a stage in STAGES and docs/architecture.md: {unknown}"


def test_no_module_imports_from_a_later_stage():
    upward = sorted(f"{source} imports {target} ({stage(source)} may not import the later stage {stage(target)})"
                    for source, targets in graph().items() for target in targets
                    if RANK[stage(target)] > RANK[stage(source)])
    assert not upward, "\n".join(upward)


def test_no_two_modules_import_each_other():
    edges = graph()
    cycles = sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets if a < b and a in edges.get(b, ()))
    assert not cycles, "\n".join(cycles)


def test_the_rule_catches_an_upward_import(tmp_path: Path):
    """The checker itself: a type-only import of a later stage is found."""
    source = tmp_path / "probe.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from segbench.analysis.report import x\n")
    assert imports(source) == {"segbench.analysis.report", "segbench.analysis.report.x"}
    assert RANK[stage("segbench.analysis.report")] > RANK[stage("segbench.measure.latency")]
