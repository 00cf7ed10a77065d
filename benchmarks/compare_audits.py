"""Do two audits of the same spec give the same numbers? (issue 26: a refactor must not move them)

Usage:
    python benchmarks/compare_audits.py BEFORE_DIR AFTER_DIR [--name refactor_numbers_i26]

Matches the cells of the two audit folders by (kind, attack, budget, defense, seed) and compares
every number that is not a time: clean and target metrics, lifts and costs, detection metrics,
the extraction's agreement, the training record's epochs and validation scores. Prints the
cells that differ (and by how much) and writes the comparison to benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from _common import write_result

TIME_WORDS = ("time", "_s", "seconds", "per_s", "wall", "saved_at", "fingerprint", "device")


def _numbers(obj, prefix: str = "") -> dict[str, float]:
    """Every number below ``obj`` by its path, times and timestamps left out."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = str(k)
            if any(w in key for w in TIME_WORDS):
                continue
            out.update(_numbers(v, f"{prefix}.{key}" if prefix else key))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{prefix}[{i}]"))
    elif isinstance(obj, bool):
        out[prefix] = float(obj)
    elif isinstance(obj, (int, float)):
        out[prefix] = float(obj)
    return out


def _cells(folder: Path) -> dict[tuple, dict]:
    cells = {}
    for f in sorted((folder / "cells").glob("*.json")):
        c = json.loads(f.read_text())
        cells[(c["kind"], c.get("attack"), c.get("budget"), c.get("defense"), c["seed"])] = c
    return cells


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--name", default="refactor_numbers_i26")
    args = ap.parse_args()
    before, after = _cells(Path(args.before)), _cells(Path(args.after))
    fields = ("metrics", "derived", "detection", "extraction", "clean_target", "num_fake_users", "targets", "flagged_share")
    rows, compared = [], 0
    for key in sorted(set(before) & set(after), key=str):
        a = _numbers({f: before[key].get(f) for f in fields} | {"train": {k: v for k, v in (before[key].get("train") or {}).items()
                                                                        if k in ("epochs_run", "best_epoch", "best_valid_ndcg@10")}})
        b = _numbers({f: after[key].get(f) for f in fields} | {"train": {k: v for k, v in (after[key].get("train") or {}).items()
                                                                       if k in ("epochs_run", "best_epoch", "best_valid_ndcg@10")}})
        compared += len(a)
        diff = {p: (a.get(p), b.get(p)) for p in sorted(set(a) | set(b))
                if a.get(p) != b.get(p) and not (a.get(p) is not None and b.get(p) is not None
                                                 and math.isnan(a[p]) and math.isnan(b[p]))}
        rows.append({"cell": list(key), "numbers": len(a), "different": len(diff),
                     "max_abs_diff": max((abs(x - y) for x, y in diff.values() if x is not None and y is not None), default=0.0),
                     "examples": dict(list(diff.items())[:5])})
        status = "identical" if not diff else f"{len(diff)} of {len(a)} numbers differ (max |Δ| {rows[-1]['max_abs_diff']:.3g})"
        print(f"{'/'.join(str(k) for k in key)}: {status}")
    only = {"before_only": [list(k) for k in set(before) - set(after)], "after_only": [list(k) for k in set(after) - set(before)]}
    identical = sum(1 for r in rows if not r["different"])
    print(f"{identical} of {len(rows)} cells identical ({compared} numbers compared); {only}")
    write_result(args.name, {"before": args.before, "after": args.after, "cells": rows, "identical_cells": identical,
                             "numbers_compared": compared, **only})


if __name__ == "__main__":
    main()
