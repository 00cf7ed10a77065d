"""Why the surrogate attack scores candidates by influence: ML-100k, SASRec (max_len 50), 1% fakes.

Trains a clean victim per seed (it is also the white-box surrogate), then one poisoned
victim per variant: random fillers, and the surrogate attack with the likelihood or the
influence objective, with fillers from all items or from the 20% most popular.
Reports target exposure (T-HR@50, mean target rank) for the same 5 unpopular targets.

Usage: python benchmarks/surrogate_objectives.py [--seeds 0] [--budget 0.01]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import write_result

VARIANTS = [
    ("random", {}),
    ("surrogate", {"objective": "likelihood", "pool_fraction": 1.0}),
    ("surrogate", {"objective": "likelihood", "pool_fraction": 0.2}),
    ("surrogate", {"objective": "influence", "pool_fraction": 0.2}),
    ("surrogate", {"objective": "influence", "pool_fraction": 1.0}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", default="0,1,2,3,4", help="indices into VARIANTS")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import recguard
    from recguard.attacks.poisoning import make_attack, select_targets
    from recguard.metrics import evaluate, target_exposure

    data = recguard.data.load("ml-100k")
    split = data.split()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        targets = select_targets(split.train, "unpopular", 5, np.random.default_rng([seed, 7919])).tolist()
        clean = recguard.SASRec(max_len=50).fit(split, rng=seed, progress=False)
        base = target_exposure(clean, split, targets)
        rows.append({"seed": seed, "variant": "clean", "T-HR@50": base["T-HR@50"], "mean_rank": base["mean_rank"],
                     "NDCG@10": evaluate(clean, split)["NDCG@10"]})
        print(rows[-1], flush=True)
        for name, params in [VARIANTS[int(i)] for i in args.variants.split(",")]:
            atk = make_attack(name, budget=args.budget, targets=targets, max_profile_length=50, **params)
            if name == "surrogate":
                atk = atk.with_surrogate(clean)
            t0 = time.perf_counter()
            res = atk.poison(split.train, rng=seed)
            craft = time.perf_counter() - t0
            victim = recguard.SASRec(max_len=50).fit(split.with_train(res.data), rng=seed, progress=False)
            te = target_exposure(victim, split, targets)
            rows.append({"seed": seed, "variant": name, **params, "T-HR@50": te["T-HR@50"], "T-HR@10": te["T-HR@10"],
                         "mean_rank": te["mean_rank"], "NDCG@10": evaluate(victim, split)["NDCG@10"], "craft_s": craft})
            print(rows[-1], flush=True)
    write_result("surrogate_objectives", {"budget": args.budget, "rows": rows})


if __name__ == "__main__":
    main()
