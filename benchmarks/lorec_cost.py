"""LoRec's training cost relative to plain training (issue 4 goal: <= 1.5x).

Usage:  python benchmarks/lorec_cost.py [--dataset ml-100k] [--seeds 0,1,2] [--threads 1]

For each seed, trains the audit's victim (SASRec, max_len 50, patience 3, the default 200
maximum epochs that LoRec's schedule scales with) once plainly and once under LoRec
(known attack Random at 1%), back to back in one process so both see the same machine
load. The genuine users' text is encoded (and cached) before the first timing, and the
known fakes' encoding time is subtracted, so the figures are training plus calibration only. Reports total and
per-epoch time ratios, the number of LCT
updates, and the cost of one update in plain-epoch units.
Writes benchmarks/results/lorec_cost_<dataset>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import parse_args, require_ml1m, require_shared, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k", choices=["ml-100k", "ml-1m", "amazon-office"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-len", type=int, default=50)
    args = parse_args(ap)
    import recguard
    from recguard.defenses.lorec import LoRec

    path = {"ml-1m": require_ml1m, "amazon-office": lambda: require_shared("amazon-office")}.get(args.dataset, lambda: None)()
    data = recguard.data.load(args.dataset, path=path)
    split = data.split()

    def make():
        return recguard.make_victim("sasrec", max_len=args.max_len, patience=3)

    defense = LoRec()
    t = time.perf_counter()
    defense.text_embeddings(split.train, [])  # warm the embedding cache: timings below exclude encoding
    warm_s = time.perf_counter() - t
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        t = time.perf_counter()
        plain = make().fit(split, rng=seed)
        plain_s = time.perf_counter() - t
        t = time.perf_counter()
        lorec, out = defense.train(split, make_victim=make, seed=seed, rng=np.random.default_rng(seed))
        lorec_s = time.perf_counter() - t - out.info["encode_time_s"]  # the known fakes' texts: encoding, not training
        ep_plain, ep_lorec = plain.fit_info_["epochs_run"], lorec.fit_info_["epochs_run"]
        per_epoch_plain = plain_s / ep_plain
        n_up = len(out.info["updates"])
        row = {
            "seed": seed, "plain_s": plain_s, "lorec_s": lorec_s, "epochs_plain": ep_plain, "epochs_lorec": ep_lorec,
            "ratio_total": lorec_s / plain_s, "ratio_per_epoch": (lorec_s / ep_lorec) / per_epoch_plain,
            "updates": n_up, "calibrate_s": out.info["calibrate_time_s"], "encode_s": out.info["encode_time_s"],
            "update_in_plain_epochs": out.info["calibrate_time_s"] / max(1, n_up) / per_epoch_plain,
            "schedule": out.info["schedule"],
        }
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("ratio_total", "ratio_per_epoch", "update_in_plain_epochs")}
    write_result(f"lorec_cost_{args.dataset}", {"dataset": args.dataset, "max_len": args.max_len, "warm_encode_s": warm_s,
                                                 "rows": rows, "mean": summary})


if __name__ == "__main__":
    main()
