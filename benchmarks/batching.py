"""Length-bucketed vs random batches: SASRec (max_len 200) on ML-100k, seed 0.

recguard's training loop sorts users by length inside shuffled chunks of `bucket`
batches (default 64) to cut padding; `bucket=1` gives plain random batches.

Usage: python benchmarks/batching.py [--buckets 64,1] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

from _common import write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buckets", default="64,1")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import recguard
    import recguard.victims._train as train_mod

    data = recguard.data.load("ml-100k")
    split = data.split()
    original = train_mod.batches
    rows = []
    try:
        for bucket in (int(b) for b in args.buckets.split(",")):
            train_mod.batches = lambda lengths, bs, gen, bucket=bucket: original(lengths, bs, gen, bucket=bucket)
            t0 = time.perf_counter()
            v = recguard.SASRec(max_len=200, epochs=200, eval_every=2, patience=5).fit(split, rng=0, progress=False)
            rows.append({"bucket": bucket, "wall_s": time.perf_counter() - t0, "best_epoch": v.fit_info_["best_epoch"],
                         "best_valid_ndcg@10": v.fit_info_["best_valid_ndcg@10"],
                         "test_ndcg@10": recguard.evaluate(v, split)["NDCG@10"]})
            print(rows[-1], flush=True)
    finally:
        train_mod.batches = original
    write_result("batching", {"rows": rows})


if __name__ == "__main__":
    main()
