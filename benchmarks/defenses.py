"""Defenses against attacks the defender never simulated (issues 4 and 17).

Usage:
    python benchmarks/defenses.py --dataset amazon-office --seeds 0,1,2,3,4 --budgets 0.01,0.03 --jobs 2   # issue 17
    python benchmarks/defenses.py --dataset amazon-office --seeds 0,1,2,3,4 --attacks random,surrogate,coverage \
        --defenses none,pca,lockstep --jobs 2 --threads 1 --tag _i26                                 # issue 26
    python benchmarks/defenses.py --dataset ml-100k --seeds 0,1,2 --known random
    python benchmarks/defenses.py --dataset ml-100k --seeds 0,1,2 --known popular
    python benchmarks/defenses.py --dataset ml-1m --seeds 0 --known random --user-text items
    python benchmarks/defenses.py --dataset ml-1m --run-root /tmp/gpu --encoder DIR --jobs 8 --threads 16
    python benchmarks/defenses.py --dataset ml-100k --known random --controls   # + net removal
    python benchmarks/defenses.py --dataset ml-1m --attacks '' --defenses none,lorec --controls  # controls alone

Each run is a resumable `recguard audit` (SASRec, max_len 50 by default; every attack at
1%; defenses none, llm4dec, lorec) in runs/bench/defenses_<dataset>_<known>/. Runs with a
different known attack reuse the undefended cells of an earlier run (copied, same keys).
The summary (T-HR@50 per defense, removal, clean cost, detection AUC, encoding
throughput, LoRec's training time relative to plain training) goes to
benchmarks/results/defenses_<dataset>_<known>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from _common import HERE, parse_args, require_ml1m, require_shared, write_result


def _seed_from(other: Path, out: Path) -> int:
    """Copy clean and undefended cells (and clean models) of another run of the same grid."""
    n = 0
    if not other.is_dir():
        return 0
    from recguard._io import claim_output_dir

    claim_output_dir(out, "audit", resumable=True)  # an audit folder, so that run_audit resumes in it
    (out / "cells").mkdir(parents=True, exist_ok=True)
    for f in (other / "cells").glob("*.json"):
        c = json.loads(f.read_text())
        if c["kind"] == "clean" or c.get("defense") == "none":
            dst = out / "cells" / f.name
            if not dst.exists():
                shutil.copy2(f, dst)
                n += 1
    if (other / "models").is_dir() and not (out / "models").exists():
        shutil.copytree(other / "models", out / "models")
    return n


def _dataset_path(dataset: str) -> str | None:
    """The shared copy a dataset reads from (None: embedded)."""
    if dataset == "ml-100k":
        return None
    return str(require_ml1m()) if dataset == "ml-1m" else str(require_shared(dataset))


def _defense_params(defenses, text_opts: dict, extra: list[str]) -> dict:
    """Per-defense options: the text options for llm4dec/lorec, then each --defense-param DEFENSE.KEY=VALUE."""
    params = {d: dict(text_opts) for d in defenses if d in ("llm4dec", "lorec") and text_opts}
    for item in extra:
        key, _, value = item.partition("=")
        defense, _, name = key.partition(".")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        params.setdefault(defense, {})[name] = value
    return params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m", "amazon-office", "amazon-beauty"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--known", default="random")
    ap.add_argument("--attacks", default="random,popular,segment,surrogate")
    ap.add_argument("--defenses", default="none,llm4dec,lorec")
    ap.add_argument("--budgets", default="0.01", help="comma-separated fake-user fractions")
    ap.add_argument("--defense-param", action="append", default=[], metavar="DEFENSE.KEY=VALUE",
                    help="an option of one defense, e.g. lorec.inject_known=false (JSON values)")
    ap.add_argument("--tag", default="", help="suffix of the run folder and result name (variants of one grid)")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--user-text", default="prompt", choices=["prompt", "items"])
    ap.add_argument("--jobs", type=int, default=1, help="worker processes computing cells side by side (threads are shared out)")
    ap.add_argument("--encoder", default="minilm", help="text encoder: 'minilm' (bundled) or a local Hugging Face model directory")
    ap.add_argument("--controls", action="store_true",
                    help="also train each defense on the clean data (net removal; with --attacks '' the controls alone)")
    ap.add_argument("--run-root", default=None, help="folder for the audit and its summary (default runs/bench and benchmarks/results)")
    args = parse_args(ap)
    from recguard.audit import AuditSpec, run_audit

    root = Path(args.run_root).resolve() if args.run_root else HERE.parent / "runs" / "bench"
    tag = f"{args.dataset}_{args.known}" + ("" if args.user_text == "prompt" else f"_{args.user_text}") + args.tag
    out = root / f"defenses_{tag}"
    for other in sorted(root.glob(f"defenses_{args.dataset}_*")):
        if other != out:
            _seed_from(other, out)
    text_opts = {"known": args.known, "user_text": args.user_text} if (args.known != "random" or args.user_text != "prompt") else {}
    if args.encoder != "minilm":
        text_opts["encoder"] = str(Path(args.encoder).resolve())
    defenses = tuple(args.defenses.split(","))
    spec = AuditSpec(
        dataset=args.dataset, path=_dataset_path(args.dataset),
        model="sasrec",
        model_config={"max_len": args.max_len, "patience": 3}, attacks=tuple(a for a in args.attacks.split(",") if a),
        budgets=tuple(float(b) for b in args.budgets.split(",")), seeds=tuple(int(s) for s in args.seeds.split(",")),
        defenses=defenses, defense_params=_defense_params(defenses, text_opts, args.defense_param),
        defense_controls=args.controls,
    )
    res = run_audit(spec, out, progress=True, jobs=args.jobs)
    k = 50
    cells = [c for c in res["cells"] if c["kind"] == "poisoned"]
    table = []
    for r in res["summary"]:
        table.append({
            "attack": r["attack"], "budget": r["budget"], "defense": r["defense"],
            f"T-HR@{k}": r[f"T-HR@{k}"], f"clean_T-HR@{k}": r[f"clean_T-HR@{k}"],
            f"lift_T-HR@{k}": r[f"lift_T-HR@{k}"], "removal": r.get(f"removal_T-HR@{k}"), "NDCG@10": r["NDCG@10"],
            "net_removal": r.get(f"net_removal_T-HR@{k}"), f"control_T-HR@{k}": r.get(f"control_T-HR@{k}"),
            "clean_cost_NDCG@10": r["clean_cost_NDCG@10"], "detection": r.get("detection"),
        })
    # encoding throughput: cells that actually encoded text
    enc = [(c["defense_info"]["encoder_stats"], c["defense_info"].get("encode_time_s", 0.0)) for c in cells
           if c.get("defense_info", {}).get("encoder_stats", {}).get("encoded_texts", 0) > 50]
    encode = [{"users": s["encoded_texts"], "tokens": s["tokens"], "seconds": s["encode_s"],
               "users_per_s": s["encoded_texts"] / s["encode_s"], "tokens_per_s": s["tokens"] / s["encode_s"]} for s, _ in enc]
    # LoRec's cost: (training + calibration) / plain training, same attack and seed
    plain = {(c["attack"], c["budget"], c["seed"]): c for c in cells if c["defense"] == "none"}
    lorec = [(c, plain[(c["attack"], c["budget"], c["seed"])]) for c in cells
             if c["defense"] == "lorec" and (c["attack"], c["budget"], c["seed"]) in plain]
    ratios = [(c["train_time_s"] + c["defense_info"].get("calibrate_time_s", 0.0)) / p["train_time_s"] for c, p in lorec]
    per_epoch = [((c["train_time_s"] + c["defense_info"].get("calibrate_time_s", 0.0)) / c["train"]["epochs_run"])
                 / (p["train_time_s"] / p["train"]["epochs_run"]) for c, p in lorec]
    # every defense's cost: (victim training + the defense's own work, text encoding aside: it is cached across cells)
    # / plain training, same attack and seed
    time_ratio = {}
    for dname in defenses:
        rs = [(c["train_time_s"] + (c.get("defense_time_s") or 0.0) - (c.get("defense_info") or {}).get("encode_time_s", 0.0))
              / plain[(c["attack"], c["budget"], c["seed"])]["train_time_s"]
              for c in cells if c["defense"] == dname and (c["attack"], c["budget"], c["seed"]) in plain]
        time_ratio[dname] = {"mean": float(np.mean(rs)) if rs else None, "n": len(rs)}
    name = f"defenses_{tag}" if cells else f"defense_controls_{tag}"
    summary = {
        "spec": res["spec"], "clean": res["clean"], "controls": res["clean"].get("controls"), "table": table, "encoding": encode,
        "lorec_time_ratio": {"mean": float(np.mean(ratios)) if ratios else None, "values": ratios},
        "lorec_time_per_epoch_ratio": {"mean": float(np.mean(per_epoch)) if per_epoch else None, "values": per_epoch},
        "time_ratio": time_ratio, "compute_time_s": res["compute_time_s"], "paired_lift": paired_lifts(cells),
        "audit_dir": str(out.relative_to(HERE.parent)) if out.is_relative_to(HERE.parent) else str(out),
    }
    write_result(name, summary, root if args.run_root else None)  # --run-root: the summary stays beside its audit


def paired_lifts(cells: list[dict], k: int = 50) -> dict:
    """Undefended lift per attack, budget and seed, and each attack's lift minus Random's on the same
    seeds (mean, 95% Student-t interval): whether an attack is stronger than random fakes."""
    from recguard.audit.results import mean_interval

    lifts: dict = {}
    for c in cells:
        if c["defense"] == "none" and c["budget"] is not None:
            lifts.setdefault(f"{c['attack']}@{c['budget']:g}", {})[c["seed"]] = c["derived"][f"lift_T-HR@{k}"]
    out = {"lift_by_seed": lifts, "minus_random": {}}
    for key, by_seed in lifts.items():
        attack, budget = key.split("@")
        base = lifts.get(f"random@{budget}")
        if attack == "random" or not base:
            continue
        seeds = sorted(set(by_seed) & set(base))
        out["minus_random"][key] = {**mean_interval([by_seed[s] - base[s] for s in seeds]), "seeds": seeds}
    return out


if __name__ == "__main__":
    main()
