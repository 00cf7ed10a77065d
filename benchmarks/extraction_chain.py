"""The black-box chain behind each API defense: does a defended API cut the poisoning lift of a
model stolen through it? (issue 28)

Usage:
    python benchmarks/extraction_chain.py --dataset amazon-office --seeds 0,1,2 --defenses "none;guard;truncate:10"

For every API defense, one audit (runs/bench/extraction_chain_<dataset>/<defense>/): SASRec
(max_len 50, patience 3) on the dataset, the ``extracted`` attack at 1% (5 unpopular targets):
a data-free extraction through the defended API (``--num-sequences`` sequences of 50 queries,
top-100 lists, ``--epochs`` distillation epochs) whose stolen model drives the surrogate-guided
poisoning; the undefended victim is then trained on the poisoned data. Recorded per defense: the
stolen model's Agreement@10, the genuine users' served NDCG@10 cost, and the chain's lift in
T-HR@50 (poisoned − clean), with the share of the undefended API's lift it leaves (same seeds).
``--reference random`` (the default) also runs the Random attack at the same budget on the same
seeds and targets (runs/bench/extraction_chain_<dataset>/reference_random/): the lift an
attacker gets with no model at all. An API defense can only remove the lift the stolen model
adds above it, so each defense also gets its lift above the reference (per seed) and the share
of the undefended API's model-attributable lift it removes (a ratio of the seed means).
The summary goes to benchmarks/results/extraction_chain_<dataset>.json.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import HERE, data_path, parse_args, write_result


def _slug(defense: str) -> str:
    return defense.replace(":", "-").replace(",", "_").replace("=", "").replace("+", "_")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-1m", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--defenses", default="none;guard;truncate:10", help="API defenses separated by ';'")
    ap.add_argument("--num-sequences", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--reference", default="random", help="a model-free attack run beside the chain ('' for none)")
    args = parse_args(ap)
    from recguard.audit import AuditSpec, run_audit
    from recguard.audit.results import mean_interval

    seeds = tuple(int(s) for s in args.seeds.split(","))
    out, lifts = {}, {}
    for defense in [d for d in args.defenses.split(";") if d]:
        spec = AuditSpec(dataset=args.dataset, path=data_path(args.dataset), model="sasrec",
                         model_config={"max_len": args.max_len, "patience": 3}, attacks=("extracted",), budgets=(0.01,),
                         defenses=("none",), seeds=seeds,
                         extraction={"num_sequences": args.num_sequences, "epochs": args.epochs, "defense": defense})
        res = run_audit(spec, HERE.parent / "runs" / "bench" / f"extraction_chain_{args.dataset}" / _slug(defense), progress=False)
        row = res["summary"][0]
        lifts[defense] = {c["seed"]: c["derived"]["lift_T-HR@50"] for c in res["cells"] if c["kind"] == "poisoned"}
        out[defense] = {"lift_T-HR@50": row["lift_T-HR@50"], "extraction": res.get("extraction")}
        print(f"{defense:14s} lift {row['lift_T-HR@50']['mean']:.4f} Agreement@10 {res['extraction']['Agreement@10']['mean']:.3f}",
              flush=True)
    if "none" in lifts:
        for defense, by_seed in lifts.items():
            out[defense]["lift_left"] = mean_interval([v / lifts["none"][s] for s, v in by_seed.items()
                                                       if lifts["none"].get(s)])
    reference = _reference(args, seeds, lifts, out) if args.reference else None
    write_result(f"extraction_chain_{args.dataset}", {"summary": out, "lifts_by_seed": {d: {str(s): v for s, v in by.items()}
                                                                                        for d, by in lifts.items()},
                                                      "reference": reference, "settings": vars(args)})


def _reference(args, seeds, lifts: dict, out: dict) -> dict:
    """Run the model-free reference attack on the chain's seeds and targets; add to each defense's
    summary its lift above the reference and the share of the model-attributable lift it removes."""
    from recguard.audit import AuditSpec, run_audit
    from recguard.audit.results import mean_interval

    spec = AuditSpec(dataset=args.dataset, path=data_path(args.dataset), model="sasrec",
                     model_config={"max_len": args.max_len, "patience": 3}, attacks=(args.reference,), budgets=(0.01,),
                     defenses=("none",), seeds=seeds)
    res = run_audit(spec, HERE.parent / "runs" / "bench" / f"extraction_chain_{args.dataset}" / f"reference_{args.reference}",
                    progress=False)
    by_seed = {c["seed"]: c["derived"]["lift_T-HR@50"] for c in res["cells"] if c["kind"] == "poisoned"}
    print(f"{'reference ' + args.reference:14s} lift {res['summary'][0]['lift_T-HR@50']['mean']:.4f}", flush=True)
    attributable = None
    if "none" in lifts:
        attributable = float(np.mean([lifts["none"][s] - by_seed[s] for s in seeds]))
    for defense, lift in lifts.items():
        above = [lift[s] - by_seed[s] for s in seeds]
        out[defense]["lift_above_reference"] = mean_interval(above)
        if attributable is not None and attributable > 0:
            out[defense]["attributable_lift_removed"] = 1.0 - float(np.mean(above)) / attributable
    return {"attack": args.reference, "lift_T-HR@50": res["summary"][0]["lift_T-HR@50"],
            "lifts_by_seed": {str(s): v for s, v in by_seed.items()}}


if __name__ == "__main__":
    main()
