"""The same audit on each backend: wall time, overhead per cell, and whether the numbers agree.

Usage:  python benchmarks/audit_backends.py [--seeds 0,1,2] [--backends sequential,local,ray] [--workers 2]

The audit is `make demo`'s (ML-100k, SASRec max_len 50, patience 3, the four attacks at
1%) with the given seeds, run from scratch in a fresh folder per backend, one torch thread
per cell everywhere (so the numbers must agree bit for bit):

- sequential: one process, one cell after another;
- local: ``--workers`` spawned worker processes;
- ray: a local Ray cluster with ``--workers`` CPUs, one task per cell (object-store transport).

Overhead per cell = (wall × parallel slots − Σ cell compute time) / cells: process start,
data loading, scheduling and moving models, everything but computing. Writes
benchmarks/results/audit_backends.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import machine, write_result


def _numbers(results: dict) -> list:
    return [{k: v for k, v in r.items() if "time" not in k} for r in results["summary"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--backends", default="sequential,local,ray")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import torch

    from recguard.audit import AuditSpec, RayBackend, run_audit

    torch.set_num_threads(1)
    spec = AuditSpec(dataset="ml-100k", model="sasrec", model_config={"max_len": 50, "patience": 3}, budgets=(0.01,),
                     seeds=tuple(int(s) for s in args.seeds.split(",")))
    rows, numbers = [], {}
    for name in args.backends.split(","):
        out = Path(tempfile.mkdtemp(prefix=f"audit_{name}_"))
        slots = 1 if name == "sequential" else args.workers
        try:
            if name == "ray":
                import ray

                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
                backend = RayBackend(threads=1)
            else:
                backend = name
            t0 = time.perf_counter()
            res = run_audit(spec, out / "a", progress=False, jobs=slots if name == "local" else 1, backend=backend)
            wall = time.perf_counter() - t0
        finally:
            if name == "ray":
                ray.shutdown()
            shutil.rmtree(out, ignore_errors=True)
        compute = sum(c["wall_time_s"] for c in res["cells"])
        numbers[name] = _numbers(res)
        rows.append({"backend": name, "slots": slots, "cells": len(res["cells"]), "wall_s": wall, "cell_compute_s": compute,
                     "overhead_per_cell_s": (wall * slots - compute) / len(res["cells"]),
                     "T-HR@50": {r["attack"]: r["T-HR@50"]["mean"] for r in res["summary"]}})
        print(rows[-1], flush=True)
    ref = next(iter(numbers.values()))
    write_result("audit_backends", {"seeds": list(spec.seeds), "machine": machine(), "rows": rows,
                                    "identical_numbers": {k: v == ref for k, v in numbers.items()}})


if __name__ == "__main__":
    main()
