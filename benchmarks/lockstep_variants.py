"""How the lockstep detector's score was chosen (issue 26): variants of the group-overlap score
on one poisoned copy of the training data, no victim trained.

Usage:
    python benchmarks/lockstep_variants.py --dataset amazon-office             # where the choice was made
    python benchmarks/lockstep_variants.py --dataset amazon-beauty --variants kth_sqrt --shares 0.0025

Variants of a user's score, from the rarity-weighted overlap o(u, v) = Σ_{i ∈ I_u ∩ I_v} log(U / n_i)
with its partners v, ordered by overlap: ``mean_top`` (mean over the g closest), ``kth`` (the g-th
closest), ``kth_sqrt`` (the g-th over the square root of u's own rarity mass; recguard's
``lockstep``) and ``kth_mass`` (the g-th over the whole mass). g is 10 (``--groups``) or a share
of the users (``--shares``). Each is decided by the default decision rule (mixture within 3%);
the row records ROC-AUC, recall on the injected users and the share of genuine users flagged.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import parse_args, require_shared, write_result

VARIANTS = ("mean_top", "kth", "kth_sqrt", "kth_mass")


def variant_scores(train, group: int, block: int = 2048) -> dict[str, np.ndarray]:
    from scipy import sparse

    n_users, n_items = train.num_users, train.num_items
    rows = np.repeat(np.arange(n_users), train.lengths)
    x = sparse.csr_matrix((np.ones(len(train.items)), (rows, train.items - 1)), shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    idf = np.log(n_users / np.maximum(np.asarray(x.sum(0)).ravel(), 1.0))
    weighted = x @ sparse.diags(idf)
    mass = np.maximum(np.asarray(weighted.sum(1)).ravel(), 1e-12)
    wt = weighted.T.tocsc()
    out = {v: np.zeros(n_users) for v in VARIANTS}
    for s in range(0, n_users, block):
        e = min(s + block, n_users)
        o = (x[s:e] @ wt).toarray()
        o[np.arange(e - s), np.arange(s, e)] = -np.inf
        top = np.partition(o, o.shape[1] - group, axis=1)[:, -group:]
        kth = top.min(1)
        out["mean_top"][s:e], out["kth"][s:e] = top.mean(1), kth
        out["kth_sqrt"][s:e], out["kth_mass"][s:e] = kth / np.sqrt(mass[s:e]), kth / mass[s:e]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty"])
    ap.add_argument("--attacks", default="random,popular,camouflage")
    ap.add_argument("--budgets", default="0.005,0.01,0.03")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--groups", default="10", help="comma-separated partner ranks g")
    ap.add_argument("--shares", default="0.002,0.0025,0.005", help="comma-separated g as a share of the users")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = parse_args(ap)
    import recguard
    from sklearn.metrics import roc_auc_score

    from recguard.attacks.poisoning import make_attack
    from recguard.defenses import Decision

    train = recguard.data.load(args.dataset, path=require_shared(args.dataset)).split().train
    rows = []
    for attack in args.attacks.split(","):
        for budget in [float(b) for b in args.budgets.split(",")]:
            res = make_attack(attack, budget=budget, max_profile_length=50).poison(train, rng=args.seed)
            fake = np.zeros(res.data.num_users, dtype=bool)
            fake[res.fake_users] = True
            groups = [("g", int(g)) for g in args.groups.split(",") if g] + [
                ("share", float(s)) for s in args.shares.split(",") if s]
            for kind, value in groups:
                g = value if kind == "g" else max(2, int(round(value * res.data.num_users)))
                t0 = time.perf_counter()
                scores = variant_scores(res.data, g)
                secs = time.perf_counter() - t0
                for v in args.variants.split(","):
                    d = Decision().decide(scores[v])
                    row = {"attack": attack, "budget": budget, "group": g, kind: value, "variant": v,
                           "ROC-AUC": float(roc_auc_score(fake, scores[v])), "recall": float(d.flagged[fake].mean()),
                           "genuine_flagged": float(d.flagged[~fake].mean()), "seconds": secs}
                    rows.append(row)
                    print(f"{attack:10s} {budget:.3f} {kind}={value:<7g} g={g:<4d} {v:9s} AUC {row['ROC-AUC']:.3f} "
                          f"recall {row['recall']:.2f} genuine flagged {100 * row['genuine_flagged']:.1f}%", flush=True)
    write_result(f"lockstep_variants_{args.dataset}", {"seed": args.seed, "rows": rows})


if __name__ == "__main__":
    main()
