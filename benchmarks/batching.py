"""Length-bucketed vs random batches: SASRec (max_len 200) on ML-100k, seed 0.

recguard's training loop sorts users by length inside shuffled chunks of 64 batches to
cut padding (`batching="length"`, the default); `batching="random"` gives plain shuffled
batches.

Usage: python benchmarks/batching.py [--batching length,random] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

from _common import write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batching", default="length,random")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import recguard

    data = recguard.data.load("ml-100k")
    split = data.split()
    rows = []
    for batching in args.batching.split(","):
        t0 = time.perf_counter()
        v = recguard.SASRec(max_len=200, epochs=200, eval_every=2, patience=5, batching=batching).fit(split, rng=0, progress=False)
        rows.append({"batching": batching, "wall_s": time.perf_counter() - t0, "best_epoch": v.fit_info_["best_epoch"],
                     "best_valid_ndcg@10": v.fit_info_["best_valid_ndcg@10"],
                     "test_ndcg@10": recguard.evaluate(v, split)["NDCG@10"]})
        print(rows[-1], flush=True)
    write_result("batching", {"rows": rows})


if __name__ == "__main__":
    main()
