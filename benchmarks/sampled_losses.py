"""Full-softmax CE against the sampled losses, same data, same split, same settings.

For every run: validation NDCG@10 after each epoch against the seconds spent so far (the
curve), the wall time to convergence (early stopping on validation NDCG@10, validation
included), test HR@10 / NDCG@10 of the best validation epoch, and training positions per
second. With ``--recbole-python`` RecBole 1.2.1's SASRec (full-softmax CE) trains on the
same atomic file, with the same leave-one-out protocol, in the same run.

Usage:
    python benchmarks/sampled_losses.py --dataset amazon-beauty --threads 2 \\
        --runs ce,sampled_ce:256,gbce:256 [--recbole-python /path/to/venv/bin/python --recbole-minutes 15]

Each run writes ``benchmarks/results/sampled_<dataset>_<run>.json`` as soon as it ends (a
rerun skips finished runs unless ``--force``); the summary goes to ``sampled_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, parse_args, parse_setting, peak_rss_mb, positions_per_epoch, require_shared, write_result

HERE = Path(__file__).resolve().parent
FILES = {"amazon-beauty": "amazon-beauty", "ml-1m": "ml-1m", "amazon-office": "amazon-office"}


def parse_run(text: str) -> tuple[str, dict]:
    """``loss[:negatives][:sampler]`` → (tag, config overrides)."""
    parts = text.split(":")
    cfg: dict = {"loss": parts[0]}
    if len(parts) > 1 and parts[1]:
        cfg["num_negatives"] = int(parts[1])
    if len(parts) > 2:
        cfg["sampler"] = parts[2]
    return text.replace(":", "-"), cfg


def run_recguard(args, split, tag: str, overrides: dict) -> dict:
    import recguard

    cfg = dict(max_len=args.max_len, epochs=args.epochs, patience=args.patience, eval_every=args.eval_every, **overrides)
    if args.lr:
        cfg["lr"] = args.lr
    if args.dropout is not None:
        cfg["dropout"] = args.dropout
    if args.batch_size:
        cfg["batch_size"] = args.batch_size
    cfg.update(args.settings)
    victim = recguard.make_victim(args.model, **cfg)
    deadline = time.perf_counter() + 60 * args.max_minutes
    t0 = time.perf_counter()
    victim.fit(split, rng=args.seed, progress=True, on_epoch_end=lambda e, v: time.perf_counter() > deadline)
    wall = time.perf_counter() - t0
    test = recguard.evaluate(victim, split, which="test", ks=(10, 20))
    info = victim.fit_info_
    per_epoch = positions_per_epoch(split, args.max_len)
    best = info["best_epoch"]
    best_row = next((h for h in victim.history_ if h["epoch"] == best), victim.history_[-1])
    return {
        "run": tag, "tool": "recguard", "model": args.model, "config": victim.config.to_dict(),
        "objective": info["objective"], "wall_s": wall, "train_s": info["train_time_s"],
        "epochs_run": info["epochs_run"], "best_epoch": best, "time_to_best_s": best_row["time_s"],
        "stopped_by_time_limit": wall > 60 * args.max_minutes,
        "positions_per_epoch": per_epoch, "positions_per_s": per_epoch * info["epochs_run"] / info["train_time_s"],
        "best_valid_ndcg@10": info["best_valid_ndcg@10"], "test": test, "peak_rss_mb": peak_rss_mb(),
        "curve": [{"epoch": h["epoch"], "seconds": h["time_s"], "valid_ndcg@10": h.get("valid_ndcg@10")} for h in victim.history_],
    }


def run_recbole(args, folder: Path) -> dict:
    cmd = [args.recbole_python, str(HERE / "_recbole_sasrec.py"), str(args.recbole_epochs), str(args.threads or 2),
           folder.name, str(folder.parent), str(60 * args.recbole_minutes)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/tmp")
    rows = []
    for line in proc.stdout:
        if line.startswith("{"):
            rows.append(json.loads(line))
            rows[-1]["seconds"] = time.perf_counter() - t0
            print("recbole", rows[-1], file=sys.stderr, flush=True)
    if proc.wait() != 0 or not rows:
        sys.exit("RecBole run failed; check its environment (see benchmarks/recbole_speed.py)")
    best = max(rows, key=lambda r: r["valid_ndcg@10"])
    samples = rows[-1]["train_samples"]
    return {
        "run": "recbole-sasrec-ce", "tool": "RecBole 1.2.1 SASRec (CE, max length 50, its defaults otherwise)",
        "wall_s": rows[-1]["seconds"], "train_s": rows[-1]["train_s"], "epochs_run": len(rows), "best_epoch": best["epoch"],
        "time_to_best_s": best["seconds"], "stopped_by_time_limit": rows[-1]["train_s"] > 60 * args.recbole_minutes,
        "positions_per_s": samples * len(rows) / rows[-1]["train_s"],
        "best_valid_ndcg@10": best["valid_ndcg@10"],
        "test": {"NDCG@10": best["test_ndcg@10"], "HR@10": best["test_hit@10"]},
        "curve": [{"epoch": r["epoch"], "seconds": r["seconds"], "valid_ndcg@10": r["valid_ndcg@10"]} for r in rows],
    }


def markdown(dataset: str) -> str:
    """A markdown table of every recorded run on ``dataset`` (all tags), each against the CE run
    with its tag (the same session and code), or the untagged CE run."""
    rows = []
    ces: dict[str, dict] = {}
    for path in sorted(RESULTS.glob(f"sampled_{dataset}*_*.json")):
        d = json.loads(path.read_text())
        if "run" not in d:
            continue
        middle = path.stem[len(f"sampled_{dataset}"):]
        tag = (middle[: -len(d["run"]) - 1] if middle.endswith("_" + d["run"]) else middle.rsplit("_", 1)[0]).lstrip("_")
        d["_tag"] = tag
        rows.append(d)
        if d["run"] == "ce":
            ces[tag] = d
    out = ["| run | batch | test NDCG@10 | test HR@10 | NDCG vs CE | wall to convergence | wall vs CE | epochs (best) "
           "| positions/s |", "|---|---|---|---|---|---|---|---|---|"]
    for d in sorted(rows, key=lambda d: (d["_tag"], d["run"] != "ce", d["run"])):
        batch = d.get("config", {}).get("batch_size", "–")
        # the CE run of the same session (tag, or the tag before a "-variant"), else the untagged one
        ce = ces.get(d["_tag"], ces.get(d["_tag"].split("-")[0], ces.get("")))
        rel = f"{d['test']['NDCG@10'] / ce['test']['NDCG@10']:.0%}" if ce else "–"
        wrel = f"{d['wall_s'] / ce['wall_s']:.0%}" if ce else "–"
        capped = " (cap)" if d.get("stopped_by_time_limit") else ""
        name = d["run"] + (f" ({d['_tag']})" if d["_tag"] else "")
        out.append(f"| {name} | {batch} | {d['test']['NDCG@10']:.4f} | {d['test']['HR@10']:.4f} | {rel} | "
                   f"{d['wall_s']:.0f} s{capped} | {wrel} | {d['epochs_run']} ({d['best_epoch']}) | {d['positions_per_s']:,.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-beauty", choices=sorted(FILES))
    ap.add_argument("--model", default="sasrec", choices=["sasrec", "bert4rec", "gru4rec"])
    ap.add_argument("--runs", default="ce,sampled_ce:256,gbce:256", help="comma-separated loss[:negatives][:sampler]")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="any other victim setting (repeatable), e.g. --set hidden=256 --set num_blocks=1")
    ap.add_argument("--max-minutes", type=float, default=40.0, help="cap per run (best weights kept)")
    ap.add_argument("--recbole-python", default=None, help="python of a RecBole 1.2.1 environment: also run its SASRec")
    ap.add_argument("--recbole-minutes", type=float, default=15.0)
    ap.add_argument("--recbole-epochs", type=int, default=200)
    ap.add_argument("--tag", default="")
    ap.add_argument("--force", action="store_true", help="rerun runs that already have a result file")
    ap.add_argument("--table", action="store_true", help="only print the markdown table of the recorded runs")
    args = parse_args(ap)
    args.settings = dict(parse_setting(text) for text in args.settings)
    if args.table:
        print(markdown(args.dataset))
        return
    import recguard

    folder = require_shared(FILES[args.dataset])
    data = recguard.data.load(args.dataset, path=folder)
    split = data.split()
    prefix = f"sampled_{args.dataset}{args.tag}"
    if args.model != "sasrec":
        prefix += f"_{args.model}"
    runs = []
    for text in [r for r in args.runs.split(",") if r]:
        tag, overrides = parse_run(text)
        path = RESULTS / f"{prefix}_{tag}.json"
        if path.exists() and not args.force:
            runs.append(json.loads(path.read_text()))
            print(f"{tag}: kept {path.name}", file=sys.stderr)
            continue
        row = run_recguard(args, split, tag, overrides)
        write_result(f"{prefix}_{tag}", row)
        runs.append(row)
    if args.recbole_python:
        path = RESULTS / f"{prefix}_recbole.json"
        if path.exists() and not args.force:
            runs.append(json.loads(path.read_text()))
        else:
            row = run_recbole(args, folder)
            write_result(f"{prefix}_recbole", row)
            runs.append(row)
    ce = next((r for r in runs if r["run"] == "ce"), None)
    table = []
    for r in runs:
        keys = ("run", "wall_s", "time_to_best_s", "epochs_run", "best_epoch", "positions_per_s", "stopped_by_time_limit")
        entry = {k: r[k] for k in keys}
        entry.update({"NDCG@10": r["test"]["NDCG@10"], "HR@10": r["test"]["HR@10"]})
        if ce is not None:
            entry["ndcg_vs_ce"] = r["test"]["NDCG@10"] / ce["test"]["NDCG@10"]
            entry["wall_vs_ce"] = r["wall_s"] / ce["wall_s"]
        table.append(entry)
    write_result(prefix, {"dataset": args.dataset, "model": args.model, "users": data.num_users, "items": data.num_items,
                          "interactions": data.num_interactions, "table": table})


if __name__ == "__main__":
    main()
