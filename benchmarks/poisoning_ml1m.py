"""Poisoning audit on ML-1M (shared file): SASRec, every attack at 1% and 3%, several seeds.

Usage:
    python benchmarks/poisoning_ml1m.py --seeds 0,1,2 --budgets 0.01,0.03 [--max-len 200] [--out DIR]

A thin wrapper over `recguard audit`: results go to DIR (default
runs/bench/poisoning_ml1m/, git-ignored), resumable cell by cell, and a compact summary to
benchmarks/results/poisoning_ml1m.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import RESULTS, parse_args, require_ml1m, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="0.01,0.03")
    ap.add_argument("--attacks", default="random,popular,segment,surrogate")
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes computing cells side by side (threads are shared out)")
    ap.add_argument("--patience", type=int, default=5, help="0 = train exactly --epochs epochs")
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--tag", default="", help="suffix of the result file (e.g. for an extra-attacks run on the same folder)")
    ap.add_argument("--out", default=str(RESULTS.parent.parent / "runs" / "bench" / "poisoning_ml1m"),
                    help="audit folder (cells, clean models, HTML report); resumable")
    args = parse_args(ap)
    from recguard.audit import AuditSpec, run_audit

    spec = AuditSpec(
        dataset="ml-1m", path=str(require_ml1m()), model="sasrec",
        model_config={"max_len": args.max_len, "epochs": args.epochs, "patience": args.patience,
                                              "eval_every": args.eval_every},
        attacks=tuple(args.attacks.split(",")), budgets=tuple(float(b) for b in args.budgets.split(",")),
        seeds=tuple(int(s) for s in args.seeds.split(",")),
    )
    res = run_audit(spec, Path(args.out), progress=True, jobs=args.jobs)
    write_result(f"poisoning_ml1m{args.tag}", {"spec": res["spec"], "clean": res["clean"], "summary": res["summary"],
                                    "compute_time_s": res["compute_time_s"]})


if __name__ == "__main__":
    main()
