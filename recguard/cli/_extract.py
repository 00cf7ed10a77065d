"""``recguard extract``: steal a saved victim through its top-k API."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import ConfigError
from ._common import ModelOpt, PathOpt, print_table, victim_dataset


def extract(
    victim_dir: Path = typer.Option(..., "--victim", help="Saved victim to attack (only its top-k lists are used)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the surrogate, the query transcript and extraction.json."),
    mode: str = typer.Option("data-free", "--mode", help="data-free or few-shot."),
    budget: int = typer.Option(5000, "--budget", help="Sequences to generate (each costs up to max_len queries)."),
    max_queries: int | None = typer.Option(None, "--max-queries", help="Hard cap on queries (the API's budget)."),
    k: int = typer.Option(100, "--k", help="Items the API returns per query."),
    length: int | None = typer.Option(None, "--length", help="Items per generated sequence (default: the victim's max_len)."),
    real_fraction: float = typer.Option(0.1, "--real-fraction", help="few-shot: share of real training sequences the attacker holds."),
    surrogate: str = typer.Option("sasrec", "--surrogate", help="What to distil into: sasrec, bert4rec, gru4rec, or your own "
                                  "model as MODULE:FACTORY."),
    epochs: int = typer.Option(30, "--epochs", help="Distillation epochs (best kept on the attacker's held-out queries)."),
    random_share: float = typer.Option(0.1, "--random-share", help="Share of uniformly random next items."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset for evaluation/few-shot (default: the victim's)."),
    path: Path | None = PathOpt,
    defense: str = typer.Option("none", "--defense", help="Serve the victim's lists through an API defense: none, truncate:M, "
                                "shuffle:W, sample:T, unordered:W, guard, or POLICY+guard (docs/extraction.md)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    model: str | None = ModelOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Extract a surrogate from a victim's top-k lists, then report Agreement@1/10 and NDCG@10.

    Re-running with the same --out resumes the queries from out/transcript.safetensors.
    """
    import numpy as np

    from .._io import atomic_write_json
    from ..attacks.extraction import agreement, extract as run_extract
    from ..defenses.serving import check_defense, serve, served_quality
    from ..metrics import evaluate
    from ..victims import BlackBoxVictim, load

    from .._io import claim_output_dir

    check_defense(defense)  # a bad --defense fails before anything loads
    victim = load(victim_dir, model=model)
    data = victim_dataset(victim, victim_dir, dataset, path)
    claim_output_dir(out, "extraction", resumable=True)  # resumes its own transcript; refuses anything else
    if not 0 < real_fraction <= 1:
        raise ConfigError(f"must be in (0, 1], got {real_fraction}", param="--real-fraction")
    split = data.split()
    rng = np.random.default_rng(seed)
    real = None
    if mode == "few-shot":
        n_real = max(1, int(round(real_fraction * split.train.num_users)))
        users = rng.choice(split.train.num_users, size=n_real, replace=False)
        real = [split.train[u].tolist() for u in users]
    served = serve(victim, defense, split.train, seed=seed)
    if k > served.max_list:
        raise ConfigError(f"the {served.label} API answers with at most {served.max_list} items; pass --k {served.max_list} or less",
                          param="--k")
    bb = BlackBoxVictim(served, k=k, query_budget=max_queries)
    t0 = time.perf_counter()
    res = run_extract(bb, mode=mode, num_sequences=budget, length=length, real_sequences=real, random_share=random_share,
                      surrogate=surrogate, epochs=epochs, rng=rng, progress=progress, checkpoint=out / "transcript.safetensors")
    wall = time.perf_counter() - t0
    res.surrogate.dataset_spec_ = victim.dataset_spec_
    res.surrogate.save(out / "surrogate", overwrite=True)
    x, _ = split.inputs("test", victim.max_len)
    agree = agreement(victim, res.surrogate, x)
    quality = evaluate(res.surrogate, split, which="test", ks=(10,))
    report = {"victim": str(victim_dir), "mode": mode, "surrogate": surrogate, "k": k, "queries": res.queries,
              "agreement": agree, "surrogate_test": quality, "victim_test": evaluate(victim, split, which="test", ks=(10,)),
              "wall_time_s": wall, "info": res.info, "real_sequences": 0 if real is None else len(real), "defense": served.label}
    if served.label != "none":
        report["queries_answered_at_random"] = served.guard_flags
        report["served_test"] = served_quality(served, split)
    atomic_write_json(out / "extraction.json", report)
    typer.echo(f"{mode} extraction of {victim.architecture} into {surrogate}: {res.queries} queries, {wall:.0f} s")
    print_table([("Agreement@1", f"{agree['Agreement@1']:.4f}"), ("Agreement@10", f"{agree['Agreement@10']:.4f}"),
                 ("surrogate NDCG@10", f"{quality['NDCG@10']:.4f}"), ("victim NDCG@10", f"{report['victim_test']['NDCG@10']:.4f}"),
                 *([(f"NDCG@10 served ({served.label})", f"{report['served_test']['NDCG@10']:.4f}")] if served.label != "none" else [])])
    typer.echo(f"surrogate: {out / 'surrogate'}  (use it with `recguard audit --surrogate {out / 'surrogate'}`)")
