"""Text-encoding throughput of the LoRec/LLM4Dec user prompts (issue 4 cost figure).

Usage: python benchmarks/encode_throughput.py [--users 150] [--threads 2] [--model minilm]

Encodes the LoRec prompts of the first N ML-100k users with the cache disabled and
reports users/s and tokens/s. Result: benchmarks/results/encode_throughput.json.
"""

from __future__ import annotations

import argparse
import time

from _common import write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import recguard
    from recguard.defenses.text import TextEncoder, item_texts, user_prompts

    train = recguard.data.load("ml-100k").split().train
    titles = item_texts(train.meta, train.num_items)
    texts = user_prompts([train[u] for u in range(args.users)], titles, "movie")
    enc = TextEncoder(args.model, use_cache=False, batch_size=args.batch_size)
    enc.encode(texts[:4], progress=False)  # load the model outside the timing
    enc.stats.update(tokens=0, encoded_texts=0, encode_s=0.0)
    t0 = time.perf_counter()
    enc.encode(texts, progress=False)
    dt = time.perf_counter() - t0
    write_result("encode_throughput", {
        "model": args.model, "context": enc.context, "users": enc.stats["encoded_texts"], "tokens": enc.stats["tokens"], "seconds": dt,
        "users_per_s": enc.stats["encoded_texts"] / dt, "tokens_per_s": enc.stats["tokens"] / dt,
        "mean_tokens_per_user": enc.stats["tokens"] / max(1, enc.stats["encoded_texts"]),
    })


if __name__ == "__main__":
    main()
