"""Wall time of one audit run sequentially (all threads on one cell) vs in worker processes.

Usage:  python benchmarks/audit_jobs.py [--jobs 1,2] [--seeds 0,1]

The audit is `make demo`'s (ML-100k, SASRec max_len 50, patience 3, the four attacks at
1%) with the given seeds, run from scratch in a fresh folder per setting. With N jobs each
worker gets total_threads / N torch threads. Reports wall times and the largest difference
between the settings' summary numbers, and each setting's T-HR@50 / NDCG@10 per attack
(thread counts change floating-point reduction order, so the trained models, and with
them the numbers, differ between settings; each setting is deterministic).
Writes benchmarks/results/audit_jobs.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import write_result


def _numbers(results: dict) -> list[float]:
    out = []
    for row in results["summary"]:
        for k, v in sorted(row.items()):
            if "time" in k:
                continue
            if isinstance(v, dict) and isinstance(v.get("mean"), (int, float)):
                out.append(float(v["mean"]))
            elif isinstance(v, float):
                out.append(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--seeds", default="0,1")
    args = ap.parse_args()
    import torch

    from recguard.audit import AuditSpec, run_audit

    spec = AuditSpec(dataset="ml-100k", model="sasrec", model_config={"max_len": 50, "patience": 3}, budgets=(0.01,),
                     seeds=tuple(int(s) for s in args.seeds.split(",")))
    rows, numbers = [], {}
    for jobs in (int(j) for j in args.jobs.split(",")):
        out = Path(tempfile.mkdtemp(prefix=f"audit_jobs{jobs}_"))
        try:
            t0 = time.perf_counter()
            res = run_audit(spec, out, progress=False, jobs=jobs)
            wall = time.perf_counter() - t0
        finally:
            shutil.rmtree(out, ignore_errors=True)
        numbers[jobs] = _numbers(res)
        key = {f"{r['attack']} {r['defense']}": {m: r[m]["mean"] for m in ("T-HR@50", "NDCG@10") if isinstance(r.get(m), dict)}
               for r in res["summary"]}
        rows.append({"jobs": jobs, "threads_per_process": max(1, torch.get_num_threads() // jobs), "wall_s": wall,
                     "cells": len(res["cells"]), "key_numbers": key})
        print(rows[-1], flush=True)
    ref = next(iter(numbers.values()))
    gap = {j: max((abs(a - b) for a, b in zip(ref, v)), default=0.0) for j, v in numbers.items()}
    write_result("audit_jobs", {"seeds": list(spec.seeds), "rows": rows, "max_abs_gap_vs_first": gap})


if __name__ == "__main__":
    main()
