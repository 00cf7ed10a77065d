"""RecSAE probes on ML-1M (issue 7 benchmark): fidelity, dictionary quality, SAE training time.

Usage:
    python benchmarks/probe_ml1m.py --victim DIR [--ks 8,16,32] [--expansion 16] [--epochs 10]
        [--train-on auto|positions|prefixes] [--threads 1] [--tag NAME]

DIR is a SASRec victim trained on the shared ML-1M file (e.g. a clean model of
benchmarks/poisoning_ml1m.py: runs/bench/poisoning_ml1m/models/clean_seed0_*). For each k:
FVU, L0, dead fraction, NDCG@10 clean / spliced / mean-ablated and NDCG recovered (goal
>= 0.9), share of latents with held-out confidence >= 0.8 (RecSAE: 398/2,026 = 20%; goal
>= 30%), mean AUC, SAE training time; the first k's probe also writes an HTML report to
runs/bench/probe_ml1m/. Result: benchmarks/results/probe_ml1m<tag>.json.
"""

from __future__ import annotations

import argparse
import time

from _common import HERE, ml1m_victim, peak_rss_mb, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--victim", required=True)
    ap.add_argument("--ks", default="8,16,32")
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-on", default="auto")
    ap.add_argument("--ablate-top", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    data, split, victim = ml1m_victim(args.victim, args.threads)
    from recguard.probes import SAEProbe
    from recguard.probes.report import probe_report, write_probe_report

    rows = []
    for i, k in enumerate(int(x) for x in args.ks.split(",")):
        t0 = time.perf_counter()
        probe = SAEProbe(victim, k=k, expansion=args.expansion, epochs=args.epochs, train_on=args.train_on, seed=args.seed)
        probe.fit(split, progress=True)
        fit_s = time.perf_counter() - t0
        fid = probe.fidelity()
        t1 = time.perf_counter()
        probe.concepts()
        dict_s = time.perf_counter() - t1
        summary = probe.dictionary_summary()
        row = {"k": k, "width": fid["width"], "train_on": probe.train_on, "train_rows": fid["train_rows"],
               "sae_train_s": probe.train_time_s_, "fit_s": fit_s, "dictionary_s": dict_s,
               **{key: fid[key] for key in ("fvu", "l0", "dead_fraction", "silent_at_probe_fraction", "ndcg_clean",
                                            "ndcg_sae", "ndcg_mean_ablated", "ndcg_recovered")},
               "final_train_fvu": fid["train_history"][-1]["fvu"], **summary}
        if i == 0:
            confident = sorted((e for e in probe.concepts() if e.get("concept")),
                               key=lambda e: (-e["confidence"], -(e.get("auc") or 0), e["latent"]))[: args.ablate_top]
            abl = [probe.ablate(e["latent"], 0.0) for e in confident]
            row["ablations"] = abl
            out = HERE.parent / "runs" / "bench" / f"probe_ml1m{args.tag}"
            probe.save(out / "sae", overwrite=True)  # the benchmark's own folder under runs/
            write_probe_report(probe_report(probe, ablations=abl, provenance={"victim": args.victim, "dataset": "ml-1m"}), out)
        rows.append(row)
        print({k2: v for k2, v in row.items() if k2 != "ablations"}, flush=True)
    write_result(f"probe_ml1m{args.tag}", {"victim": args.victim, "victim_max_len": victim.max_len, "expansion": args.expansion,
                                           "epochs": args.epochs, "rows": rows, "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
