"""Every capability on five victims: recguard's SASRec, BERT4Rec and GRU4Rec, and two models it
does not ship (tests/foreign_models.py: a NARM-style GRU + attention and an MLP over a bag of
recent items), on the embedded ML-100k (issue 16 benchmark).

Usage:
    python benchmarks/capability_matrix.py [--models sasrec,bert4rec,gru4rec,narm,bag] [--epochs 10]

Per model, with the same small settings (max_len 50, at most --epochs epochs, patience 3,
seed 0, one seed per figure — these are smoke figures that every path runs end to end on
real data, not tuned results): the contract checks that apply, clean NDCG@10, a one-seed
audit (random and surrogate attacks at 1%; none, LoRec, LLM4Dec, MNAR; MiniLM over item
titles), extraction of the model (into SASRec) and into the model (stealing SASRec), an SAE
probe, captum attributions and the three pytest assertions. Writes
benchmarks/results/capability_matrix.json and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HERE, parse_args, write_result

TESTS = HERE.parent / "tests"


def factories(epochs: int) -> dict:
    import foreign_models as F

    import recguard

    def ours(arch):
        extra = {"num_heads": 2} if arch == "bert4rec" else {}
        return lambda n, **kw: recguard.make_victim(arch, **{"max_len": 50, "epochs": epochs, "patience": 3, **extra, **kw})

    return {
        "sasrec": (ours("sasrec"), "sasrec", {"max_len": 50, "epochs": epochs, "patience": 3}),
        "bert4rec": (ours("bert4rec"), "bert4rec", {"max_len": 50, "epochs": epochs, "patience": 3, "num_heads": 2}),
        "gru4rec": (ours("gru4rec"), "gru4rec", {"max_len": 50, "epochs": epochs, "patience": 3}),
        "narm": (lambda n, **kw: F.make_narm(n, **{"hidden": 64, "max_len": 50, "epochs": epochs, "patience": 3, **kw}),
                 "foreign_models:make_narm", {"hidden": 64, "max_len": 50, "epochs": epochs, "patience": 3}),
        "bag": (lambda n, **kw: F.make_bag(n, **{"hidden": 64, "max_len": 50, "epochs": epochs, "patience": 3, **kw}),
                "foreign_models:make_bag", {"hidden": 64, "max_len": 50, "epochs": epochs, "patience": 3}),
    }


def run_model(name, make, model, config, data, split, sas, root) -> dict:
    import recguard
    from recguard.attacks.extraction import agreement, extract
    from recguard.audit import AuditSpec, run_audit
    from recguard.probes import SAEProbe, attribute
    from recguard.testing import assert_clean_quality, assert_extraction_resistant, assert_robust
    from recguard.testing.checks import checks_for
    from recguard.victims import BlackBoxVictim

    row: dict = {}
    t0 = time.perf_counter()
    tiny = (lambda: make(40, epochs=2, max_len=10)) if name in ("narm", "bag") else (lambda: make(40, epochs=2, max_len=10, patience=0))
    checks = checks_for(tiny)
    passed = 0
    for check in checks:
        check(tiny)  # raises on failure
        passed += 1
    row["contract"] = f"{passed}/{len(checks)} checks"
    v = make(data.num_items).fit(split, rng=0)
    row["NDCG@10"] = recguard.evaluate(v, split, ks=(10,))["NDCG@10"]
    row["capabilities"] = sorted(recguard.victims.capabilities(v))

    spec = AuditSpec(dataset="ml-100k", model=model, model_config=config, attacks=("random", "surrogate"), budgets=(0.01,),
                     seeds=(0,), defenses=("none", "lorec", "llm4dec", "mnar"),
                     defense_params={"lorec": {"user_text": "items"}, "llm4dec": {"user_text": "items"}})
    res = run_audit(spec, root / f"audit_{name}", progress=False)
    s = {(r["attack"], r["defense"]): r for r in res["summary"]}
    row["surrogate_lift"] = s[("surrogate", "none")]["lift_T-HR@50"]["mean"]
    row["random_lift"] = s[("random", "none")]["lift_T-HR@50"]["mean"]
    row["lorec_removal_random"] = (s[("random", "lorec")].get("removal_T-HR@50") or {}).get("mean")
    row["lorec_ROC-AUC"] = s[("random", "lorec")]["detection"]["ROC-AUC"]["mean"]
    row["llm4dec_ROC-AUC"] = s[("random", "llm4dec")]["detection"]["ROC-AUC"]["mean"]
    row["mnar_clean_cost"] = s[("random", "mnar")]["clean_cost_NDCG@10"]["mean"]

    x, _ = split.inputs("test", v.max_len)
    stolen = extract(BlackBoxVictim(v, k=100), num_sequences=1000, length=20, epochs=10, surrogate="sasrec",
                     surrogate_config={"max_len": 50}, rng=0, progress=False)
    row["extracted_Agreement@10"] = agreement(v, stolen.surrogate, x)["Agreement@10"]
    clone = extract(BlackBoxVictim(sas, k=100), num_sequences=1000, length=20, epochs=10, surrogate=model,
                    surrogate_config=config, rng=0, progress=False)
    row["as_surrogate_Agreement@10"] = agreement(sas, clone.surrogate, split.inputs("test", sas.max_len)[0])["Agreement@10"]

    probe = SAEProbe(v, k=8, expansion=8, epochs=3, seed=0).fit(split)
    fid = probe.fidelity()
    probe.concepts()
    summ = probe.dictionary_summary()
    row["probe_ndcg_recovered"] = fid["ndcg_recovered"]
    row["probe_interpretable"] = f"{summ['interpretable']}/{summ['latents']}"
    gaps = []
    for u in range(5):
        a = attribute(v, data[u].tolist()[-20:], n_steps=64)
        gaps.append(abs(a["delta"]) / max(1e-9, abs(a["score"] - a["baseline_score"])))
    row["attribution_rel_gap"] = float(np.mean(gaps))

    def train(sp, seed):
        return make(sp.full.num_items).fit(sp, rng=seed)

    row["assert_clean_quality"] = assert_clean_quality(v, split, min_ndcg=0.0)["NDCG@10"]
    row["assert_robust_lift"] = assert_robust(train, split, attack="popular", budget=0.01, metric="T-HR@50", max_lift=1.0, seeds=1)[
        "mean_lift"]
    row["assert_extraction_Agreement@10"] = assert_extraction_resistant(v, split, budget=300, max_agreement=1.0, epochs=5)["value"]
    row["wall_s"] = time.perf_counter() - t0
    print(name, {k: val for k, val in row.items() if k != "capabilities"}, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="sasrec,bert4rec,gru4rec,narm,bag")
    ap.add_argument("--epochs", type=int, default=10)
    args = parse_args(ap)
    sys.path.insert(0, str(TESTS))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    import recguard

    data = recguard.data.load("ml-100k")
    split = data.split()
    facts = factories(args.epochs)
    sas = facts["sasrec"][0](data.num_items).fit(split, rng=1)  # the model the "as surrogate" rows steal
    root = Path(tempfile.mkdtemp(prefix="capability_matrix_"))
    rows = {}
    for name in args.models.split(","):
        make, model, config = facts[name]
        rows[name] = run_model(name, make, model, config, data, split, sas, root)
    write_result("capability_matrix", {"epochs": args.epochs, "rows": rows})


if __name__ == "__main__":
    main()
