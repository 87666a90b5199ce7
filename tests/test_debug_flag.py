"""`segbench --debug` and SEGBENCH_DEBUG=1: a bad input's one-line error also shows its traceback; exit codes and the
`error:` line stay as they are without the switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from segbench.cli import app

from support.grids import tiny_grid

TRACEBACK = "Traceback (most recent call last)"
# An unknown key: parse_grid turns pydantic's report into one sentence and hides it (`raise ... from None`).
BAD_KEY = tiny_grid("bad", train={"epochz": 1})


def bad_grid(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(BAD_KEY))
    return path


def run_bad_grid(tmp_path: Path, *before: str, env: dict[str, str] | None = None):
    results = tmp_path / "results"
    outcome = CliRunner(env=env).invoke(app, [*before, "run", str(bad_grid(tmp_path)), "--results", str(results)])
    assert outcome.exit_code == 2, outcome.output
    assert not results.exists()
    return outcome


def test_without_debug_a_bad_grid_is_one_line(tmp_path: Path):
    outcome = run_bad_grid(tmp_path, env={"SEGBENCH_DEBUG": ""})
    assert outcome.stderr.count("\n") == 1 and outcome.stderr.startswith("error: ")
    assert "unknown key 'train.epochz'" in outcome.stderr and TRACEBACK not in outcome.output


def test_debug_adds_the_traceback_above_the_same_error_line(tmp_path: Path):
    plain = run_bad_grid(tmp_path, env={"SEGBENCH_DEBUG": ""}).stderr
    debug = run_bad_grid(tmp_path, "--debug").stderr
    assert debug.startswith(TRACEBACK)
    assert debug.splitlines()[-1] == plain.strip()  # the sentence is still the last line
    assert "segbench.errors.ConfigError" in debug
    assert "pydantic_core._pydantic_core.ValidationError" in debug  # the report that `from None` hides from users


@pytest.mark.parametrize("value", ["1", "true"])
def test_environment_variable_turns_debug_on(tmp_path: Path, value: str):
    debug = run_bad_grid(tmp_path, env={"SEGBENCH_DEBUG": value}).stderr
    assert debug.startswith(TRACEBACK) and debug.splitlines()[-1].startswith("error: ")


def test_debug_off_in_the_environment_and_not_carried_to_the_next_command(tmp_path: Path):
    assert TRACEBACK not in run_bad_grid(tmp_path, env={"SEGBENCH_DEBUG": "0"}).output
    run_bad_grid(tmp_path, "--debug")
    assert TRACEBACK not in run_bad_grid(tmp_path, env={"SEGBENCH_DEBUG": ""}).output


def test_debug_applies_to_every_command(tmp_path: Path):
    outcome = CliRunner().invoke(app, ["--debug", "summary", str(tmp_path / "missing")])
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith(TRACEBACK) and outcome.stderr.splitlines()[-1].startswith("error: ")


def test_help_documents_debug():
    outcome = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--help"])
    assert outcome.exit_code == 0
    assert "--debug" in outcome.output and "SEGBENCH_DEBUG" in outcome.output
