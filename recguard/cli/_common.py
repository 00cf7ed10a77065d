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


def victim_dataset(victim, run: Path, dataset: Optional[str], path: Optional[Path]):
    """The dataset a saved victim was trained on (or the one named), checked against its catalogue."""
    from ..errors import ArtifactError

    spec = victim.dataset_spec_ or {}
    if dataset is None and not spec:
        raise ArtifactError(f"{run}: no dataset recorded in config.json; pass --dataset (and --path)")
    name = dataset or spec["name"]
    data_path = path if path is not None else (spec.get("path") if dataset is None else None)
    data = load_dataset(name, Path(data_path) if data_path else None, spec.get("min_rating") if dataset is None else None,
                        spec.get("k_core") if dataset is None else None)
    if victim.num_items != data.num_items:
        raise ArtifactError(f"{run}: the victim knows {victim.num_items} items but the dataset has {data.num_items}; wrong dataset?")
    return data
