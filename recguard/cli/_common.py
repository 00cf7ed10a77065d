"""Helpers shared by CLI commands: dataset options and table printing."""

from __future__ import annotations

from pathlib import Path

import typer

DatasetOpt = typer.Option("ml-100k", "--dataset", "-d", help="Registered dataset name (ml-100k, ml-1m) or a data file path.")
PathOpt = typer.Option(None, "--path", help="Local copy of the dataset (file or directory).")
MinRatingOpt = typer.Option(None, "--min-rating", help="Keep interactions with rating >= this value.")
KCoreOpt = typer.Option(None, "--k-core", help="Keep users and items with >= K interactions.")
ModelOpt = typer.Option(None, "--model", "-m", help="For a wrapped model (TorchVictim): MODULE:FACTORY that rebuilds it (default: "
                        "the factory recorded when it was saved).")


def load_dataset(name: str, path: Path | None, min_rating: float | None, k_core: int | None):
    from ..data import load

    return load(name, path, min_rating=min_rating, k_core=k_core)


def dataset_spec(name: str, path: Path | None, min_rating: float | None, k_core: int | None) -> dict:
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


def print_columns(headers: list[str], rows: list[list[str]]) -> None:
    """A header line and one line per row, every column padded to its widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def victim_dataset(victim, run: Path, dataset: str | None, path: Path | None):
    """The dataset a saved victim was trained on (or the one named), checked against its catalogue.

    A dataset path recorded in the victim's ``config.json`` is followed only as far as reading
    it: if it fails, the error names the path (and line), never the file's content, since a
    config.json can point anywhere."""
    from .._params import check_value
    from ..errors import ArtifactError, ConfigError, DataError

    spec = victim.dataset_spec_ or {}
    if dataset is None and not spec:
        raise ArtifactError(f"{run}: no dataset recorded in config.json; pass --dataset (and --path)")
    recorded = dataset is None
    if recorded:
        try:
            for key, ann in (("name", "str"), ("path", "str | None"), ("min_rating", "float | None"), ("k_core", "int | None")):
                check_value(f"dataset.{key}", spec.get(key), ann)
        except ConfigError as exc:
            raise ArtifactError(f"{run / 'config.json'}: {exc}; pass --dataset (and --path)") from None
    name = dataset or spec["name"]
    data_path = path if path is not None else (spec.get("path") if recorded else None)
    try:
        data = load_dataset(name, Path(data_path) if data_path else None, spec.get("min_rating") if recorded else None,
                            spec.get("k_core") if recorded else None)
    except (DataError, ConfigError) as exc:
        if not recorded or path is not None:
            raise
        where = getattr(exc, "path", None) or data_path or name
        line = getattr(exc, "line", None)
        raise ArtifactError(f"{run / 'config.json'} records the dataset {name!r}"
                            + (f" at {data_path}" if data_path else "") + f", which could not be loaded ({where}"
                            + (f", line {line}" if line else "") + "); pass --dataset (and --path) to choose the data") from None
    if victim.num_items != data.num_items:
        raise ArtifactError(f"{run}: the victim knows {victim.num_items} items but the dataset has {data.num_items}; wrong dataset?")
    return data
