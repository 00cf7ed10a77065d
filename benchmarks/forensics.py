"""Forensics by training-data influence: do the injected users top the influence ranking of the
items they pushed? (issue 27)

Usage:
    python benchmarks/forensics.py --dataset amazon-office --seeds 0,1,2,3,4
    python benchmarks/forensics.py --dataset ml-1m --seeds 0,1 --attacks random,popular

For every (attack, seed): poison the training data at ``--budget`` (1%) with the attack's default
targets (5 unpopular items), train SASRec (max_len 50, patience 3) keeping ``--checkpoints`` (5)
checkpoints, and rank every training user by :func:`recguard.probes.influence` on the targets
(each target's query: the users whose top-50 list shows it). Recorded: the recall of the injected
users among the top 1% most influential users (and the precision there), the ROC-AUC of the
influence against the injected labels, the number of query users, and the seconds per target
item. The surrogate attack uses the clean model of the same seed as its surrogate (white-box).
The injected labels are read only after ranking. Each finished cell is kept in
runs/bench/forensics_<dataset>/ so an interrupted run resumes; each poisoned model is kept, with
its checkpoints, in its models/ folder and each cell keeps every user's influence, so another
reading of the ranking needs no retraining (``--retrace`` traces the kept models again). The
summary goes to benchmarks/results/forensics_<dataset>.json (without the per-user scores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import HERE, data_path, kept_cells, parse_args, poison_for_seed, write_result


def _cell(split, attack: str, seed: int, args, clean_cache: dict, models) -> dict:
    import recguard
    from recguard.probes import influence

    res, poisoned, victim = poison_for_seed(split, attack, seed, budget=args.budget, max_len=args.max_len, clean_cache=clean_cache)
    kept = models / f"{attack}_b{args.budget:g}_k{args.checkpoints}_seed{seed}"
    t0 = time.perf_counter()
    if (kept / "config.json").exists():
        model = recguard.load(kept)
    else:
        model = victim().fit(poisoned, rng=seed, keep_checkpoints=args.checkpoints)
        model.save(kept)
    train_s = model.fit_info_.get("wall_time_s", time.perf_counter() - t0)
    targets = [int(t) for t in np.atleast_1d(res.targets)]
    result = influence(model, poisoned, targets, top_k=50)
    return {"attack": attack, "seed": seed, "budget": args.budget, "fakes": int(len(res.fake_users)), "targets": targets,
            **result.finds(res.fake_users), "skipped_items": result.info["skipped_items"],
            "query_users": {str(k): int(len(v)) for k, v in result.query_users.items()},
            "influence_s": result.info["time_s"], "train_s": train_s, "positions": result.info["positions"],
            "sign_agreement": result.info["sign_agreement"],
            "fake_users": [int(u) for u in res.fake_users], "influence": [round(float(v), 6) for v in result.scores]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-1m", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--attacks", default="random,popular,segment,surrogate")
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--retrace", action="store_true",
                    help="trace again every cell whose model is kept (no training), e.g. to add readouts of a newer version")
    args = parse_args(ap)
    import recguard
    from recguard.audit.results import mean_interval

    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    clean_cache: dict = {}
    folder = HERE.parent / "runs" / "bench" / f"forensics_{args.dataset}"
    if args.retrace:
        for kept in sorted((folder / "models").glob(f"*_b{args.budget:g}_k{args.checkpoints}_seed*")):
            stale = folder / f"{kept.name}.json"
            if stale.exists() and (kept / "config.json").exists():
                stale.unlink()  # recomputed below from the kept model
    cells = kept_cells(folder, args.seeds, args.attacks,
                       lambda attack, seed: f"{attack}_b{args.budget:g}_k{args.checkpoints}_seed{seed}.json",
                       lambda attack, seed: _cell(split, attack, seed, args, clean_cache, folder / "models"),
                       lambda c: (f"{c['attack']:10s} seed {c['seed']}: recall@top1% {c['recall_top1pct']:.3f} precision "
                                  f"{c['precision_top1pct']:.3f} AUC {c['roc_auc']:.3f} |AUC| {c.get('roc_auc_abs') or float('nan'):.3f} "
                                  f"by checkpoint {[round(v, 2) for v in c.get('roc_auc_by_checkpoint') or []]} items {c['traced_items']} "
                                  f"({c['seconds_per_item']:.1f} s per item)"))
    summary = {}
    for attack in sorted({c["attack"] for c in cells}):
        rows = [c for c in cells if c["attack"] == attack]
        summary[attack] = {key: mean_interval([c[key] for c in rows])
                           for key in ("recall_top1pct", "precision_top1pct", "roc_auc", "seconds_per_item", "roc_auc_abs",
                                       "sign_agreement") if all(c.get(key) is not None for c in rows)}
    slim = [{k: v for k, v in c.items() if k not in ("influence", "fake_users")} for c in cells]
    write_result(f"forensics_{args.dataset}", {"cells": slim, "summary": summary, "settings": vars(args)})


if __name__ == "__main__":
    main()
