"""Does ``rule="group"`` find a campaign when there is one and nobody when there is none? (issue 24)

Usage:
    python benchmarks/group_rule.py --dataset amazon-office --seeds 0,1      # where density_ratio was chosen
    python benchmarks/group_rule.py --dataset amazon-beauty --seeds 0,1      # unseen
    python benchmarks/group_rule.py --nulls 200                              # synthetic populations, no campaign

For every seed the training data is scored as received (no attack) and after each attack at
each budget, by PCA-select and the lockstep detector, exactly as their defenses score it.
No victim trains: this is the decision alone. Per case it records the group rule's best cut,
its density ratio (the group's mean normalised spacing over the tail's; the rule flags at
≤ 0.1) and its log-likelihood ratio, and the recall on the injected fakes and the share of
genuine users flagged. The injected labels are read only here, after deciding.
Results: benchmarks/results/group_rule_<dataset>.json.

``--nulls N`` instead draws N populations of 2,000, 5,000 and 22,000 scores from light, exponential,
heavy and bounded tails (no campaign) and records the quantiles of the best cut's density ratio:
how often the rule would flag a group that is not there, at any ``density_ratio``
(benchmarks/results/group_rule_nulls.json).
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import parse_args, require_shared, write_result

CASES = [("none", 0.0), ("random", 0.01), ("popular", 0.01), ("segment", 0.01), ("camouflage", 0.01), ("camouflage", 0.03),
         ("random", 0.03)]


NULL_TAILS = {
    "normal": lambda rng, n: rng.normal(0.0, 1.0, n),
    "gumbel": lambda rng, n: rng.gumbel(0.0, 1.0, n),
    "exponential": lambda rng, n: rng.exponential(1.0, n),
    "lognormal": lambda rng, n: rng.lognormal(0.0, 1.0, n),
    "student-t(3)": lambda rng, n: rng.standard_t(3, n),
    "beta(2,5)": lambda rng, n: rng.beta(2.0, 5.0, n),
    "uniform": lambda rng, n: rng.uniform(0.0, 1.0, n),
}


def nulls(draws: int) -> None:
    from recguard.defenses.decision import DEFAULT_FLAG_SHARE, dense_top_group

    rows = []
    for n in (2000, 5000, 22000):
        for tail, draw in NULL_TAILS.items():
            ratios = np.array([dense_top_group(draw(np.random.default_rng(seed), n), int(DEFAULT_FLAG_SHARE * n))[1]["density_ratio"]
                               for seed in range(draws)])
            q = np.quantile(ratios, [0.005, 0.05, 0.5])
            rows.append({"users": n, "tail": tail, "draws": draws, "q0.5%": float(q[0]), "q5%": float(q[1]), "median": float(q[2]),
                         "share_flagged_at_0.1": float((ratios <= 0.1).mean())})
            print(f"{n:6d} {tail:13s} density ratio 0.5% {q[0]:.3f}  5% {q[1]:.3f}  median {q[2]:.3f}  "
                  f"flagged at 0.1: {100 * rows[-1]['share_flagged_at_0.1']:.1f}%", flush=True)
    write_result("group_rule_nulls", {"rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty"])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--nulls", type=int, default=0, help="instead: this many synthetic populations per size and tail")
    args = parse_args(ap)
    if args.nulls:
        nulls(args.nulls)
        return
    import recguard
    from recguard.attacks.poisoning import make_attack
    from recguard.defenses import LockstepDetector, PCASelect
    from recguard.errors import ConfigError

    split = recguard.data.load(args.dataset, path=str(require_shared(args.dataset))).split()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for attack, budget in CASES:
            if attack == "none":
                poisoned, is_fake = split, np.zeros(split.train.num_users, dtype=bool)
            else:
                try:
                    atk = make_attack(attack, budget=budget, max_profile_length=args.max_len)
                    res = atk.poison(split.train, rng=np.random.default_rng([seed, 7, int(budget * 1000)]))
                except ConfigError as exc:  # e.g. segment on a catalogue without categories
                    print(f"skip {attack}: {exc}")
                    continue
                poisoned = split.with_train(res.data)
                is_fake = np.zeros(res.data.num_users, dtype=bool)
                is_fake[res.fake_users] = True
            for name, detector in (("pca", PCASelect(rule="group")), ("lockstep", LockstepDetector(rule="group"))):
                out = detector.detect(poisoned, make_victim=lambda: recguard.SASRec(max_len=args.max_len),
                                      rng=np.random.default_rng(seed))
                group, flagged = out.info["group"], np.asarray(out.flagged, dtype=bool)
                row = {"scorer": name, "attack": attack, "budget": budget, "seed": seed, "fakes": int(is_fake.sum()),
                       "density_ratio": group["density_ratio"], "log_likelihood_ratio": group["log_likelihood_ratio"],
                       "candidate_users": group["candidate_users"], "flagged": int(flagged.sum()),
                       "recall": float(flagged[is_fake].mean()) if is_fake.any() else None,
                       "genuine_flagged": float((flagged & ~is_fake).sum() / max(1, int((~is_fake).sum())))}
                rows.append(row)
                print(f"{name:8s} {attack:10s} {budget:.2f} s{seed} ratio {row['density_ratio']:.3f} "
                      f"LLR {row['log_likelihood_ratio']:7.1f} flagged {row['flagged']:4d} recall "
                      f"{row['recall'] if row['recall'] is not None else float('nan'):.3f} genuine "
                      f"{100 * row['genuine_flagged']:.2f}%", flush=True)
    write_result(f"group_rule_{args.dataset}", {"rows": rows, "density_ratio_cut": 0.1})


if __name__ == "__main__":
    main()
