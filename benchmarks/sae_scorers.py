"""Which SAE-based score finds injected fake users? The evidence behind the ``sae`` defense (issue 27).

Usage:
    python benchmarks/sae_scorers.py --dataset amazon-office --seeds 0,1,2
    python benchmarks/sae_scorers.py --dataset amazon-beauty --seeds 0 --attacks random,surrogate

For every (attack, seed): poison the training data at ``--budget`` (1%) with the attack's default
targets, train SASRec (max_len 50, patience 3) on it, fit the TopK SAE probe (k 8, ×16) on its
states, and score every training user in several ways. The defender's simulated fakes (Random at
1%, its own targets, never the injected users) are encoded through the same victim and SAE.

Scores compared (ROC-AUC and PR-AUC against the injected labels, and the recall of the injected
users among the top 1%):
- ``simulated_latents``: the mean rank of the user's code on the 10 latents whose mean code best
  separates the simulated fakes from the users (the scorer the issue proposed);
- ``simulated_logistic``: a logistic regression of simulated fakes against the users on the mean codes;
- ``low_reconstruction_error``: minus the SAE's relative reconstruction error at the last position;
- ``lockstep_codes``: cosine similarity of the mean code to its 0.25%-th most similar other user;
- ``lockstep_codes_rarity``: the same with each latent weighted by log(U / users it fires on)
  (the ``sae`` defense's score);
- ``lockstep_representation``: the same neighbour similarity on the raw last-position
  representation (no SAE), as a reference.
The surrogate and coverage attacks use a clean model of the same seed as their surrogate.
Each finished cell is kept in runs/bench/sae_scorers_<dataset>/; the summary goes to
benchmarks/results/sae_scorers_<dataset>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import HERE, data_path, kept_cells, parse_args, poison_for_seed, write_result

SCORERS = ("simulated_latents", "simulated_logistic", "low_reconstruction_error", "lockstep_codes", "lockstep_codes_rarity",
           "lockstep_representation")


def _scores(probe, train, sim_seqs: list, group_size: int, seed: int) -> dict:
    import torch
    from scipy.stats import rankdata
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from recguard.defenses.saedetect import latent_rarity, neighbour_similarity, user_codes

    codes, sim_codes = user_codes(probe, train), user_codes(probe, sim_seqs)
    n = len(codes)
    both, label = np.vstack([codes, sim_codes]), np.r_[np.zeros(n), np.ones(len(sim_codes))]
    separation = np.array([roc_auc_score(label, both[:, j]) if both[:, j].std() > 0 else 0.5 for j in range(both.shape[1])])
    chosen = np.argsort(-separation, kind="stable")[:10]
    logistic = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=seed).fit(both, label)
    x = train.padded(probe.victim.max_len)
    states = torch.cat([probe.site.last(torch.from_numpy(x[s:s + 512])) for s in range(0, n, 512)])
    with torch.no_grad():
        rebuilt = probe.sae_.decode(probe.sae_.encode(states))
    error = ((rebuilt - states) ** 2).sum(1) / (states ** 2).sum(1).clamp_min(1e-12)
    rarity = latent_rarity(codes)
    return {
        "simulated_latents": np.mean([rankdata(codes[:, j]) for j in chosen], axis=0),
        "simulated_logistic": logistic.decision_function(codes),
        "low_reconstruction_error": -error.numpy(),
        "lockstep_codes": neighbour_similarity(codes, group_size),
        "lockstep_codes_rarity": neighbour_similarity(codes * rarity, group_size),
        "lockstep_representation": neighbour_similarity(states.numpy(), group_size),
    }


def _cell(split, attack: str, seed: int, args, clean_cache: dict) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from recguard.attacks.poisoning import make_attack
    from recguard.probes import SAEProbe

    res, poisoned, victim = poison_for_seed(split, attack, seed, budget=args.budget, max_len=args.max_len, clean_cache=clean_cache)
    t0 = time.perf_counter()
    model = victim().fit(poisoned, rng=seed)
    probe = SAEProbe(model, k=8, expansion=16, seed=seed).fit(poisoned)
    train = poisoned.train
    sim = make_attack("random", budget=0.01, max_profile_length=args.max_len).poison(train, rng=np.random.default_rng([seed, 11]))
    group_size = max(2, int(round(0.0025 * train.num_users)))
    scores = _scores(probe, train, [np.asarray(sim.data[u]) for u in sim.fake_users], group_size, seed)
    fake = np.zeros(train.num_users, dtype=bool)
    fake[res.fake_users] = True
    top = max(1, int(round(0.01 * train.num_users)))
    out = {"attack": attack, "seed": seed, "budget": args.budget, "fakes": int(fake.sum()), "seconds": time.perf_counter() - t0}
    for name, s in scores.items():
        order = np.argsort(-s, kind="stable")[:top]
        out[name] = {"roc_auc": float(roc_auc_score(fake, s)), "pr_auc": float(average_precision_score(fake, s)),
                     "recall_top1pct": float(fake[order].sum() / fake.sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-1m", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--attacks", default="random,popular,segment,surrogate,camouflage")
    ap.add_argument("--budget", type=float, default=0.01)
    ap.add_argument("--max-len", type=int, default=50)
    args = parse_args(ap)
    import recguard
    from recguard.audit.results import mean_interval

    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    clean_cache: dict = {}
    cells = kept_cells(HERE.parent / "runs" / "bench" / f"sae_scorers_{args.dataset}", args.seeds, args.attacks,
                       lambda attack, seed: f"{attack}_b{args.budget:g}_seed{seed}.json",
                       lambda attack, seed: _cell(split, attack, seed, args, clean_cache),
                       lambda c: f"{c['attack']:10s} seed {c['seed']}: " + "  ".join(
                           f"{s} {c[s]['roc_auc']:.3f}/{c[s]['pr_auc']:.2f}" for s in SCORERS))
    summary = {attack: {s: {m: mean_interval([c[s][m] for c in cells if c["attack"] == attack])
                            for m in ("roc_auc", "pr_auc", "recall_top1pct")} for s in SCORERS}
               for attack in sorted({c["attack"] for c in cells})}
    write_result(f"sae_scorers_{args.dataset}", {"cells": cells, "summary": summary, "settings": vars(args)})


if __name__ == "__main__":
    main()
