"""``recguard datasets list|info``."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import KCoreOpt, MinRatingOpt, load_dataset, print_table

app = typer.Typer(help="List registered datasets and show statistics of one.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List the registered datasets."""
    from ..data import list_datasets

    for info in list_datasets():
        tag = "embedded" if info.embedded else "path or download"
        typer.echo(f"{info.name:10s} [{tag}] {info.description}")


@app.command("info")
def info(
    name: str = typer.Argument(..., help="Dataset name (ml-100k, ml-1m) or a data file path."),
    path: Path | None = typer.Option(None, "--path", help="Local copy of the dataset (file or directory)."),
    min_rating: float | None = MinRatingOpt,
    k_core: int | None = KCoreOpt,
) -> None:
    """Load a dataset and print its statistics and fingerprint."""
    data = load_dataset(name, path, min_rating, k_core)
    stats = data.stats()
    print_table([(k, f"{v:.5f}" if isinstance(v, float) else str(v)) for k, v in stats.items()])
