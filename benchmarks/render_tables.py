"""Markdown tables for docs/benchmarks.md from the result files of the benchmark scripts.

Usage: python benchmarks/render_tables.py poisoning|defenses|mnar|decision|ceiling|attacks|lockstep|forensics|sae_scorers|
           extraction_defenses|query_detector|published_sasrec [RESULT_NAME]
       python benchmarks/render_tables.py cells AUDIT_DIR DEFENSE REVISION

Reads benchmarks/results/<name>.json (poisoning_ml1m, defenses_ml-100k_random,
mnar_semisynthetic by default) and prints the table that docs/benchmarks.md shows, so the
figures there can be regenerated rather than retyped.
"""

from __future__ import annotations

import json
import sys

from _common import RESULTS

from recguard.audit.report import format_interval as _ci  # mean [95% CI], or "not measurable"


def _ms(x, d=4, pct=False):
    if not x or x.get("mean") is None:
        return "–"
    if pct:
        return f"{100 * x['mean']:+.1f}%" + (f" ± {100 * x['sd']:.1f}" if x.get("n", 1) > 1 else "")
    return f"{x['mean']:.{d}f}" + (f" ± {x['sd']:.{d}f}" if x.get("n", 1) > 1 else "")


def poisoning(name: str = "poisoning_ml1m") -> None:
    r = json.loads((RESULTS / f"{name}.json").read_text())
    c = r["clean"]
    print(f"clean: NDCG@10 {_ms(c['NDCG@10'])}, HR@10 {_ms(c['HR@10'])}, T-HR@50 {_ms(c['T-HR@50'])}, "
          f"train {_ms(c['wall_time_s'], 0)} s; seeds {c['seeds']}\n")
    print("| attack | budget | fakes | T-HR@50 | lift | T-NDCG@50 | T-HR@10 | target rank | NDCG@10 | clean cost | cell s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in r["summary"]:
        print(f"| {s['attack']} | {100 * s['budget']:g}% | {s['num_fake_users']} | {_ms(s['T-HR@50'])} | {_ms(s['lift_T-HR@50'])} | "
              f"{_ms(s['T-NDCG@50'])} | {_ms(s['T-HR@10'])} | {_ms(s['mean_rank'], 0)} | {_ms(s['NDCG@10'])} | "
              f"{_ms(s['clean_cost_NDCG@10'], pct=True)} | {_ms(s['wall_time_s'], 0)} |")


HELD_OUT = ("surrogate", "extracted", "camouflage", "coverage")  # the families no defense setting was tuned on


def _with_ci(x):
    """Results recorded before intervals existed: the 95% interval from mean, sd and n (Student t)."""
    if not x or x.get("ci95") is not None or x.get("mean") is None or (x.get("n") or 0) < 2:
        return x
    from scipy.stats import t

    half = float(t.ppf(0.975, x["n"] - 1)) * (x["sd"] or 0.0) / x["n"] ** 0.5
    return {**x, "ci95": [x["mean"] - half, x["mean"] + half]}


def _upgrade(r: dict, name: str) -> None:
    """Give older defense results the interval and the "not measurable" rule of the current report
    (a known = Popular run without undefended rows takes the lifts of its known = Random sibling)."""
    from recguard.audit.results import measurable

    lifts = {}
    sibling = RESULTS / f"{name.replace('_popular', '_random')}.json"
    rows = list(r["table"]) + (json.loads(sibling.read_text())["table"] if sibling.exists() and "_popular" in name else [])
    for t in rows:
        if t["defense"] == "none" and (t["attack"], t.get("budget")) not in lifts:
            lifts[(t["attack"], t.get("budget"))] = _with_ci(t["lift_T-HR@50"])
    for t in r["table"]:
        for key in ("lift_T-HR@50", "clean_cost_NDCG@10", "removal", "net_removal"):
            t[key] = _with_ci(t.get(key))
    for t in r["table"]:
        ok = measurable(lifts.get((t["attack"], t.get("budget"))))
        for key in ("removal", "net_removal"):
            if t.get(key) and "measurable" not in t[key]:
                t[key] = {**t[key], "measurable": ok}


def defenses(name: str = "defenses_ml-100k_random") -> None:
    r = json.loads((RESULTS / f"{name}.json").read_text())
    _upgrade(r, name)
    print(f"clean: NDCG@10 {_ms(r['clean']['NDCG@10'])}, T-HR@50 {_ms(r['clean']['T-HR@50'])}\n")
    net = any(t.get("net_removal") for t in r["table"])
    groups = [("Heuristic attacks", [t for t in r["table"] if t["attack"] not in HELD_OUT]),
              ("Held-out families (model-guided and camouflage; never looked at while choosing any defense setting)",
               [t for t in r["table"] if t["attack"] in HELD_OUT])]
    for title, rows in groups:
        if not rows:
            continue
        print(f"**{title}**\n")
        print("| attack | budget | defense | T-HR@50 | lift [95% CI] | removal [95% CI] |" + (" net removal |" if net else "")
              + " NDCG@10 | clean cost | ROC-AUC | PR-AUC | precision | recall | FPR |")
        print("|---|---|---|---|---|---|" + ("---|" if net else "") + "---|---|---|---|---|---|---|")
        for t in rows:
            d = t.get("detection") or {}
            budget = f"{100 * t['budget']:g}%" if t.get("budget") else "–"
            print(f"| {t['attack']} | {budget} | {t['defense']} | {_ms(t['T-HR@50'])} | {_ci(t['lift_T-HR@50'])} | "
                  f"{_ci(t.get('removal'), pct=True, removal=True) if t['defense'] != 'none' else '–'} | "
                  + (f"{_ci(t.get('net_removal'), pct=True, removal=True)} | " if net else "")
                  + f"{_ms(t['NDCG@10'])} | {_ci(t['clean_cost_NDCG@10'], pct=True)} | {_ms(d.get('ROC-AUC'), 3)} | "
                  f"{_ms(d.get('PR-AUC'), 3)} | {_ms(d.get('precision'), 3)} | {_ms(d.get('recall'), 3)} | {_ms(d.get('FPR'), 3)} |")
        print()
    if r.get("controls"):
        print("Defenses trained on the clean data (controls):\n")
        print("| defense | clean T-HR@50 | T-HR@50 with defense | shift | NDCG@10 | clean cost | users down-weighted |")
        print("|---|---|---|---|---|---|---|")
        for dname, c in r["controls"].items():
            print(f"| {dname} | {_ms(c['clean_T-HR@50'])} | {_ms(c['T-HR@50'])} | {_ms(c['shift_T-HR@50'])} | {_ms(c['NDCG@10'])} | "
                  f"{_ms(c['clean_cost_NDCG@10'], pct=True)} | {_ms(c['flagged_share'], pct=True)} |")
    enc = r.get("encoding") or []
    if enc:
        e = max(enc, key=lambda x: x["users"])  # the cell that encoded the genuine users
        print(f"\nencoding: {e['users']} users, {e['tokens']} tokens in {e['seconds']:.0f} s = {e['users_per_s']:.2f} users/s, "
              f"{e['tokens_per_s']:.0f} tokens/s")
    if r.get("time_ratio"):
        print("time / plain training (training + the defense's own work; text encoding, cached across cells, aside): "
              + ", ".join(f"{d} {v['mean']:.2f}x" for d, v in r["time_ratio"].items() if v["mean"] is not None and d != "none"))
    if r["lorec_time_ratio"]["mean"] is not None:
        print(f"LoRec time / plain training: {r['lorec_time_ratio']['mean']:.2f}x total, "
              f"{r['lorec_time_per_epoch_ratio']['mean']:.2f}x per epoch")


def decision(name: str = "decision_amazon-office") -> None:
    """Per scorer, attack and budget: ROC-AUC, where the real fakes fall, how well the simulated
    fakes separate, and recall / genuine users flagged under each rule (mean over seeds)."""
    r = json.loads((RESULTS / f"{name}.json").read_text())
    cells = r["cells"]
    scorers = [k for k in ("pca", "llm4dec", "lorec") if any(k in c for c in cells)]
    rules = ["top@0.01", "top@0.02", "top@0.05", "mixture@0.02", "outlier@0.02", "simulated@0.02", "own"]
    for scorer in scorers:
        shown = [x for x in rules if any(x in c[scorer]["rules"] for c in cells if scorer in c)]
        print(f"**{scorer}** (recall / genuine users flagged, mean over seeds)\n")
        print("| attack | budget | seeds | ROC-AUC | fakes' median percentile | simulated separation | " + " | ".join(shown) + " |")
        print("|---|---|---|---|---|---|" + "---|" * len(shown))
        keys = list(dict.fromkeys((c["attack"], c["budget"]) for c in cells if scorer in c))
        for attack, budget in keys:
            cs = [c[scorer] for c in cells if scorer in c and c["attack"] == attack and c["budget"] == budget]

            def mean(xs):
                xs = [x for x in xs if x is not None]
                return sum(xs) / len(xs) if xs else float("nan")

            cols = []
            for x in shown:
                rs = [c["rules"][x] for c in cs if x in c["rules"]]
                cols.append(f"{mean([v['recall'] for v in rs]):.2f} / {100 * mean([v['genuine_flagged'] for v in rs]):.1f}%" if rs else "–")
            print(f"| {attack} | {100 * budget:g}% | {len(cs)} | {mean([c['ROC-AUC'] for c in cs]):.3f} | "
                  f"{mean([c['fake_percentile_median'] for c in cs]):.3f} | {mean([c.get('simulated_separation_auc') for c in cs]):.3f} | "
                  + " | ".join(cols) + " |")
        print()


def ceiling(name: str = "ceiling_amazon-office") -> None:
    """Removal when the top x% of users by each scorer are dropped."""
    r = json.loads((RESULTS / f"{name}.json").read_text())
    rows = r["rows"]
    shares = sorted({x["share"] for x in rows})
    print("| scorer | attack | budget | ROC-AUC | " + " | ".join(f"top {100 * x:g}%: removal [95% CI] (recall)" for x in shares) + " |")
    print("|---|---|---|---|" + "---|" * len(shares))
    for scorer, attack, budget in dict.fromkeys((x["scorer"], x["attack"], x["budget"]) for x in rows):
        cells = {x["share"]: x for x in rows if (x["scorer"], x["attack"], x["budget"]) == (scorer, attack, budget)}
        auc = next((c["ROC-AUC"] for c in cells.values() if c.get("ROC-AUC")), None)
        cols = [f"{_ci(cells[x]['removal'], pct=True, removal=True)} ({_ms(cells[x]['recall'], 2)})" if x in cells else "–"
                for x in shares]
        print(f"| {scorer} | {attack} | {100 * budget:g}% | {_ms(auc, 3)} | " + " | ".join(cols) + " |")


def cells(audit_dir: str, defense: str = "lorec", revision: str = "3") -> None:
    """Removal, clean cost and detection of one defense's cells of a given defense revision in an audit
    folder, against the undefended cells of the same attack, budget and seed (cells an older revision
    wrote stay in the folder; a resumed audit no longer reports them). Usage: render_tables.py cells
    runs/bench/defenses_amazon-office_random_i24 lorec 3"""
    from pathlib import Path

    from recguard.audit.results import mean_interval as _stats
    from recguard.metrics import defense_removal

    cs = [json.loads(p.read_text()) for p in sorted((Path(audit_dir) / "cells").glob("*.json"))]
    cs = [c for c in cs if c["kind"] == "poisoned"]
    base = {(c["attack"], c["budget"], c["seed"]): c for c in cs if c["defense"] == "none"}
    mine = [c for c in cs if c["defense"] == defense and str(c["key"].get("defense_revision")) == str(revision)]
    print("| attack | budget | seeds | lift [95% CI] | removal [95% CI] | clean cost | ROC-AUC | recall | genuine flagged |")
    print("|---|---|---|---|---|---|---|---|---|")
    from recguard.audit.results import measurable

    for attack, budget in dict.fromkeys((c["attack"], c["budget"]) for c in mine):
        group = [c for c in mine if (c["attack"], c["budget"]) == (attack, budget) and (attack, budget, c["seed"]) in base]
        lift = _stats([base[(attack, budget, c["seed"])]["derived"]["lift_T-HR@50"] for c in group])
        removal = _stats([defense_removal(c["clean_target"]["T-HR@50"], base[(attack, budget, c["seed"])]["metrics"]["target"]["T-HR@50"],
                                       c["metrics"]["target"]["T-HR@50"]) for c in group])
        removal["measurable"] = measurable(lift)
        cost = _stats([c["derived"]["clean_cost_NDCG@10"] for c in group])
        det = {m: _stats([(c.get("detection") or {}).get(m) for c in group]) for m in ("ROC-AUC", "recall", "FPR")}
        print(f"| {attack} | {100 * budget:g}% | {len(group)} | {_ci(lift)} | {_ci(removal, pct=True, removal=True)} | "
              f"{_ci(cost, pct=True)} | "
              f"{_ms(det['ROC-AUC'], 3)} | {_ms(det['recall'], 2)} | {_ms(det['FPR'], 3)} |")


def mnar(name: str = "mnar_semisynthetic") -> None:
    r = json.loads((RESULTS / f"{name}.json").read_text())

    def ci(x):
        return f"{x['mean']:.4f} [{x['lo']:.4f}, {x['hi']:.4f}]" if x.get("lo") is not None else f"{x['mean']:.4f}"

    print("| loss | DCG@5 | Recall@5 | MAP@5 | DCG@1 | rare DCG@5 | Δ DCG@5 vs naive |")
    print("|---|---|---|---|---|---|---|")
    order = [x for x in ("naive", "relmf", "clipped", "ubpr") if x in r["summary"]]
    for loss in order:
        m = r["summary"][loss]
        diff = r["vs_naive"].get(loss, {}).get("DCG@5")
        print(f"| {loss} | {ci(m['DCG@5'])} | {ci(m['Recall@5'])} | {ci(m['MAP@5'])} | {ci(m['DCG@1'])} | {ci(m['rare_DCG@5'])} | "
              f"{ci(diff) if diff else '–'} |")


def lockstep(name: str = "lockstep_variants_amazon-office") -> None:
    """ROC-AUC and recall / genuine flagged of each lockstep score variant, per attack and budget."""
    rows = json.loads((RESULTS / f"{name}.json").read_text())["rows"]
    cols = list(dict.fromkeys((r["attack"], r["budget"]) for r in rows))
    print("| variant | partner g | " + " | ".join(f"{a} {100 * b:g}%" for a, b in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for v, g in dict.fromkeys((r["variant"], r.get("share", r.get("g"))) for r in rows):
        cells = []
        for a, b in cols:
            r = next(x for x in rows if x["variant"] == v and x.get("share", x.get("g")) == g and x["attack"] == a and x["budget"] == b)
            cells.append(f"{r['ROC-AUC']:.3f}: {r['recall']:.2f} / {100 * r['genuine_flagged']:.1f}%")
        g_text = f"{g:g} of users (g = {next(x['group'] for x in rows if x.get('share') == g)})" if isinstance(g, float) else f"{g}"
        print(f"| {v} | {g_text} | " + " | ".join(cells) + " |")


def attacks(name: str = "defenses_amazon-office_random_i26") -> None:
    """Undefended lift per attack (per seed) and each attack's paired difference to Random."""
    p = json.loads((RESULTS / f"{name}.json").read_text())["paired_lift"]
    print("| attack | budget | lift T-HR@50 per seed | lift − Random's, same seeds [95% CI] |")
    print("|---|---|---|---|")
    for key, by_seed in p["lift_by_seed"].items():
        attack, budget = key.split("@")
        seeds = ", ".join(f"{by_seed[s]:.4f}" for s in sorted(by_seed, key=int))
        diff = p["minus_random"].get(key)
        print(f"| {attack} | {100 * float(budget):g}% | {seeds} | {_ci(diff) if diff else '–'} |")


def forensics(name: str = "forensics_amazon-office") -> None:
    """Recall and precision of the injected users among the top 1% by influence, per attack (with the
    ROC-AUC of |influence| and the sign agreement where the run recorded them)."""
    r = json.loads((RESULTS / f"{name}.json").read_text())
    extra = any("roc_auc_abs" in m for m in r["summary"].values())
    print("| attack | seeds | recall in the top 1% [95% CI] | precision in the top 1% | ROC-AUC | s per traced item |"
          + (" ROC-AUC of abs(influence) | sign agreement |" if extra else ""))
    print("|---|---|---|---|---|---|" + ("---|---|" if extra else ""))
    for attack, m in r["summary"].items():
        rec = m["recall_top1pct"]
        print(f"| {attack} | {rec['n']} | {rec['mean']:.3f} [{rec['ci95'][0]:.3f}, {rec['ci95'][1]:.3f}] | "
              f"{m['precision_top1pct']['mean']:.3f} | {_interval(m['roc_auc'])} | {m['seconds_per_item']['mean']:.1f} |"
              + (f" {_interval(m.get('roc_auc_abs'))} | {_interval(m.get('sign_agreement'), 2)} |" if extra else ""))


def _interval(m: dict | None, d: int = 3) -> str:
    if not m or m.get("mean") is None:
        return "–"
    if not m.get("ci95"):
        return f"{m['mean']:.{d}f}"
    return f"{m['mean']:.{d}f} [{m['ci95'][0]:.{d}f}, {m['ci95'][1]:.{d}f}]"


def sae_scorers(name: str = "sae_scorers_amazon-office") -> None:
    """ROC-AUC / PR-AUC of each SAE-based score on the injected users, per attack."""
    r = json.loads((RESULTS / f"{name}.json").read_text())
    scorers = list(next(iter(r["summary"].values())))
    print("| attack | seeds | " + " | ".join(scorers) + " |")
    print("|---|---|" + "---|" * len(scorers))
    for attack, m in r["summary"].items():
        n = m[scorers[0]]["roc_auc"]["n"]
        print(f"| {attack} | {n} | " + " | ".join(f"{m[s]['roc_auc']['mean']:.3f} / {m[s]['pr_auc']['mean']:.2f}" for s in scorers) + " |")


def extraction_defenses(name: str = "extraction_defenses_amazon-office") -> None:
    """Agreement@10 of the stolen model and the genuine users' cost, per (mode, API defense)."""
    r = json.loads((RESULTS / f"{name}.json").read_text())
    print("| mode | API defense | seeds | Agreement@10 [95% CI] | share of the undefended agreement left | Agreement@1 | "
          "stolen NDCG@10 | genuine users' NDCG@10 cost |")
    print("|---|---|---|---|---|---|---|---|")
    for key, m in r["summary"].items():
        mode, defense = key.split("/", 1)
        print(f"| {mode} | `{defense}` | {m['seeds']} | {_interval(m['agreement@10'])} | {_interval(m['agreement_left'], 2)} | "
              f"{_interval(m['agreement@1'])} | {_ms(m['stolen_NDCG@10'])} | {_ms(m['cost'], pct=True)} |")


def query_detector(name: str = "query_detector_amazon-office") -> None:
    """How early the query-stream detector flags each attack's accounts, and the genuine users it flags."""
    r = json.loads((RESULTS / f"{name}.json").read_text())
    print("| attack | seeds | flagged within the first 10% of queries [95% CI] | flagged at all | median query flagged | "
          "genuine users flagged, first 50 items [95% CI] | on their last 50 | on either |")
    print("|---|---|---|---|---|---|---|---|")
    for attack, m in r["summary"].items():
        print(f"| {attack} | {m['flagged']['n']} | {_interval(m['flagged_within_10pct'])} | {_interval(m['flagged'])} | "
              f"{_ms(m['median_query_flagged'], 1)} | {_interval(m['genuine_flagged'], 4)} | "
              f"{_interval(m.get('genuine_flagged_last_window'), 4)} | {_interval(m.get('genuine_flagged_either'), 4)} |")


def _spread(values: list[float]) -> dict:
    """``mean``, ``sd`` (n − 1) and ``n`` of some runs, with ``ci95`` (Student t) from :func:`_with_ci`."""
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else None
    return _with_ci({"mean": mean, "sd": sd, "n": n})


def published_sasrec(pattern: str = "victims_ml1m_sasrec_published_rev6_s*.json") -> None:
    """SASRec on ML-1M with the published recipe: recguard's runs beside the paper's code's runs, each run's
    test NDCG@10 and HR@10, each side's mean with its 95% interval, and their difference (Welch, and with
    one pooled spread)."""
    from scipy.stats import t

    sides = {
        "recguard, published variant": [(p.stem, json.loads(p.read_text())["test"]) for p in sorted(RESULTS.glob(pattern))],
        "the paper's code": [(p.stem, {"NDCG@10": m["metrics"]["test_ndcg@10"], "HR@10": m["metrics"]["test_hit_rate@10"]})
                             for p in sorted(RESULTS.glob("paper_code_SASRec_ml-1m_s*.json"))
                             for m in [json.loads(p.read_text())] if "test_ndcg@10" in m.get("metrics", {})],
    }
    print("| side | run | test NDCG@10 | HR@10 |")
    print("|---|---|---|---|")
    ndcg = {}
    for side, runs in sides.items():
        for stem, r in runs:
            print(f"| {side} | `{stem}` | {r['NDCG@10']:.4f} | {r['HR@10']:.4f} |")
        if runs:
            ndcg[side] = _spread([r["NDCG@10"] for _, r in runs])
            hr = _spread([r["HR@10"] for _, r in runs])
            print(f"| **{side}, mean of {len(runs)}** | – | {_interval(ndcg[side], 4)} | {_interval(hr, 4)} |")
    a, b = ndcg.get("the paper's code"), ndcg.get("recguard, published variant")
    if a and b and a["n"] >= 2 and b["n"] >= 2:
        diff = a["mean"] - b["mean"]
        se_a, se_b = a["sd"] / a["n"] ** 0.5, b["sd"] / b["n"] ** 0.5
        se = (se_a**2 + se_b**2) ** 0.5
        dof = se**4 / (se_a**4 / (a["n"] - 1) + se_b**4 / (b["n"] - 1))
        half = float(t.ppf(0.975, dof)) * se
        print(f"\nthe paper's code minus recguard (Welch, {dof:.1f} degrees of freedom): "
              f"{diff:+.4f} [{diff - half:+.4f}, {diff + half:+.4f}]")
        pooled_dof = a["n"] + b["n"] - 2  # one spread for both: the two train the same function (paper_code.py --check-model)
        pooled_sd = ((a["sd"] ** 2 * (a["n"] - 1) + b["sd"] ** 2 * (b["n"] - 1)) / pooled_dof) ** 0.5
        half = float(t.ppf(0.975, pooled_dof)) * pooled_sd * (1 / a["n"] + 1 / b["n"]) ** 0.5
        print(f"the same with one pooled spread (Student, {pooled_dof} degrees of freedom): "
              f"{diff:+.4f} [{diff - half:+.4f}, {diff + half:+.4f}]")

if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "poisoning"
    fn = {"poisoning": poisoning, "defenses": defenses, "mnar": mnar, "decision": decision, "ceiling": ceiling, "cells": cells,
          "attacks": attacks, "lockstep": lockstep, "forensics": forensics, "sae_scorers": sae_scorers,
          "extraction_defenses": extraction_defenses, "query_detector": query_detector,
          "published_sasrec": published_sasrec}[kind]
    fn(*sys.argv[2:])
