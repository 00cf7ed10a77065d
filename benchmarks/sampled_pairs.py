"""Paired seeds of two `sampled_losses.py` settings: the difference in test NDCG@10 and its interval.

Reads the per-run result files that `benchmarks/sampled_losses.py` wrote for two tags that differ in
one setting and share seeds (`--seed`), pairs them by seed, and reports each side's mean and the
paired difference (B − A) with its 95% interval, for test NDCG@10, HR@10, the best validation
NDCG@10 and the wall time to convergence. Nothing is trained here.

Usage (the tags hold `{seed}`):
    python benchmarks/sampled_pairs.py --dataset amazon-beauty --run sampled_ce-1024 \
        --a _i29all_s{seed} --b _i29neg_s{seed} --seeds 0,1,2,3 --name correction_1024

Writes benchmarks/results/sampled_pairs_<dataset>_<name>.json.
"""

from __future__ import annotations

import argparse
import json

from _common import RESULTS, parse_args, write_result

METRICS = {"test_ndcg@10": ("test", "NDCG@10"), "test_hr@10": ("test", "HR@10"),
           "best_valid_ndcg@10": ("best_valid_ndcg@10",), "wall_s": ("wall_s",)}


def _read(dataset: str, tag: str, run: str) -> dict:
    path = RESULTS / f"sampled_{dataset}{tag}_{run}.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no such result; run benchmarks/sampled_losses.py with --tag {tag} first")
    return json.loads(path.read_text())


def _value(result: dict, keys: tuple) -> float:
    for k in keys:
        result = result[k]
    return float(result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--run", required=True, help="the run's name in the result files, e.g. sampled_ce-1024")
    ap.add_argument("--a", required=True, help="tag of the reference setting, with {seed}")
    ap.add_argument("--b", required=True, help="tag of the compared setting, with {seed}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--name", required=True)
    args = parse_args(ap)
    from recguard.audit.results import mean_interval

    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = {s: (_read(args.dataset, args.a.format(seed=s), args.run), _read(args.dataset, args.b.format(seed=s), args.run))
             for s in seeds}
    summary = {}
    for metric, keys in METRICS.items():
        a = [_value(pairs[s][0], keys) for s in seeds]
        b = [_value(pairs[s][1], keys) for s in seeds]
        summary[metric] = {"a": mean_interval(a), "b": mean_interval(b), "b_minus_a": mean_interval([y - x for x, y in zip(a, b)]),
                           "per_seed": {str(s): [x, y] for s, x, y in zip(seeds, a, b)}}
    write_result(f"sampled_pairs_{args.dataset}_{args.name}", {"summary": summary, "seeds": seeds, "args": vars(args)})
    for metric, row in summary.items():
        d = row["b_minus_a"]
        interval = "" if d["ci95"] is None else f" [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
        print(f"{metric:20s} A {row['a']['mean']:.4f}  B {row['b']['mean']:.4f}  B − A {d['mean']:+.4f}{interval}")


if __name__ == "__main__":
    main()
