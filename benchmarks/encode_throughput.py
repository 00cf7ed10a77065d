"""Text-encoding throughput of the LoRec/LLM4Dec user prompts (issue 4 cost figure).

Usage: python benchmarks/encode_throughput.py [--dataset ml-100k] [--users 150] [--threads 2]
           [--model minilm] [--cache]

Encodes the LoRec prompts (training items of the leave-one-out split) of the first N users
(0 = all) and reports users/s and tokens/s. The embedding cache is off unless `--cache`:
then the run also fills the cache that the defenses reuse (`--dataset ml-1m --users 0
--cache` prepares the ML-1M defense grid). Result: benchmarks/results/encode_throughput[_<dataset>].json.
"""

from __future__ import annotations

import argparse
import time

from _common import require_ml1m, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m"])
    ap.add_argument("--users", type=int, default=150)
    ap.add_argument("--cache", action="store_true", help="read and fill the embedding cache (timings then count only new texts)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import recguard
    from recguard.defenses.text import TextEncoder, domain_for, item_texts, user_prompts

    train = recguard.data.load(args.dataset, path=require_ml1m() if args.dataset == "ml-1m" else None).split().train
    titles = item_texts(train.meta, train.num_items)
    n = train.num_users if args.users <= 0 else min(args.users, train.num_users)
    texts = user_prompts([train[u] for u in range(n)], titles, domain_for(train.name))
    enc = TextEncoder(args.model, use_cache=args.cache, batch_size=args.batch_size)
    enc.encode(texts[:4], progress=False)  # load the model outside the timing
    enc.stats.update(tokens=0, encoded_texts=0, encode_s=0.0)
    t0 = time.perf_counter()
    enc.encode(texts, progress=False)
    dt = time.perf_counter() - t0
    write_result("encode_throughput" + ("" if args.dataset == "ml-100k" else f"_{args.dataset}"), {
        "dataset": args.dataset, "cache": args.cache, "model": args.model, "context": enc.context,
        "users": enc.stats["encoded_texts"], "tokens": enc.stats["tokens"], "seconds": dt,
        "users_per_s": enc.stats["encoded_texts"] / dt, "tokens_per_s": enc.stats["tokens"] / dt,
        "mean_tokens_per_user": enc.stats["tokens"] / max(1, enc.stats["encoded_texts"]),
    })


if __name__ == "__main__":
    main()
