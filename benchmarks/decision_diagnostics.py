"""Where do the real fakes' suspicion scores fall, and what does each decision rule flag? (issue 24)

Usage:
    python benchmarks/decision_diagnostics.py --dataset amazon-office --seeds 0,1,2,3,4 --budgets 0.01,0.03
    python benchmarks/decision_diagnostics.py --dataset amazon-beauty --seeds 0,1,2 --scorers pca
    python benchmarks/decision_diagnostics.py --dataset amazon-office --seeds 0,1,2 --scorers lorec --attacks random,segment
    python benchmarks/decision_diagnostics.py --dataset amazon-beauty --seeds 0,1,2,3,4 --budgets 0.01,0.03 \
        --attacks random,popular,camouflage --scorers pca,lockstep --tag _i26          # issue 26

For every (attack, budget, seed) the training data is poisoned once and each scorer scores
every user of it, exactly as its defense would (PCA-select and lockstep: the data as received; LLM4Dec:
its PU head on user-text embeddings; LoRec: the calibrator's mean probability over its last
3 updates while the victim trains unweighted). Nothing here trains a victim on the defense's
decision, so the whole grid of rules costs one scoring per cell; the lift a decision removes
is measured by the audit (`benchmarks/defenses.py`, `benchmarks/scorer_ceiling.py`).

Per cell and scorer it records the ROC-AUC, where the real fakes fall in the score ranking
(their median and lowest percentile), how well the scorer separates the defender's *own*
simulated fakes (separation AUC), and for each rule of the decision layer — top 0.5/1/2/5%,
mixture, group, outlier, simulated (the pre-issue-24 rule) and each detector's own rule — the
recall on the injected fakes and the share of genuine users flagged. The injected labels
are read only here, after scoring.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import parse_args, require_shared, write_result

RULES = [("top", 0.005), ("top", 0.01), ("top", 0.02), ("top", 0.05), ("mixture", 0.02), ("group", 0.03), ("outlier", 0.02),
         ("simulated", 0.02)]


def _rules_table(scores, simulated, is_fake, own_flags=None) -> dict:
    from sklearn.metrics import roc_auc_score

    from recguard.defenses.decision import Decision

    n_genuine = int((~is_fake).sum())
    pct = np.argsort(np.argsort(scores, kind="stable"), kind="stable") / max(1, len(scores) - 1)  # 0 = least suspicious
    out = {"ROC-AUC": float(roc_auc_score(is_fake, scores)),
           "fake_percentile_median": float(np.median(pct[is_fake])), "fake_percentile_min": float(pct[is_fake].min())}
    rules = {}
    for rule, share in RULES:
        if rule == "simulated" and simulated is None:
            continue
        d = Decision(rule=rule, max_flag_share=share).decide(scores, simulated=simulated)
        out.setdefault("simulated_separation_auc", d.info.get("simulated_separation_auc"))
        rules[f"{rule}@{share:g}"] = _flags(d.flagged, is_fake, n_genuine)
    if own_flags is not None:
        rules["own"] = _flags(np.asarray(own_flags, dtype=bool), is_fake, n_genuine)
    out["rules"] = rules
    return out


def _flags(flagged, is_fake, n_genuine) -> dict:
    return {"recall": float(flagged[is_fake].mean()), "genuine_flagged": float((flagged & ~is_fake).sum() / max(1, n_genuine)),
            "flagged": int(flagged.sum())}


def _score_cell(scorer: str, poisoned, make_victim, seed: int) -> tuple:
    """(scores, simulated scores, own-rule flags, seconds) of one scorer on the poisoned split."""
    from recguard.defenses import LLM4Dec, LockstepDetector, LoRec, PCASelect

    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 24])
    if scorer == "pca":
        out = PCASelect(rule="top").detect(poisoned, make_victim=make_victim, rng=rng)
        own = None
    elif scorer == "lockstep":
        out = LockstepDetector(rule="top").detect(poisoned, make_victim=make_victim, rng=rng)
        own = None
    elif scorer == "llm4dec":
        out = LLM4Dec(rule="prior").detect(poisoned, make_victim=make_victim, rng=rng)
        own = out.flagged
    else:
        _, out = LoRec(mode="detect-retrain", rule="top").train(poisoned, make_victim=make_victim, seed=seed, rng=rng)
        own = None
    sim = out.simulated_scores
    return out.scores, sim, own, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="0.01")
    ap.add_argument("--attacks", default="random,popular,segment,surrogate,camouflage")
    ap.add_argument("--scorers", default="pca,llm4dec")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--tag", default="")
    args = parse_args(ap)
    import recguard
    from recguard.attacks.poisoning import ModelGuidedAttack, make_attack

    path = None if args.dataset == "ml-100k" else require_shared(args.dataset)
    data = recguard.data.load(args.dataset, path=path)
    split = data.split()

    def make_victim():
        return recguard.SASRec(max_len=args.max_len, patience=3)

    cells = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        clean = None
        for attack in [a for a in args.attacks.split(",") if a]:
            for budget in [float(b) for b in args.budgets.split(",")]:
                atk = make_attack(attack, budget=budget, max_profile_length=args.max_len)
                if isinstance(atk, ModelGuidedAttack):  # the audited model itself (white-box)
                    clean = clean or make_victim().fit(split, rng=seed)
                    atk = atk.with_surrogate(clean)
                res = atk.poison(split.train, rng=np.random.default_rng([seed, 7, int(budget * 1000)]))
                poisoned = split.with_train(res.data)
                is_fake = np.zeros(res.data.num_users, dtype=bool)
                is_fake[res.fake_users] = True
                row = {"attack": attack, "budget": budget, "seed": seed, "fakes": int(is_fake.sum())}
                for scorer in args.scorers.split(","):
                    scores, sim, own, secs = _score_cell(scorer, poisoned, make_victim, seed)
                    row[scorer] = {**_rules_table(np.asarray(scores), None if sim is None else np.asarray(sim), is_fake, own),
                                   "seconds": secs}
                    r = row[scorer]
                    print(f"{attack:10s} {budget:.2f} s{seed} {scorer:8s} AUC {r['ROC-AUC']:.3f} "
                          f"fakes@pct med {r['fake_percentile_median']:.3f} min {r['fake_percentile_min']:.3f} "
                          f"simsep {r.get('simulated_separation_auc') or float('nan'):.3f} | "
                          + " ".join(f"{k}:{v['recall']:.2f}/{100 * v['genuine_flagged']:.1f}%" for k, v in r["rules"].items()), flush=True)
                cells.append(row)
    write_result(f"decision_{args.dataset}{args.tag}", {"cells": cells, "rules": [f"{r}@{s:g}" for r, s in RULES]})


if __name__ == "__main__":
    main()
