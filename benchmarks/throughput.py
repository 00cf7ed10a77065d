"""Distance to the machine's limit: SASRec training throughput vs the measured matmul peak.

Measures, in one run and with the same thread count:
1. float32 matmul peak: a large square ``A @ B`` (best of several sizes and repeats);
2. SASRec (64-dim, 2 blocks, max length 200, full-softmax CE) training steps on ML-1M:
   sequence positions per second and the FLOP rate they imply.

FLOPs are counted analytically for the work the step performs (forward + backward =
3× the forward matmul FLOPs): output layer 6·N·d per predicted position (the extra
recompute matmul that the chunked loss needed before 2026-11-26 was never counted),
the blocks' linear layers 6·(4d² + 2d·f) per position of the padded batch, and
attention 12·L·d per position. Elementwise work (softmax, LayerNorm, dropout) is not
counted.

With ``--precision bfloat16`` the step runs under bfloat16 autocast (as ``precision="bfloat16"``
trains); its FLOP rate is then also compared with the bfloat16 matmul peak, measured the same way.

Usage: python benchmarks/throughput.py [--threads 2] [--steps 30] [--repeats 3] [--precision bfloat16] [--tag NAME]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import require_ml1m, training_step, write_result


def matmul_peak(repeats: int = 5, dtype: torch.dtype = torch.float32) -> dict:
    best = {}
    for n in (1024, 2048, 3072, 4096):
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            rates.append(2 * n**3 / (time.perf_counter() - t))
        best[n] = max(rates)
    n_best = max(best, key=best.get)
    return {"gflops": best[n_best] / 1e9, "size": n_best, "by_size_gflops": {k: v / 1e9 for k, v in best.items()}}


def _stock_ce(h, weight, targets, weights, bias=None):
    """The reference loss: materialised logits + F.cross_entropy (what the fused loss replaces)."""
    import torch.nn.functional as F

    logits = h @ weight.T + (bias if bias is not None else 0)
    return (F.cross_entropy(logits, targets, reduction="none") * weights).sum() / weights.sum().clamp_min(1e-12)


def sasrec_throughput(steps: int, seed: int = 0, stock_loss: bool = False, precision: str = "float32") -> dict:
    import recguard
    import recguard.victims._objective as objective_mod

    if stock_loss:  # the full-softmax path of every victim goes through the objective module
        objective_mod.weighted_softmax_ce = _stock_ce
    from recguard.data._core import pad_from_csr
    from recguard.victims._train import batches, training_optimizer

    data = recguard.data.load("ml-1m", path=require_ml1m())
    train = data.split().train
    victim = recguard.SASRec(hidden=64, num_blocks=2, max_len=200, precision=precision)
    victim.num_items = data.num_items
    module = victim.new_module(data.num_items)
    module.train()
    opt, _ = training_optimizer(victim, module, data.num_items)  # what fit() uses (fused AdamW since revision 4)
    lengths = train.lengths
    take = np.minimum(lengths, 201)
    order = batches(take, 128, np.random.default_rng(seed))
    gen = torch.Generator().manual_seed(seed)
    d, n_items, blocks, ffn = 64, data.num_items, 2, 64
    flops = positions = 0.0
    elapsed = 0.0
    for i, users in enumerate(order[: steps + 2]):
        lb = int(take[users].max())
        x = torch.from_numpy(pad_from_csr(train.items, train.offsets[:-1][users], lengths[users], lb))
        t = time.perf_counter()
        training_step(victim, module, opt, x, torch.ones(len(users)), gen, precision)  # as fit() takes it
        dt = time.perf_counter() - t
        if i < 2:  # warm-up steps
            continue
        inp, tgt = x[:, :-1], x[:, 1:]
        pred = int(((inp > 0) & (tgt > 0)).sum())
        padded = inp.numel()
        seq_len = inp.shape[1]
        flops += 6 * n_items * d * pred + blocks * padded * (6 * (4 * d * d + 2 * d * ffn) + 12 * seq_len * d)
        positions += pred
        elapsed += dt
    return {"steps": steps, "positions_per_s": positions / elapsed, "gflops": flops / elapsed / 1e9, "s_per_step": elapsed / steps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--stock-loss", action="store_true", help="use F.cross_entropy on materialised logits (for comparison)")
    ap.add_argument("--tag", default="", help="suffix of the result file (keeps earlier runs)")
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                    help="the step's precision (bfloat16: autocast, as SASRec(precision='bfloat16') trains); the "
                         "float32 matmul peak stays the reference, and the bfloat16 peak is measured beside it")
    ap.add_argument("--repeats", type=int, default=1,
                    help="measure peak and SASRec this many times, alternating; report each and the medians")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = []
    bf16 = args.precision == "bfloat16"
    for r in range(args.repeats):
        peak = matmul_peak()
        thr = sasrec_throughput(args.steps, seed=r, stock_loss=args.stock_loss, precision=args.precision)
        runs.append({"peak_gflops": peak["gflops"], "sasrec": thr, "fraction_of_peak": thr["gflops"] / peak["gflops"]})
        if bf16:
            runs[-1]["bf16_peak_gflops"] = matmul_peak(dtype=torch.bfloat16)["gflops"]
            runs[-1]["fraction_of_bf16_peak"] = thr["gflops"] / runs[-1]["bf16_peak_gflops"]
        print(f"run {r}: peak {peak['gflops']:.0f} GFLOP/s, SASRec {thr['gflops']:.1f} GFLOP/s, "
              f"{thr['positions_per_s']:.0f} positions/s, {100 * runs[-1]['fraction_of_peak']:.1f}% of peak"
              + (f", {100 * runs[-1]['fraction_of_bf16_peak']:.1f}% of the bfloat16 peak" if bf16 else ""), flush=True)
    med = lambda xs: float(np.median(xs))  # noqa: E731
    write_result(f"throughput_t{torch.get_num_threads()}" + ("_stock" if args.stock_loss else "") + ("_bf16" if bf16 else "") + args.tag, {
        "loss": "stock F.cross_entropy" if args.stock_loss else "fused chunked (recguard)",
        "precision": args.precision,
        "median_bf16_peak_gflops": med([r["bf16_peak_gflops"] for r in runs]) if bf16 else None,
        "threads": torch.get_num_threads(),
        "matmul_peak": peak,
        "sasrec_train": thr,
        "fraction_of_peak": med([r["fraction_of_peak"] for r in runs]),
        "runs": runs,
        "median_peak_gflops": med([r["peak_gflops"] for r in runs]),
        "median_positions_per_s": med([r["sasrec"]["positions_per_s"] for r in runs]),
        "median_sasrec_gflops": med([r["sasrec"]["gflops"] for r in runs]),
        "training_revision": __import__("recguard.victims._train", fromlist=["TRAINING_REVISION"]).TRAINING_REVISION,
    })


if __name__ == "__main__":
    main()
