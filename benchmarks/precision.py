"""Does bfloat16 autocast keep a victim's quality? (issue 29)

Trains the same victim with ``precision="float32"`` and ``precision="bfloat16"`` (the forward pass
under bfloat16 autocast; softmax, LayerNorm, the loss and the weights stay float32) at the same
seeds, and reports test NDCG@10 / HR@10 (full ranking, seen items filtered, leave-one-out) with
the paired difference and its 95% interval. Training time is recorded too, but only an idle
machine gives comparable times (``benchmarks/throughput.py --precision bfloat16`` measures the
step itself).

Usage:
    python benchmarks/precision.py --dataset amazon-office --model sasrec --seeds 0,1,2,3,4
    python benchmarks/precision.py --dataset ml-100k --model gru4rec --seeds 0,1,2 --set hidden=128

Each (precision, seed) is kept in runs/bench/precision_<model>_<dataset><tag>/ so a stopped run
resumes; the summary goes to benchmarks/results/precision_<model>_<dataset><tag>.json.
"""

from __future__ import annotations

import argparse

from _common import HERE, data_path, kept_cells, parse_args, parse_setting, write_result

PRECISIONS = ("float32", "bfloat16")


def _cell(split, model: str, precision: str, seed: int, settings: dict) -> dict:
    import recguard

    victim = recguard.victims.architectures()[model](**settings, precision=precision)
    victim.fit(split, rng=seed, progress=True)
    test = recguard.evaluate(victim, split, which="test", ks=(10,))
    info = victim.fit_info_
    return {"precision": precision, "seed": seed, "test_ndcg@10": test["NDCG@10"], "test_hr@10": test["HR@10"],
            "best_valid_ndcg@10": info["best_valid_ndcg@10"], "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
            "train_s": info["train_time_s"], "objective": info["objective"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["ml-100k", "ml-1m", "amazon-beauty", "amazon-office"])
    ap.add_argument("--model", default="sasrec", choices=["sasrec", "bert4rec", "gru4rec"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a victim setting for both precisions, e.g. --set hidden=128")
    ap.add_argument("--tag", default="")
    args = parse_args(ap)
    import recguard
    from recguard.audit.results import mean_interval

    settings = {"max_len": args.max_len, **dict(parse_setting(s) for s in args.settings)}
    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    name = f"precision_{args.model}_{args.dataset}{args.tag}"
    cells = kept_cells(HERE.parent / "runs" / "bench" / name, args.seeds, PRECISIONS,
                       lambda precision, seed: f"{precision}_seed{seed}.json",
                       lambda precision, seed: _cell(split, args.model, precision, seed, settings),
                       lambda c: (f"{c['precision']:9s} seed {c['seed']}: test NDCG@10 {c['test_ndcg@10']:.4f} HR@10 "
                                  f"{c['test_hr@10']:.4f} epochs {c['epochs_run']} ({c['best_epoch']}) {c['train_s']:.0f} s"))
    by = {(c["precision"], c["seed"]): c for c in cells}
    seeds = sorted({c["seed"] for c in cells if ("float32", c["seed"]) in by and ("bfloat16", c["seed"]) in by})
    summary = {p: {k: mean_interval([by[p, s][k] for s in seeds]) for k in ("test_ndcg@10", "test_hr@10", "epochs_run", "train_s")}
               for p in PRECISIONS}
    summary["bfloat16_minus_float32"] = {
        k: mean_interval([by["bfloat16", s][k] - by["float32", s][k] for s in seeds]) for k in ("test_ndcg@10", "test_hr@10")}
    write_result(name, {"cells": cells, "paired_seeds": seeds, "summary": summary, "settings": settings, "args": vars(args)})
    d = summary["bfloat16_minus_float32"]["test_ndcg@10"]
    print(f"bfloat16 − float32, test NDCG@10 over {len(seeds)} seeds: {d}")


if __name__ == "__main__":
    main()
