"""Training recipes on ML-100k: batching and initialisation, SASRec (max_len 200).

recguard's training loop sorts users by length inside shuffled chunks of 64 batches to
cut padding (`batching="length"`, the default); `batching="random"` gives plain shuffled
batches. SASRec draws its weights from N(0, 0.02) (revision 3, as in the SASRec-CE paper's
code); the `+legacy` suffix re-draws them the way revisions 1-2 did (item embeddings
N(0, 1/sqrt(d)), positions N(0, 1), PyTorch's default Linear init) to compare.

Usage: python benchmarks/batching.py [--variants length+legacy,length,random]
           [--seeds 0] [--lr 3e-3] [--threads 1]

Each variant is trained with early stopping on validation NDCG@10 (eval every 2 epochs,
patience 5); reports the best validation and the test NDCG@10, epochs and wall time.
"""

from __future__ import annotations

import argparse
import time

from _common import parse_args, write_result


def variant_config(name: str) -> tuple[dict, bool]:
    """(victim config, legacy init?) of a variant name: length|random, optionally +legacy."""
    parts = name.split("+")
    if parts[0] not in ("length", "random") or any(p != "legacy" for p in parts[1:]):
        raise SystemExit(f"unknown variant {name!r}: use length|random, optionally +legacy")
    return {"batching": parts[0]}, "legacy" in parts[1:]


def legacy_init(module) -> None:
    """Revisions 1-2 of SASRec's initialisation (same law, not the same draws)."""
    import torch

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.reset_parameters()
        module.item_emb.weight.normal_(0.0, module.item_emb.weight.shape[1] ** -0.5)
        module.item_emb.weight[0].zero_()


def _use_legacy_init(victim) -> None:
    build = victim.new_module

    def new_module(num_items: int):
        module = build(num_items)
        legacy_init(module)
        return module

    victim.new_module = new_module


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="length+legacy,length,random")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--lr", type=float, default=None)
    args = parse_args(ap)
    import recguard

    data = recguard.data.load("ml-100k")
    split = data.split()
    rows = []
    extra = {} if args.lr is None else {"lr": args.lr}
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.variants.split(","):
            t0 = time.perf_counter()
            cfg, legacy = variant_config(name)
            v = recguard.SASRec(max_len=200, epochs=200, eval_every=2, patience=5, **cfg, **extra)
            if legacy:
                _use_legacy_init(v)
            v.fit(split, rng=seed, progress=False)
            rows.append({"variant": name, "seed": seed, "wall_s": time.perf_counter() - t0,
                         "epochs": v.fit_info_["epochs_run"], "best_epoch": v.fit_info_["best_epoch"],
                         "best_valid_ndcg@10": v.fit_info_["best_valid_ndcg@10"],
                         "test_ndcg@10": recguard.evaluate(v, split)["NDCG@10"]})
            print(rows[-1], flush=True)
    write_result("batching", {"lr": args.lr, "rows": rows})


if __name__ == "__main__":
    main()
