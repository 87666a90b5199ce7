"""`segbench list models|encoders|losses|datasets`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="List the registered models, encoders, losses or datasets.", no_args_is_help=True)
console = Console()


@app.command("models")
def models() -> None:
    """Architectures and what each one is."""
    from segbench.models import MODELS

    table = Table("model", "input multiple", "description")
    for name, entry in MODELS.items():
        table.add_row(name, str(entry.pad_multiple), entry.description)
    console.print(table)


@app.command("encoders")
def encoders() -> None:
    """Curated encoders; any segmentation-models-pytorch encoder or `tu-<timm model>` works too."""
    from segbench.models import CURATED_ENCODERS

    table = Table("encoder", "family")
    for name, family in CURATED_ENCODERS.items():
        table.add_row(name, family)
    console.print(table)
    console.print("Also: any segmentation-models-pytorch encoder name, any timm model as 'tu-<name>', "
                  "and 'native' for the from-scratch study networks.")


@app.command("losses")
def losses() -> None:
    """Loss functions (each accepts class_weights: inverse_freq | median_freq)."""
    from segbench.losses import LOSSES

    for name in LOSSES.names():
        console.print(name)


@app.command("datasets")
def datasets() -> None:
    """Dataset formats segbench reads."""
    from segbench.datasets import DATASETS

    table = Table("dataset", "options")
    for name, entry in DATASETS.items():
        table.add_row(name, ", ".join(entry.Params.model_fields))
    console.print(table)
