"""The `segbench` command: one module per command (`<name>_cmd.py`), joined here. Each command parses its options,
calls a plain function of an earlier stage and prints; known errors become one line on stderr and exit code 2
(common.py).

The last stage: it may import every other stage, and only `segbench.__main__` imports it (docs/architecture.md, "What a
stage may import"; tests/test_import_rules.py).
"""

from __future__ import annotations

import typer

from segbench.cli import (
    compare_cmd,
    data_cmd,
    evaluate_cmd,
    export_cmd,
    list_cmd,
    merge_cmd,
    predict_cmd,
    profile_cmd,
    report_cmd,
    run_cmd,
    schema_cmd,
    show_cmd,
    summary_cmd,
    weights_cmd,
)
from segbench.cli.common import DEBUG_ENV, set_debug

app = typer.Typer(
    name="segbench",
    help="Benchmark semantic-segmentation architectures, encoders and losses: accuracy and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    context: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", envvar=DEBUG_ENV, help="Print the traceback above the one-line error of a bad input (before "
        "the command: segbench --debug run GRID). Exit codes stay the same."),
) -> None:
    """Options that apply to every command: --debug is read back by `user_errors` (segbench.cli.common)."""
    set_debug(context, debug)


app.command("run")(run_cmd.run)
app.add_typer(list_cmd.app, name="list")
app.command("profile")(profile_cmd.profile)
app.command("report")(report_cmd.report)
app.command("summary")(summary_cmd.summary)
app.command("compare")(compare_cmd.compare)
app.command("merge")(merge_cmd.merge)
app.add_typer(data_cmd.app, name="data")
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("predict")(predict_cmd.predict)
app.add_typer(export_cmd.app, name="export")
app.command("show")(show_cmd.show)
app.command("schema")(schema_cmd.schema)
app.add_typer(weights_cmd.app, name="weights")


def main() -> None:
    app()
