"""In-sequence positions vs prefix states as SAE training rows (issue 7, docs/probes.md).

Usage: python benchmarks/probe_train_on.py [--victim DIR] [--epochs 5] [--threads 2]

Trains (or loads) a SASRec on the embedded ML-100k (max length 50, seed 0), then fits the
same TopK SAE (k = 8, 16x) on each kind of training rows and reports FVU, NDCG recovered,
latents silent at the probed position and the interpretable share.
Result: benchmarks/results/probe_train_on.json.
"""

from __future__ import annotations

import argparse
import time

from _common import parse_args, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", default=None, help="a saved ML-100k victim (default: train SASRec max_len 50, seed 0)")
    ap.add_argument("--epochs", type=int, default=5)
    args = parse_args(ap)
    import recguard
    from recguard.probes import SAEProbe

    data = recguard.data.load("ml-100k")
    split = data.split()
    victim = recguard.load(args.victim) if args.victim else recguard.SASRec(max_len=50).fit(split, rng=0)
    rows = []
    for train_on in ("positions", "prefixes"):
        t0 = time.perf_counter()
        probe = SAEProbe(victim, k=8, expansion=16, epochs=args.epochs, train_on=train_on, seed=0).fit(split)
        f, d = probe.fidelity(), probe.dictionary_summary()
        rows.append({"train_on": train_on, "train_rows": f["train_rows"], "fvu": f["fvu"], "ndcg_recovered": f["ndcg_recovered"],
                     "silent_at_probe_fraction": f["silent_at_probe_fraction"], "dead_fraction": f["dead_fraction"],
                     "interpretable": d["interpretable"], "interpretable_share": d["interpretable_share"],
                     "mean_confidence": d["mean_confidence"], "time_s": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    write_result("probe_train_on", {"victim": args.victim or "SASRec(max_len=50), ML-100k, seed 0",
                                    "victim_ndcg@10": recguard.evaluate(victim, split, ks=(10,))["NDCG@10"], "rows": rows})


if __name__ == "__main__":
    main()
