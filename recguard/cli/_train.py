"""``recguard train`` and ``recguard evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import ConfigError
from ._common import DatasetOpt, KCoreOpt, MinRatingOpt, ModelOpt, PathOpt, dataset_spec, load_dataset, print_table, victim_dataset


def _parse_sets(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", param="--set")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def recipe_settings(name: str | None, model: str) -> dict:
    """``--recipe``: the settings the named recipe gives ``model`` (none without one)."""
    from ..victims import recipe

    return recipe(name, model, param="--recipe") if name else {}


def train(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the trained victim (weights.safetensors + config.json)."),
    dataset: str = DatasetOpt,
    path: Path | None = PathOpt,
    min_rating: float | None = MinRatingOpt,
    k_core: int | None = KCoreOpt,
    model: str = typer.Option("sasrec", "--model", "-m", help="sasrec, bert4rec, gru4rec, or your own model as MODULE:FACTORY "
                              "(FACTORY(num_items, **config); --set fills config)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (early stopping on validation NDCG@10)."),
    max_len: int | None = typer.Option(None, "--max-len", help="Longest history the model reads."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    loss: str | None = typer.Option(None, "--loss", help="auto (default: full softmax below the measured catalogue-size "
                                    "crossover, sampled softmax above), ce, sampled_ce, gbce or bce; "
                                    "--set num_negatives=N / sampler=popularity tune the sampled ones."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same model)."),
    set_: list[str] = typer.Option([], "--set", help="Extra config KEY=VALUE (e.g. --set hidden=128 --set num_negatives=1024)."),
    recipe_name: str | None = typer.Option(None, "--recipe", help="Named training recipe (recsys23: the SASRec-CE paper's ML-1M "
                                           "settings); --set and the flags here override its settings."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a victim saved earlier at --out (never anything else)."),
    keep_checkpoints: int = typer.Option(0, "--keep-checkpoints", help="Save K checkpoints evenly spaced over training "
                                         "(checkpoints.safetensors) for `recguard forensics`."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a victim on a dataset and save it, then print its test metrics."""
    from .._io import check_artifact_target
    from ..metrics import evaluate as run_eval
    from ..victims import build_victim
    from ..victims import is_factory_path

    check_artifact_target(out, "victim", overwrite=overwrite)  # a bad --out fails before training, not after
    cfg = {**recipe_settings(recipe_name, model), **_parse_sets(set_)}
    if epochs is not None:
        cfg["epochs"] = epochs
    if max_len is not None:
        cfg["max_len"] = max_len
    if loss is not None:
        cfg["loss"] = loss
    if keep_checkpoints < 0:
        raise ConfigError(f"must be >= 0, got {keep_checkpoints}", param="--keep-checkpoints")
    if keep_checkpoints:
        if is_factory_path(model):
            raise ConfigError("a wrapped model's training is its own fit_fn's; --keep-checkpoints works with sasrec, bert4rec "
                              "and gru4rec", param="--keep-checkpoints")
        cfg["keep_checkpoints"] = keep_checkpoints
    if device != "auto" or not is_factory_path(model):  # a factory gets only the options it was given
        cfg["device"] = device
    data = load_dataset(dataset, path, min_rating, k_core)
    victim = build_victim(model, num_items=data.num_items, **cfg)
    typer.echo(f"training {model} on {data!r}", err=True)
    victim.dataset_spec_ = dataset_spec(dataset, path, min_rating, k_core)
    split = data.split()
    victim.fit(split, rng=seed, progress=progress)
    metrics = run_eval(victim, split, which="test", ks=(10, 20))
    victim.fit_info_["test"] = metrics
    victim.save(out, overwrite=overwrite)
    info = victim.fit_info_
    typer.echo(f"saved {out}  (best epoch {info.get('best_epoch', '–')} of {info.get('epochs_run') or '–'}, "
               f"{info['wall_time_s']:.1f} s)")
    if info.get("objective"):
        from ..audit.report import objective_text

        typer.echo(f"training objective: {objective_text({'objective': [info['objective']]})}")
    print_table([(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()])


def evaluate(
    run: Path = typer.Argument(..., help="Directory of a saved victim (from `recguard train`)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset (default: the one the victim was trained on)."),
    path: Path | None = PathOpt,
    split: str = typer.Option("test", "--split", help="test or valid."),
    json_out: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    model: str | None = ModelOpt,
) -> None:
    """Evaluate a saved victim with full-ranking HR@10/20, NDCG@10/20 and MRR."""
    from ..metrics import evaluate as run_eval
    from ..victims import load

    if split not in ("test", "valid"):
        raise ConfigError("must be 'test' or 'valid'", param="--split")
    victim = load(run, model=model)
    data = victim_dataset(victim, run, dataset, path)
    if dataset is None and victim.data_fingerprint_ and victim.data_fingerprint_ != data.fingerprint():
        typer.echo("warning: the dataset's fingerprint differs from the one the victim was trained on", err=True)
    metrics = run_eval(victim, data.split(), which=split, ks=(10, 20))
    if json_out:
        typer.echo(json.dumps(metrics, indent=2))
    else:
        typer.echo(f"{victim.architecture} on {data.name} ({split}, full ranking, seen items filtered)")
        print_table([(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in metrics.items()])
