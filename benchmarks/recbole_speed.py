"""Speed against RecBole 1.2.1: time to reach RecBole's best test NDCG@10 on ML-100k.

Both train SASRec with the same geometry (64-dim, 2 layers, 2 heads, max length 50,
full-softmax cross-entropy) on the same data (RecBole's bundled ML-100k atomic files;
leave-one-out, full ranking, seen items filtered), each with its own default
optimiser settings, with the same number of CPU threads, one after the other.
Time counts training only (evaluation excluded) for both.

Usage:
    python benchmarks/recbole_speed.py --recbole-python /path/to/recbole-venv/bin/python --epochs 12 --threads 1

The RecBole environment needs `pip install torch==2.13.0 "numpy<2" "setuptools<81" recbole==1.2.1`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import write_result

HERE = Path(__file__).resolve().parent


def run_recbole(python: str, epochs: int, threads: int) -> list[dict]:
    proc = subprocess.Popen([python, str(HERE / "_recbole_sasrec.py"), str(epochs), str(threads)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/tmp")
    rows = []
    for line in proc.stdout:
        if line.startswith("{"):
            rows.append(json.loads(line))
            print("recbole", rows[-1], file=sys.stderr, flush=True)
    if proc.wait() != 0 or not rows:
        sys.exit("RecBole run failed; check its environment")
    return rows


def run_recguard(epochs: int, target: float) -> list[dict]:
    import recguard
    from recguard.metrics import evaluate

    data = recguard.data.load("ml-100k")
    split = data.split()
    rows: list[dict] = []
    v = recguard.SASRec(hidden=64, num_blocks=2, num_heads=2, max_len=50, loss="ce", epochs=epochs, patience=0, eval_every=epochs)
    # training time = wall time between callbacks (the callback's own evaluation is excluded)
    t_state = {"last": time.perf_counter(), "train": 0.0}

    def timed(epoch, victim):
        t_state["train"] += time.perf_counter() - t_state["last"]
        ndcg = evaluate(victim, split, which="test", ks=(10,))["NDCG@10"]
        rows.append({"epoch": epoch, "train_s": t_state["train"], "test_ndcg@10": ndcg})
        print("recguard", rows[-1], file=sys.stderr, flush=True)
        t_state["last"] = time.perf_counter()

    t_state["last"] = time.perf_counter()
    v.fit(split, rng=0, progress=False, on_epoch_end=timed)
    return rows


def first_reaching(rows: list[dict], target: float) -> dict | None:
    return next((r for r in rows if r["test_ndcg@10"] >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recbole-python", required=True)
    ap.add_argument("--epochs", type=int, default=12, help="RecBole epochs (its best within these is the target)")
    ap.add_argument("--recguard-epochs", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rb = run_recbole(args.recbole_python, args.epochs, args.threads)
    best = max(rb, key=lambda r: r["test_ndcg@10"])
    ours = run_recguard(args.recguard_epochs, best["test_ndcg@10"])
    hit = first_reaching(ours, best["test_ndcg@10"])
    write_result("recbole_speed", {
        "threads": args.threads,
        "recbole": {"epochs": rb, "best": best, "s_per_epoch": rb[-1]["train_s"] / len(rb)},
        "recguard": {"epochs": ours, "reached": hit, "s_per_epoch": ours[-1]["train_s"] / len(ours),
                     "best_test_ndcg@10": max(r["test_ndcg@10"] for r in ours)},
        "speedup_to_target": (best["train_s"] / hit["train_s"]) if hit else None,
    })


if __name__ == "__main__":
    main()
