"""Cost of one LCT training pass: last block over every position vs the CLS row alone.

Usage:  python benchmarks/lct_pass.py [--users 952] [--max-len 50] [--repeats 5] [--threads 1]

The LCT reads only its CLS state, so its last block needs keys and values at every
position but the query, attention, projection and FFN at the CLS row only
(`TransformerBlock.forward_first`). This times a training pass (forward, backward, AdamW
step over batches of 256 users) both ways on ML-100k-sized inputs (random features of
width 128, lengths drawn like ML-100k's, capped at --max-len), alternating the two,
and checks that in eval mode both give the same CLS states.
Writes benchmarks/results/lct_pass.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import parse_args, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=952)  # ML-100k's 943 users + 9 known fakes
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = parse_args(ap)
    import torch
    import torch.nn.functional as F
    import recguard
    from recguard.defenses.lorec import LCT
    from recguard.defenses.textdefense import pu_loss
    from recguard.victims import attention_mask

    torch.manual_seed(0)
    lengths = np.minimum(recguard.data.load("ml-100k").lengths, args.max_len)
    lengths = np.resize(lengths, args.users)
    order = np.argsort(lengths, kind="stable")
    chunks = [order[s : s + 256] for s in range(0, len(order), 256)]
    batches = []
    for c in chunks:
        lb = int(lengths[c].max())
        valid = torch.arange(lb)[None] >= (lb - torch.from_numpy(lengths[c]))[:, None]
        batches.append((torch.randn(len(c), lb, 128) * valid[..., None], valid, torch.randn(len(c), 384)))
    lct = LCT(128, 384, max_len=args.max_len)
    opt = torch.optim.AdamW(lct.parameters(), lr=1e-2, weight_decay=5e-4)

    def full_forward(feats, valid):  # every block over every position, then the CLS row
        b, l, d = feats.shape
        pos = lct.pe[torch.arange(l, 0, -1)]
        h = torch.cat([lct.cls.expand(b, 1, d), feats + pos[None]], dim=1)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool), valid], dim=1)
        mask = attention_mask(keep, causal=False)
        for blk in lct.blocks:
            h = blk(h, mask)
        return lct.norm(h[:, 0])

    def one_pass(forward) -> float:
        lct.train()
        t = time.perf_counter()
        for feats, valid, text in batches:
            h = forward(feats, valid)
            z = F.gelu(lct.text_proj(text))
            loss = pu_loss(lct.head(h), torch.zeros(len(h))) - F.cosine_similarity(h, z, dim=-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    lct.eval()
    with torch.no_grad():
        gap = max(float((full_forward(f, v) - lct(f, v)).abs().max()) for f, v, _ in batches)
    ways = {"full last block": full_forward, "CLS row only": lct.forward}
    for fwd in ways.values():
        one_pass(fwd)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(args.repeats):
        for name, fwd in ways.items():
            times[name].append(one_pass(fwd))
    med = {k: float(np.median(v)) for k, v in times.items()}
    write_result("lct_pass", {"users": args.users, "max_len": args.max_len, "times_s": times, "median_s": med,
                              "speedup": med["full last block"] / med["CLS row only"], "eval_max_abs_gap": gap})


if __name__ == "__main__":
    main()
