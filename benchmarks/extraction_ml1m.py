"""Model extraction on ML-1M (issue 5 benchmark): data-free and few-shot Agreement@1/10.

Usage:
    python benchmarks/extraction_ml1m.py --victim DIR [--modes data-free,few-shot] [--surrogates sasrec,gru4rec]
        [--sequences 5000] [--k 100] [--epochs 30] [--threads 1]

DIR is a saved SASRec victim trained on the shared ML-1M file (for instance a clean model
from benchmarks/poisoning_ml1m.py: runs/bench/poisoning_ml1m/models/clean_seed0_*). The
generated sequences are as long as the victim's max_len. Agreement is measured over the
real test users' full histories; result: benchmarks/results/extraction_ml1m_<tag>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import HERE, ml1m_victim, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", required=True)
    ap.add_argument("--modes", default="data-free,few-shot")
    ap.add_argument("--surrogates", default="sasrec")
    ap.add_argument("--sequences", type=int, default=5000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--real-fraction", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    data, split, victim = ml1m_victim(args.victim, args.threads)
    from recguard.attacks.extraction import agreement, extract
    from recguard.metrics import evaluate
    from recguard.victims import BlackBoxVictim

    x_test, _ = split.inputs("test", victim.max_len)
    rows = []
    work = HERE.parent / "runs" / "bench" / "extraction_ml1m"
    for mode in args.modes.split(","):
        for arch in args.surrogates.split(","):
            rng = np.random.default_rng(0)
            real = None
            if mode == "few-shot":
                n_real = int(round(args.real_fraction * split.train.num_users))
                real = [split.train[u].tolist() for u in rng.choice(split.train.num_users, size=n_real, replace=False)]
            bb = BlackBoxVictim(victim, k=args.k)
            t0 = time.perf_counter()
            res = extract(bb, mode=mode, num_sequences=args.sequences, real_sequences=real, surrogate=arch,
                          surrogate_config={"max_len": victim.max_len}, epochs=args.epochs, rng=rng, progress=True,
                          checkpoint=work / f"{mode}_{args.sequences}_{args.k}.transcript")
            wall = time.perf_counter() - t0
            rows.append({
                "mode": mode, "surrogate": arch, "queries": res.queries, "pairs": res.transcript.pairs,
                "real_sequences": 0 if real is None else len(real), **agreement(victim, res.surrogate, x_test),
                "surrogate_NDCG@10": evaluate(res.surrogate, split, which="test", ks=(10,))["NDCG@10"],
                "wall_time_s": wall, "query_s": res.info["query_s"], "distill_s": res.info["distill_s"],
                "epochs_run": res.info["distill_epochs_run"],
            })
            print(rows[-1], flush=True)
    write_result(f"extraction_ml1m{args.tag}", {
        "victim": str(Path(args.victim)), "victim_max_len": victim.max_len, "k": args.k, "sequences": args.sequences,
        "victim_test": evaluate(victim, split, which="test", ks=(10,)), "rows": rows,
    })


if __name__ == "__main__":
    main()
