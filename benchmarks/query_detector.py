"""The query-stream detector against extraction accounts: how early it flags them, at what cost (issue 28).

Usage:
    python benchmarks/query_detector.py --dataset amazon-office --seeds 0,1,2
    python benchmarks/query_detector.py --dataset ml-1m --seeds 0

For every seed: the SASRec victim of benchmarks/extraction_defenses.py (trained there if absent);
the training users split 80/20 at random; :class:`recguard.defenses.querystream.QueryStreamDetector`
fitted on the 80% (its own 70/30 split sets the threshold for a 1% false-positive budget; its
simulated attack is data-free, random share 0.1, its own seed). Then the accounts of attacks it
never saw, each of ``--accounts`` streams of 50 queries generated against the victim with other
seeds: data-free (random share 0.1, the simulated family), data-free with random share 0.3, and
few-shot from 10% of the training users' real histories (the adaptive attacker: real-looking
starts). Recorded per attack: the share of accounts flagged within their first 10% of queries
(5 of 50), flagged at all, and the median query at which they are flagged; and the share of the
held-out 20% of genuine users ever flagged over their first 50 queries (the false-positive rate),
over their last 50 items' queries (the window an established user's query shows), and over
either. ``--windows first`` fits the detector on first windows only (revision 1; results
``query_detector_<dataset>_first_window.json``).
The summary goes to benchmarks/results/query_detector_<dataset>.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import HERE, data_path, kept_cells, parse_args, write_result

ATTACKS = {"data-free": {"random_share": 0.1}, "data-free-rs0.3": {"random_share": 0.3}, "few-shot": {"random_share": 0.1}}
_FITTED: dict = {}  # seed -> (detector, fit seconds, held-out genuine streams, their flagged query)


def _cell(split, attack: str, seed: int, args) -> dict:
    import time

    from extraction_defenses import _victim

    from recguard.attacks.extraction import generate
    from recguard.defenses.querystream import QueryStreamDetector
    from recguard.victims import BlackBoxVictim

    victim = _victim(split, seed, args)
    gen = np.random.default_rng([seed, 99])
    users = gen.permutation(split.train.num_users)
    cut = int(round(0.8 * len(users)))
    if seed not in _FITTED:  # one fit per seed serves its attacks (the fit is deterministic given the seed)
        t0 = time.perf_counter()
        detector = QueryStreamDetector(max_flag_share=0.01, windows=args.windows, seed=np.random.default_rng([seed, 1]))
        detector.fit(victim, split.train.select_users(np.sort(users[:cut])))
        fit_s = time.perf_counter() - t0
        held = [split.train[u] for u in users[cut:]]
        first, last = detector.flagged_at([h[:50] for h in held]), detector.flagged_at([h[-50:] for h in held])
        _FITTED.clear()
        _FITTED[seed] = (detector, fit_s, held, first, last)
    detector, fit_s, genuine, genuine_at, last_at = _FITTED[seed]
    real = None
    if attack == "few-shot":
        holders = gen.choice(split.train.num_users, size=max(1, int(round(0.1 * split.train.num_users))), replace=False)
        real = [split.train[u].tolist() for u in holders]
    transcript = generate(BlackBoxVictim(victim, k=100), num_sequences=args.accounts, length=50, seeds=real,
                          rng=np.random.default_rng([seed, 2024]), progress=False, **ATTACKS[attack])
    at = detector.flagged_at([transcript.seqs[i, : transcript.lengths[i]] for i in range(len(transcript.seqs))])
    flagged = at > 0
    return {"attack": attack, "seed": seed, "accounts": int(len(at)), "flagged_within_10pct": float(np.mean(flagged & (at <= 5))),
            "flagged": float(np.mean(flagged)), "median_query_flagged": float(np.median(at[flagged])) if flagged.any() else None,
            "genuine_users": int(len(genuine)), "genuine_flagged": float(np.mean(genuine_at > 0)),
            "genuine_flagged_last_window": float(np.mean(last_at > 0)),
            "genuine_flagged_either": float(np.mean((genuine_at > 0) | (last_at > 0))), "detector": detector.info_,
            "fit_s": fit_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-1m", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--accounts", type=int, default=500)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--windows", default="first+last", choices=["first+last", "first"],
                    help="the genuine streams the detector fits on (first: revision 1)")
    args = parse_args(ap)
    import recguard
    from recguard.audit.results import mean_interval

    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    cells = kept_cells(HERE.parent / "runs" / "bench" / f"query_detector_{args.dataset}", args.seeds, args.attacks,
                       lambda attack, seed: f"{attack}_a{args.accounts}_r{2 if args.windows == 'first+last' else 1}_seed{seed}.json",
                       lambda attack, seed: _cell(split, attack, seed, args),
                       lambda c: (f"{c['attack']:16s} seed {c['seed']}: within 10% {c['flagged_within_10pct']:.3f} ever "
                                  f"{c['flagged']:.3f} median query {c['median_query_flagged']} genuine flagged "
                                  f"{c['genuine_flagged']:.4f}"))
    summary = {attack: {m: mean_interval([c[m] for c in cells if c["attack"] == attack])
                        for m in ("flagged_within_10pct", "flagged", "median_query_flagged", "genuine_flagged",
                                  "genuine_flagged_last_window", "genuine_flagged_either")}
               for attack in sorted({c["attack"] for c in cells})}
    suffix = "" if args.windows == "first+last" else "_first_window"
    write_result(f"query_detector_{args.dataset}{suffix}", {"cells": cells, "summary": summary, "settings": vars(args)})


if __name__ == "__main__":
    main()
