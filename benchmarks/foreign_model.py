"""A model recguard does not ship, audited exactly like its own SASRec (issue 16 benchmark).

Usage:
    python benchmarks/foreign_model.py                       # 3 seeds, both models
    python benchmarks/foreign_model.py --seeds 0 --jobs 2

Two resumable audits on the embedded ML-100k, on the same grid: the four attacks at 1% fake
users, defenses none and LoRec (default MiniLM user prompts), seeds 0,1,2. The foreign model
is the NARM-style GRU + attention of ``tests/foreign_models.py``, wrapped in TorchVictim as
its docstring says and named by its import path (``foreign_models:make_narm``), next to
SASRec (max_len 50, patience 3). The summary (clean quality, lift per attack with its sd,
LoRec's removal and clean cost, time per cell) goes to benchmarks/results/foreign_model.json;
the audits stay in runs/bench/foreign_<model>/.
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import HERE, parse_args, write_result

TESTS = HERE.parent / "tests"
MODELS = {
    "sasrec": ("sasrec", {"max_len": 50, "patience": 3}),
    "narm": ("foreign_models:make_narm", {"hidden": 64, "max_len": 50, "epochs": 30, "patience": 3}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="sasrec,narm")
    ap.add_argument("--jobs", type=int, default=1)
    args = parse_args(ap)
    # the factory is imported from tests/, here and in the audit's worker processes
    sys.path.insert(0, str(TESTS))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    from recguard.audit import AuditSpec, run_audit

    rows, summary = [], {}
    for name in args.models.split(","):
        model, config = MODELS[name]
        spec = AuditSpec(dataset="ml-100k", model=model, model_config=config, attacks=("random", "popular", "segment", "surrogate"),
                         budgets=(0.01,), defenses=("none", "lorec"), seeds=tuple(int(s) for s in args.seeds.split(",")))
        out = HERE.parent / "runs" / "bench" / f"foreign_{name}"
        res = run_audit(spec, out, progress=True, jobs=args.jobs)
        clean = [c for c in res["cells"] if c["kind"] == "clean"]
        summary[name] = {"model": model, "model_config": config, "clean": res["clean"],
                         "clean_cell_s": sum(c["wall_time_s"] for c in clean) / len(clean),
                         "provenance_model": res["provenance"].get("model")}
        for r in res["summary"]:
            rows.append({"model": name, "attack": r["attack"], "defense": r["defense"], "T-HR@50": r["T-HR@50"],
                         "lift_T-HR@50": r["lift_T-HR@50"], "removal_T-HR@50": r.get("removal_T-HR@50"), "NDCG@10": r["NDCG@10"],
                         "clean_cost_NDCG@10": r["clean_cost_NDCG@10"], "cell_s": r["wall_time_s"],
                         "detection_ROC-AUC": (r.get("detection") or {}).get("ROC-AUC")})
    write_result("foreign_model", {"models": summary, "rows": rows})


if __name__ == "__main__":
    main()
