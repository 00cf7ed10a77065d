"""What separates recguard's SASRec-CE from the SASRec-CE paper's code (issue 29): an ablation.

Every variant trains SASRec with the paper's recipe (Klenitskiy & Vasilev, RecSys'23, code
``antklen/sasrec-bert4rec-recsys23``: full-softmax CE, lr 1e-3, dropout 0.1, batch 128, plain
shuffled batches, validation every epoch, patience 10, max length 200, N(0, 0.02) weights) and
changes one thing the code does differently from recguard's default SASRec:

- ``default``: recguard's block (pre-LayerNorm, dropout on both residual branches) and positions
  counted from the latest item;
- ``block``: the published block (``SASRec(block="published")``: queries from LN(x), keys and
  values from x, residuals from LN(x), Xavier-uniform query/key/value weights);
- ``positions``: positions counted from the first item of the window (``positions="first"``);
- ``adam``: Adam's second-moment decay 0.999 as in the paper's code, instead of recguard's 0.98;
- ``published``: block, positions and betas together;
- ``published_bf16``: the same, trained with ``precision="bfloat16"``.

Usage:
    python benchmarks/sasrec_recipe.py --dataset ml-100k --seeds 0,1 --variants default,block,positions,published
    python benchmarks/sasrec_recipe.py --dataset ml-1m --seeds 0 --variants default,published --threads 1

Each (variant, seed) is kept in runs/bench/sasrec_recipe_<dataset>/ so a stopped run resumes; the
summary goes to benchmarks/results/sasrec_recipe_<dataset>.json. Test metrics are those of the
best validation epoch (full ranking, seen items filtered, leave-one-out).
"""

from __future__ import annotations

import argparse
import time

from _common import HERE, data_path, kept_cells, parse_args, write_result

RECIPE = dict(loss="ce", lr=1e-3, dropout=0.1, batch_size=128, batching="random", eval_every=1, patience=10, max_len=200,
              epochs=200)
VARIANTS = {
    "default": {},
    "block": {"block": "published"},
    "positions": {"positions": "first"},
    "adam": {"adam_beta2": 0.999},
    "published": {"block": "published", "positions": "first", "adam_beta2": 0.999},
    "published_bf16": {"block": "published", "positions": "first", "adam_beta2": 0.999, "precision": "bfloat16"},
}


def _cell(split, variant: str, seed: int, args) -> dict:
    import recguard

    settings = {**RECIPE, **VARIANTS[variant]}
    if args.max_minutes:
        deadline = time.perf_counter() + 60 * args.max_minutes
        stop = (lambda epoch, victim: time.perf_counter() > deadline)  # noqa: E731
    else:
        stop = None
    victim = recguard.SASRec(**settings)
    t0 = time.perf_counter()
    victim.fit(split, rng=seed, progress=True, on_epoch_end=stop)
    wall = time.perf_counter() - t0
    test = recguard.evaluate(victim, split, which="test", ks=(10, 20))
    info = victim.fit_info_
    return {"variant": variant, "seed": seed, "settings": settings,
            "test_ndcg@10": test["NDCG@10"], "test_hr@10": test["HR@10"], "best_valid_ndcg@10": info["best_valid_ndcg@10"],
            "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"], "train_s": info["train_time_s"], "wall_s": wall,
            "stopped_by_time_limit": bool(args.max_minutes) and wall > 60 * args.max_minutes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m", "amazon-beauty", "amazon-office"])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--variants", default="default,block,positions,adam,published")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="cap per cell (0: none)")
    args = parse_args(ap)
    import recguard
    from recguard.audit.results import mean_interval

    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(VARIANTS)}")
    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    cells = kept_cells(HERE.parent / "runs" / "bench" / f"sasrec_recipe_{args.dataset}", args.seeds, args.variants,
                       lambda variant, seed: f"{variant}_seed{seed}.json", lambda variant, seed: _cell(split, variant, seed, args),
                       lambda c: (f"{c['variant']:10s} seed {c['seed']}: test NDCG@10 {c['test_ndcg@10']:.4f} HR@10 "
                                  f"{c['test_hr@10']:.4f} valid {c['best_valid_ndcg@10']:.4f} epochs {c['epochs_run']} "
                                  f"({c['best_epoch']}) {c['train_s']:.0f} s"))
    summary = {}
    for variant in dict.fromkeys(c["variant"] for c in cells):
        rows = [c for c in cells if c["variant"] == variant]
        summary[variant] = {k: mean_interval([c[k] for c in rows]) for k in ("test_ndcg@10", "test_hr@10", "best_valid_ndcg@10",
                                                                             "epochs_run", "train_s")}
    write_result(f"sasrec_recipe_{args.dataset}", {"cells": cells, "summary": summary, "recipe": RECIPE,
                                                   "settings": vars(args)})


if __name__ == "__main__":
    main()
