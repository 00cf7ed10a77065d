"""Training throughput and exact full-ranking evaluation cost against the catalogue size.

1. Training: SASRec (64-dim, 2 blocks, max length 50, batch 128, AdamW) steps on synthetic
   sequences whose lengths are drawn from Amazon Beauty's length distribution, with
   catalogues of 3k, 12k, 50k and 200k items, for each loss. Reports positions per second
   (predicted next items per second of training step, optimiser included).
2. Evaluation: exact full ranking (``recguard.evaluate``, memory-bounded user batches) of
   SASRec on the same kind of sequences, for 12k, 200k and 1M items, timed on a sample
   of users; the cost per (user × item) is extrapolated to 22k users × 12k items and to
   100k users × 1M items.

Usage: python benchmarks/catalogue_scale.py --threads 2 [--items 3000,12000,50000,200000]
       [--losses ce,sampled_ce,gbce] [--steps 20] [--eval-items 12000,200000,1000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import SHARED, parse_args, training_step, write_result


def beauty_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` sequence lengths drawn from Amazon Beauty's (the shared file), or a geometric stand-in."""
    path = SHARED / "data" / "amazon-beauty"
    if (path / "amazon-beauty.inter").exists():
        import recguard

        lengths = recguard.data.load("amazon-beauty", path=path).lengths
        return rng.choice(lengths, size=n, replace=True)
    return 5 + rng.geometric(0.25, size=n)


def synthetic(num_items: int, num_users: int, seed: int = 0):
    """A SequenceData with Beauty-like lengths and Zipf(1.1)-like item popularity."""
    from recguard.data import SequenceData

    rng = np.random.default_rng(seed)
    lengths = beauty_lengths(rng, num_users).astype(np.int64)
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    p = ranks**-1.1
    p /= p.sum()
    items = rng.choice(num_items, size=int(lengths.sum()), p=p).astype(np.int64) + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return SequenceData(items=items, offsets=offsets, num_items=num_items)


def train_rate(num_items: int, loss: str, steps: int, seed: int = 0, *, device: str = "cpu", batch_size: int = 128,
               bf16: bool = False, max_len: int = 50) -> dict:
    """Positions per second of SASRec training steps (optimiser included) on a synthetic catalogue of
    ``num_items`` items, after 3 warm-up steps; ``bf16``: the forward and loss under bfloat16 autocast."""
    import recguard
    from recguard.data._core import pad_from_csr
    from recguard.victims._train import batches, training_optimizer

    data = synthetic(num_items, batch_size * (steps + 3), seed)
    victim = recguard.SASRec(max_len=max_len, loss=loss, device=device)
    victim.num_items = num_items
    module = victim.new_module(num_items).to(victim.device)
    module.train()
    opt, _ = training_optimizer(victim, module, num_items)  # what fit() uses, sparse item rows included
    take = np.minimum(data.lengths, max_len + 1)
    gen = torch.Generator(device=victim.device).manual_seed(seed)
    on_gpu = victim.device.type == "cuda"
    positions, elapsed = 0, 0.0
    for i, users in enumerate(batches(take, batch_size, np.random.default_rng(seed))[: steps + 3]):
        x = torch.from_numpy(pad_from_csr(data.items, data.offsets[:-1][users], data.lengths[users], int(take[users].max())))
        if on_gpu:
            torch.cuda.synchronize()
        t = time.perf_counter()
        training_step(victim, module, opt, x, torch.ones(len(users)), gen, "bfloat16" if bf16 else "float32")
        if on_gpu:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if i >= 3:  # warm-up
            positions += int(((x[:, :-1] > 0) & (x[:, 1:] > 0)).sum())
            elapsed += dt
    return {"items": num_items, "loss": loss, "objective": victim.objective.describe(), "steps": steps, "device": str(victim.device),
            "batch_size": batch_size, "bf16": bf16, "positions_per_s": positions / elapsed, "s_per_step": elapsed / steps}


def eval_rate(num_items: int, users: int, seed: int = 0) -> dict:
    import recguard
    from recguard.data import Split

    data = synthetic(num_items, users, seed)
    split = data.split()
    victim = recguard.SASRec(max_len=50)
    victim.build(num_items)  # untrained weights: the cost of ranking does not depend on them
    victim.num_items = num_items
    assert isinstance(split, Split)
    t = time.perf_counter()
    out = recguard.evaluate(victim, split, which="test", ks=(10,))
    dt = time.perf_counter() - t
    n = out["users"]
    return {"items": num_items, "users": n, "seconds": dt, "ns_per_user_item": 1e9 * dt / (n * num_items),
            "s_per_1k_users": 1000 * dt / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", default="3000,6000,12000,50000,200000")
    ap.add_argument("--losses", default="ce,sampled_ce,gbce")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--eval-items", default="12000,200000,1000000")
    ap.add_argument("--eval-users", type=int, default=3000)
    ap.add_argument("--tag", default="")
    args = parse_args(ap)
    rows = []
    for n in [int(v) for v in args.items.split(",") if v]:
        for loss in [v for v in args.losses.split(",") if v]:
            r = train_rate(n, loss, args.steps)
            rows.append(r)
            print(f"train {n:>8} items {loss:>10}: {r['positions_per_s']:>9.0f} positions/s", flush=True)
    evals = []
    for n in [int(v) for v in args.eval_items.split(",") if v]:
        r = eval_rate(n, args.eval_users)
        evals.append(r)
        print(f"eval  {n:>8} items: {r['s_per_1k_users']:.2f} s per 1k users, {r['ns_per_user_item']:.3f} ns per user-item", flush=True)
    by = {(r["items"], r["loss"]): r["positions_per_s"] for r in rows}
    sizes = sorted({r["items"] for r in rows})
    falls = {loss: by[(sizes[0], loss)] / by[(sizes[-1], loss)] for loss in {r["loss"] for r in rows}
             if (sizes[0], loss) in by and (sizes[-1], loss) in by}
    ev = {r["items"]: r for r in evals}
    projections = {}
    if 12000 in ev:
        projections["22k users x 12k items (s)"] = ev[12000]["ns_per_user_item"] * 22_363 * 12_101 / 1e9
    if 1_000_000 in ev:
        projections["100k users x 1M items (s)"] = ev[1_000_000]["ns_per_user_item"] * 100_000 * 1_000_000 / 1e9
    write_result(f"catalogue_scale{args.tag}", {"train": rows, "throughput_fall_smallest_to_largest": falls,
                                                 "eval": evals, "eval_projections": projections})


if __name__ == "__main__":
    main()
