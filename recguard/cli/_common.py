"""Helpers shared by CLI commands: dataset options and table printing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DatasetOpt = typer.Option("ml-100k", "--dataset", "-d", help="Registered dataset name (ml-100k, ml-1m) or a data file path.")
PathOpt = typer.Option(None, "--path", help="Local copy of the dataset (file or directory).")
MinRatingOpt = typer.Option(None, "--min-rating", help="Keep interactions with rating >= this value.")
KCoreOpt = typer.Option(None, "--k-core", help="Keep users and items with >= K interactions.")


def load_dataset(name: str, path: Optional[Path], min_rating: Optional[float], k_core: Optional[int]):
    from ..data import load

    return load(name, path, min_rating=min_rating, k_core=k_core)


def dataset_spec(name: str, path: Optional[Path], min_rating: Optional[float], k_core: Optional[int]) -> dict:
    return {
        "name": name,
        "path": None if path is None else str(Path(path).resolve()),
        "min_rating": min_rating,
        "k_core": k_core,
    }


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        typer.echo(f"  {k.ljust(width)}  {v}")
