"""Audit results: ``results.json`` (every number + provenance), ``report.md`` and a
self-contained ``report.html`` (plots embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_text, read_json
from ..errors import ArtifactError
from .spec import AuditSpec

__all__ = ["build_results", "write_reports", "rerender"]

FORMAT = "recguard-audit"


def _ms(values: list[float]) -> dict:
    """Mean, sd and the 95% confidence interval of the mean (Student t over the seeds; None below two values)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "sd": None, "n": 0, "ci95": None}
    n, mean = int(len(v)), float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    ci = None
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
        ci = [float(mean - half), float(mean + half)]
    return {"mean": mean, "sd": sd, "n": n, "ci95": ci}


def measurable(lift: dict | None) -> bool | None:
    """Whether a lift is told apart from zero: its 95% interval excludes 0 (None: fewer than two seeds)."""
    if not lift or lift.get("ci95") is None:
        return None
    lo, hi = lift["ci95"]
    return bool(lo > 0 or hi < 0)


DETECTION_METRICS = ("ROC-AUC", "PR-AUC", "precision", "recall", "F1", "FPR")


def _add_removal(summary: list[dict], groups: dict, controls: dict, k: int) -> None:
    """Defense removal per row, against the undefended row of the same attack and budget, seed
    by seed; with control cells also the net removal and the control's T-HR."""
    from ..metrics import defense_removal

    m = f"T-HR@{k}"
    for row in summary:
        if row["defense"] == "none":
            continue
        base = {c["seed"]: c for c in groups.get((row["attack"], row["budget"], "none"), [])}
        vals, net, ctrl = [], [], []
        for c in groups[(row["attack"], row["budget"], row["defense"])]:
            b = base.get(c["seed"])
            if b is None:
                continue
            args = (c["clean_target"][m], b["metrics"]["target"][m], c["metrics"]["target"][m])
            vals.append(defense_removal(*args))
            ctl = controls.get((row["defense"], c["seed"]))
            if ctl is not None and sorted(ctl["targets"]) == sorted(c["targets"]):
                ctrl.append(ctl["metrics"]["target"][m])
                net.append(defense_removal(*args, defended_clean=ctrl[-1]))
        row[f"removal_{m}"] = _ms(vals)
        # a removal ratio divides by the attack's lift: with a lift that its interval cannot tell from 0 it is noise
        base_lift = _ms([b["derived"][f"lift_{m}"] for b in base.values()])
        row[f"removal_{m}"]["measurable"] = measurable(base_lift)
        if controls:
            row[f"control_{m}"] = _ms(ctrl)
            row[f"net_removal_{m}"] = {**_ms(net), "measurable": measurable(base_lift)}


def _control_summary(controls: list[dict], ks) -> dict:
    """Per defense, over seeds: the defense trained on the clean data."""
    out = {}
    for d in dict.fromkeys(c["defense"] for c in controls):
        cs = [c for c in controls if c["defense"] == d]
        row = {"seeds": sorted(c["seed"] for c in cs)}
        for k in ks:
            row[f"clean_T-HR@{k}"] = _ms([c["clean_target"][f"T-HR@{k}"] for c in cs])
            row[f"T-HR@{k}"] = _ms([c["metrics"]["target"][f"T-HR@{k}"] for c in cs])
            row[f"shift_T-HR@{k}"] = _ms([c["derived"][f"shift_T-HR@{k}"] for c in cs])
        row["NDCG@10"] = _ms([c["metrics"]["clean"]["NDCG@10"] for c in cs])
        row["clean_cost_NDCG@10"] = _ms([c["derived"]["clean_cost_NDCG@10"] for c in cs])
        row["flagged_share"] = _ms([c.get("flagged_share") for c in cs])
        row["wall_time_s"] = _ms([c["wall_time_s"] for c in cs])
        out[d] = row
    return out


def build_results(spec: AuditSpec, cells: list[dict], provenance: dict, *, wall_time_s: float) -> dict:
    clean = sorted([c for c in cells if c["kind"] == "clean"], key=lambda c: c["seed"])
    poisoned = [c for c in cells if c["kind"] == "poisoned"]
    control_cells = sorted([c for c in cells if c["kind"] == "control"], key=lambda c: c["seed"])
    k_hi = max(spec.ks)
    groups: dict[tuple, list[dict]] = {}
    for c in poisoned:
        groups.setdefault((c["attack"], c["budget"], c["defense"]), []).append(c)
    order = {a: i for i, a in enumerate(spec.attack_names())}
    summary = []
    d_order = {d: i for i, d in enumerate(spec.defenses)}
    for (attack, budget, defense), cs in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1] or 0,
                                                                                d_order.get(kv[0][2], 99), kv[0][2])):
        row = {"attack": attack, "budget": budget, "defense": defense, "seeds": sorted(c["seed"] for c in cs),
               "num_fake_users": cs[0]["num_fake_users"]}
        for k in spec.ks:
            row[f"clean_T-HR@{k}"] = _ms([c["clean_target"][f"T-HR@{k}"] for c in cs])
            row[f"T-HR@{k}"] = _ms([c["metrics"]["target"][f"T-HR@{k}"] for c in cs])
            row[f"T-NDCG@{k}"] = _ms([c["metrics"]["target"][f"T-NDCG@{k}"] for c in cs])
            row[f"lift_T-HR@{k}"] = _ms([c["derived"][f"lift_T-HR@{k}"] for c in cs])
        row["mean_rank"] = _ms([c["metrics"]["target"]["mean_rank"] for c in cs])
        row["clean_mean_rank"] = _ms([c["clean_target"]["mean_rank"] for c in cs])
        row["NDCG@10"] = _ms([c["metrics"]["clean"]["NDCG@10"] for c in cs])
        row["HR@10"] = _ms([c["metrics"]["clean"]["HR@10"] for c in cs])
        row["clean_cost_NDCG@10"] = _ms([c["derived"]["clean_cost_NDCG@10"] for c in cs])
        row["wall_time_s"] = _ms([c["wall_time_s"] for c in cs])
        row["defense_time_s"] = _ms([c.get("defense_time_s") for c in cs])
        dets = [c.get("detection") for c in cs if c.get("detection")]
        if dets:
            row["detection"] = {m: _ms([d.get(m) for d in dets]) for m in DETECTION_METRICS}
        summary.append(row)
    _add_removal(summary, groups, {(c["defense"], c["seed"]): c for c in control_cells}, k_hi)
    clean_summary = {
        "seeds": [c["seed"] for c in clean],
        "NDCG@10": _ms([c["metrics"]["clean"]["NDCG@10"] for c in clean]),
        "HR@10": _ms([c["metrics"]["clean"]["HR@10"] for c in clean]),
        f"T-HR@{k_hi}": _ms([c["metrics"]["target"][f"T-HR@{k_hi}"] for c in clean]),
        "wall_time_s": _ms([c["wall_time_s"] for c in clean]),
    }
    if control_cells:
        clean_summary["controls"] = _control_summary(control_cells, spec.ks)
    return {
        "format": FORMAT, "format_version": 1, "spec": spec.to_dict(), "provenance": provenance,
        "clean": clean_summary, "summary": summary, "cells": sorted(cells, key=lambda c: json.dumps(c.get("key", {}), sort_keys=True)),
        "wall_time_s": wall_time_s,
        "compute_time_s": float(sum(c.get("wall_time_s", 0.0) for c in cells)),
    }


# ---------------------------------------------------------------------------- rendering
def _fmt_ci(ms: dict | None, digits: int = 4, pct: bool = False) -> str:
    """``mean [lo, hi]`` with the 95% interval over seeds; a removal whose lift cannot be told from 0
    reads "not measurable" instead of a ratio of noise."""
    if not ms or ms.get("mean") is None:
        return "–"
    if ms.get("measurable") is False:
        return "not measurable"
    f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{x:.{digits}f}")
    return f(ms["mean"]) + (f" [{f(ms['ci95'][0])}, {f(ms['ci95'][1])}]" if ms.get("ci95") else "")


def _fmt(ms: dict | None, digits: int = 4, pct: bool = False) -> str:
    if not ms or ms.get("mean") is None:
        return "–"
    m, s = ms["mean"], ms["sd"]
    if pct:
        txt = f"{100 * m:+.1f}%"
        return txt + (f" ± {100 * s:.1f}" if ms["n"] > 1 else "")
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if ms["n"] > 1 else "")


def _budget(b) -> str:
    return "file" if b is None else f"{100 * b:g}%"


def _defended(results: dict) -> bool:
    return any(r["defense"] != "none" for r in results["summary"])


def _controlled(results: dict) -> bool:
    return bool(results["clean"].get("controls"))


def _rows(results: dict) -> list[list[str]]:
    k = max(results["spec"]["ks"])
    rows = []
    for r in results["summary"]:
        row = [
            r["attack"], _budget(r["budget"]), r["defense"], str(r["num_fake_users"]),
            _fmt(r[f"clean_T-HR@{k}"]), _fmt(r[f"T-HR@{k}"]), _fmt_ci(r[f"lift_T-HR@{k}"]),
        ]
        if _defended(results):
            row.append(_fmt_ci(r.get(f"removal_T-HR@{k}"), pct=True) if r["defense"] != "none" else "")
        if _controlled(results):
            row.append(_fmt_ci(r.get(f"net_removal_T-HR@{k}"), pct=True) if r["defense"] != "none" else "")
        row += [_fmt(r[f"T-NDCG@{k}"]), _fmt(r["mean_rank"], 0), _fmt(r["NDCG@10"]), _fmt(r["clean_cost_NDCG@10"], pct=True),
                _fmt(r["wall_time_s"], 1)]
        rows.append(row)
    return rows


def _headers(results: dict) -> list[str]:
    k = max(results["spec"]["ks"])
    return (["attack", "budget", "defense", "fakes", f"clean T-HR@{k}", f"T-HR@{k}", "lift"]
            + (["removal"] if _defended(results) else []) + (["net removal"] if _controlled(results) else [])
            + [f"T-NDCG@{k}", "target rank", "NDCG@10", "clean cost", "cell s"])


_DET_HEADERS = ["attack", "budget", "defense", "ROC-AUC", "PR-AUC", "precision", "recall", "F1", "FPR (genuine)", "defense s"]


def _detection_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["summary"]:
        d = r.get("detection")
        if not d:
            continue
        rows.append([r["attack"], _budget(r["budget"]), r["defense"], *(_fmt(d[m], 3) for m in DETECTION_METRICS),
                     _fmt(r.get("defense_time_s"), 1)])
    return rows


_CTRL_HEADERS = ["defense", "clean T-HR@{k}", "T-HR@{k} with defense", "shift", "NDCG@10", "clean cost", "users down-weighted",
                 "cell s"]
_CTRL_NOTE = ("Each defense trained on the clean data (no attack), same seeds and targets. Shift = its T-HR minus the clean "
              "victim's: what the defense alone does to the targets. Net removal = 1 − (defended − control) / (undefended − "
              "clean): the share of the attack's lift the defense cancels, not counting that shift.")


def _control_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    k = max(results["spec"]["ks"])
    rows = [[d, _fmt(r[f"clean_T-HR@{k}"]), _fmt(r[f"T-HR@{k}"]), _fmt(r[f"shift_T-HR@{k}"]), _fmt(r["NDCG@10"]),
             _fmt(r["clean_cost_NDCG@10"], pct=True), _fmt(r["flagged_share"], pct=True), _fmt(r["wall_time_s"], 1)]
            for d, r in (results["clean"].get("controls") or {}).items()]
    return [h.format(k=k) for h in _CTRL_HEADERS], rows


def render_markdown(results: dict) -> str:
    spec, prov, clean = results["spec"], results["provenance"], results["clean"]
    lines = [
        f"# recguard audit: {spec['model']} on {spec['dataset']}",
        "",
        f"Seeds {spec['seeds']}; targets: {spec['num_targets']} {spec['targets'] if isinstance(spec['targets'], str) else 'given'} items; "
        f"profiles: `{spec['order']}`; surrogate: `{spec['surrogate']}`.",
        f"Clean victim: NDCG@10 {_fmt(clean['NDCG@10'])}, HR@10 {_fmt(clean['HR@10'])} (full ranking, genuine users).",
        "",
        "| " + " | ".join(_headers(results)) + " |",
        "|" + "---|" * len(_headers(results)),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(results)]
    det = _detection_rows(results)
    if det:
        lines += ["", "## Detection of the injected users", "", "| " + " | ".join(_DET_HEADERS) + " |", "|" + "---|" * len(_DET_HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in det]
        lines += ["", "Precision/recall/F1 at each defense's own decision (LLM4Dec: p ≥ 0.5; LoRec: down-weighted users); "
                  "FPR over genuine users. Removal = 1 − (defended − clean) / (undefended − clean) in T-HR."]
    if _controlled(results):
        heads, ctrl = _control_rows(results)
        lines += ["", "## Defenses on clean data (controls)", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(r) + " |" for r in ctrl] + ["", _CTRL_NOTE]
    if len(spec["seeds"]) == 1:
        lines += ["", f"> {_ONE_SEED}"]
    lines += [
        "",
        "Values are mean ± sd over seeds; lift and removal are mean [95% confidence interval] (Student t over seeds).",
        "Lift = T-HR(poisoned) − T-HR(clean); a removal is \"not measurable\" when the undefended lift's interval",
        "includes 0 (the ratio would divide by noise). Clean cost = relative change of NDCG@10 against the clean victim.",
        "Fake users never count in any metric.",
        "",
        f"recguard {prov['recguard']}, torch {prov['torch']}, python {prov['python']}; "
        f"compute {results.get('compute_time_s', 0):.0f} s over all cells (this run: {results['wall_time_s']:.0f} s).",
        "",
    ]
    return "\n".join(lines)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(results: dict) -> list[tuple[str, str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(results["spec"]["ks"])
    summary = results["summary"]
    out = []
    if not summary:  # defense controls alone: their table says it all
        return out
    defenses = list(dict.fromkeys(r["defense"] for r in summary))
    attacks = list(dict.fromkeys(r["attack"] for r in summary))
    budgets = list(dict.fromkeys(r["budget"] for r in summary))
    colors = plt.get_cmap("tab10").colors
    # 1. T-HR@k by attack × budget (per defense) with error bars over seeds
    series = [(b, d) for d in defenses for b in budgets if any(r["budget"] == b and r["defense"] == d for r in summary)]
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(attacks) * max(1, len(series)) / 2 + 2), 3.4))
    width = 0.8 / max(1, len(series))
    for j, (b, d) in enumerate(series):
        xs, ys, es = [], [], []
        for i, a in enumerate(attacks):
            r = next((r for r in summary if r["attack"] == a and r["budget"] == b and r["defense"] == d), None)
            if r is None:
                continue
            xs.append(i + (j - (len(series) - 1) / 2) * width)
            ys.append(r[f"T-HR@{k}"]["mean"])
            es.append(r[f"T-HR@{k}"]["sd"] or 0.0)
        label = f"{_budget(b)} fakes" + (f", {d}" if len(defenses) > 1 else "")
        ax.bar(xs, ys, width, yerr=es, capsize=3, color=colors[j % 10], label=label)
    clean_vals = [r[f"clean_T-HR@{k}"]["mean"] for r in summary if r[f"clean_T-HR@{k}"]["mean"] is not None]
    if clean_vals:
        ax.axhline(float(np.mean(clean_vals)), color="black", linestyle="--", linewidth=1, label="clean model")
    ax.set_xticks(range(len(attacks)), attacks)
    ax.set_ylabel(f"T-HR@{k}")
    ax.set_title(f"Target exposure after poisoning (T-HR@{k}, higher = attack worked)")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    out.append(("exposure", f"T-HR@{k} by attack and budget", _png(fig)))
    # 2. clean-metric cost
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(attacks) + 2), 3.0))
    for j, (b, d) in enumerate(series):
        xs, ys, es = [], [], []
        for i, a in enumerate(attacks):
            r = next((r for r in summary if r["attack"] == a and r["budget"] == b and r["defense"] == d), None)
            if r is None or r["clean_cost_NDCG@10"]["mean"] is None:
                continue
            xs.append(i + (j - (len(series) - 1) / 2) * width)
            ys.append(100 * r["clean_cost_NDCG@10"]["mean"])
            es.append(100 * (r["clean_cost_NDCG@10"]["sd"] or 0.0))
        ax.bar(xs, ys, width, yerr=es, capsize=3, color=colors[j % 10], label=f"{_budget(b)}" + (f", {d}" if len(defenses) > 1 else ""))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(attacks)), attacks)
    ax.set_ylabel("Δ NDCG@10 vs clean (%)")
    ax.set_title("Cost to genuine users' recommendation quality")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    out.append(("cost", "Clean NDCG@10 change", _png(fig)))
    # 3. defense comparison: T-HR@k per attack, one bar per defense (first budget), clean level dashed
    if len(defenses) > 1:
        b0 = budgets[0]
        fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(attacks) + 2), 3.4))
        width = 0.8 / len(defenses)
        for j, d in enumerate(defenses):
            xs, ys, es = [], [], []
            for i, a in enumerate(attacks):
                r = next((r for r in summary if r["attack"] == a and r["budget"] == b0 and r["defense"] == d), None)
                if r is None:
                    continue
                xs.append(i + (j - (len(defenses) - 1) / 2) * width)
                ys.append(r[f"T-HR@{k}"]["mean"])
                es.append(r[f"T-HR@{k}"]["sd"] or 0.0)
            ax.bar(xs, ys, width, yerr=es, capsize=3, color=colors[j % 10], label=d)
        clean_level = results["clean"].get(f"T-HR@{k}", {}).get("mean")
        if clean_level is not None:
            ax.axhline(clean_level, color="#444", ls="--", lw=1, label="clean victim")
        ax.set_xticks(range(len(attacks)))
        ax.set_xticklabels(attacks)
        ax.set_ylabel(f"T-HR@{k}")
        ax.set_title(f"Defenses against each attack ({_budget(b0)} fakes)", fontsize=11)
        ax.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        out.append(("defenses", "Defense comparison", _png(fig)))

    # 4. per-target bars (first budget, first defense, first seed: each seed draws its own targets)
    b0, d0 = budgets[0], defenses[0]
    seed0 = min((c["seed"] for c in results["cells"] if c["kind"] == "poisoned"), default=None)
    cells = [c for c in results["cells"] if c["kind"] == "poisoned" and c["budget"] == b0 and c["defense"] == d0
             and c["seed"] == seed0]
    if cells:
        fig, axes = plt.subplots(1, len(attacks), figsize=(max(6, 2.6 * len(attacks)), 2.9), sharey=True, squeeze=False)
        for ax, a in zip(axes[0], attacks):
            cs = [c for c in cells if c["attack"] == a]
            if not cs:
                ax.set_visible(False)
                continue
            tlist = [str(t) for t in cs[0]["targets"]]
            pois = [np.mean([c["metrics"]["target"]["per_target"][t][f"T-HR@{k}"] for c in cs]) for t in tlist]
            base = [np.mean([c["clean_target"]["per_target"][t][f"T-HR@{k}"] for c in cs]) for t in tlist]
            x = np.arange(len(tlist))
            ax.bar(x - 0.2, base, 0.4, color="#999999", label="clean")
            ax.bar(x + 0.2, pois, 0.4, color=colors[0], label="poisoned")
            ax.set_xticks(x, tlist, rotation=45, fontsize=8)
            ax.set_title(a, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].set_ylabel(f"T-HR@{k}")
        axes[0][0].legend(fontsize=8, frameon=False)
        fig.suptitle(f"Per target item ({_budget(b0)} fakes, defense {d0}, seed {seed0})", fontsize=11)
        fig.tight_layout()
        out.append(("targets", "Per-target exposure", _png(fig)))
    return out


_ONE_SEED = (
    "One seed only: every number includes training noise (a retrained victim differs from the clean one even "
    "without fake users, by a few percent of NDCG@10 on small data). Run several seeds (--seeds 0,1,2) before "
    "drawing conclusions."
)

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#666;margin-top:0}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;min-width:180px;background:#fafafa}
.card b{display:block;font-size:1.3rem}.card span{color:#666;font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}th,td{padding:.35rem .5rem;border-bottom:1px solid #eee;text-align:right}
th{background:#f3f3f3;position:sticky;top:0}td:first-child,th:first-child,td:nth-child(3),th:nth-child(3){text-align:left}
tr.hi td{background:#fff4e5}img{max-width:100%;margin:.5rem 0}.note{color:#555;font-size:.85rem}
code{background:#f3f3f3;padding:0 .25rem;border-radius:3px}
.warn{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem;font-size:.85rem}
"""


def render_html(results: dict) -> str:
    spec, prov, clean = results["spec"], results["provenance"], results["clean"]
    k = max(spec["ks"])
    esc = html.escape
    summary = results["summary"]
    worst = max(summary, key=lambda r: r[f"lift_T-HR@{k}"]["mean"] or -1, default=None)
    cards = [
        (f"{_fmt(clean['NDCG@10'])}", "clean NDCG@10"),
        (f"{_fmt(clean[f'T-HR@{k}'])}", f"clean T-HR@{k} of targets"),
    ]
    if worst is not None:
        cards.append((f"{_fmt(worst[f'T-HR@{k}'])}", f"worst case: {worst['attack']} at {_budget(worst['budget'])} ({worst['defense']})"))
        cards.append((f"{_fmt(worst[f'lift_T-HR@{k}'])}", f"largest lift in T-HR@{k}"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>recguard audit</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Robustness audit: {esc(spec['model'])} on {esc(spec['dataset'])}</h1>",
        f"<p class='sub'>{len(spec['seeds'])} seed(s) · {spec['num_targets']} target items "
        f"({esc(str(spec['targets']) if isinstance(spec['targets'], str) else 'given')}) · profiles <code>{esc(spec['order'])}</code> · "
        f"surrogate <code>{esc(str(spec['surrogate']))}</code></p>",
        "<div class='cards'>" + "".join(f"<div class='card'><b>{esc(v)}</b><span>{esc(t)}</span></div>" for v, t in cards) + "</div>",
        "<h2>Summary</h2>",
        "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _headers(results)) + "</tr></thead><tbody>",
    ]
    for r, row in zip(summary, _rows(results)):
        cls = " class='hi'" if r is worst else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>")
    parts.append("</tbody></table>")
    parts.append(
        f"<p class='note'>Mean ± sd over seeds; lift and removal: mean [95% confidence interval] (Student t over seeds), "
        "and a removal is 'not measurable' when the undefended lift's interval includes 0. "
        f"T-HR@{k}: share of genuine users (who never interacted with the target) "
        f"whose top-{k} unseen items contain the target, averaged over targets. Lift = poisoned − clean. "
        "Clean cost = relative change of NDCG@10 (full ranking, genuine users). Fake users are never counted.</p>"
    )
    det = _detection_rows(results)
    if det:
        parts.append("<h2>Detection of the injected users</h2><table><thead><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in _DET_HEADERS) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>" for row in det]
        parts.append("</tbody></table><p class='note'>ROC-/PR-AUC of each defense's suspicion score on the injected fake "
                     "users; precision, recall and F1 at the defense's own decision (LLM4Dec: p ≥ 0.5; LoRec: users it "
                     "down-weighted); FPR over genuine users. Defenses learn only from an attack they simulate themselves "
                     "(never from these labels).</p>")
    if _controlled(results):
        heads, ctrl = _control_rows(results)
        parts.append("<h2>Defenses on clean data (controls)</h2><table><thead><tr>"
                     + "".join(f"<th>{esc(h)}</th>" for h in heads) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>" for row in ctrl]
        parts.append(f"</tbody></table><p class='note'>{esc(_CTRL_NOTE)}</p>")
    if len(spec["seeds"]) == 1:
        parts.append(f"<p class='warn'>{esc(_ONE_SEED)}</p>")
    for _, title, uri in _plots(results):
        parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' src='{uri}'>")
    parts.append("<h2>Provenance</h2><table><tbody>")
    fps = sorted({c.get("data_fingerprint", "") for c in results["cells"] if c["kind"] == "clean"})
    for key, val in [("recguard", prov["recguard"]), ("torch", prov["torch"]), ("numpy", prov["numpy"]),
                     ("python", prov["python"]), ("platform", prov["platform"]), ("command", " ".join(prov["command"])),
                     ("data fingerprint", ", ".join(f[:16] for f in fps)),
                     ("compute time, all cells", f"{results.get('compute_time_s', 0):.0f} s"),
                     ("this run's wall time", f"{results['wall_time_s']:.0f} s")]:
        parts.append(f"<tr><td>{esc(key)}</td><td style='text-align:left'>{esc(str(val))}</td></tr>")
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts)


def write_reports(results: dict, out: str | Path, *, with_json: bool = True) -> None:
    """``report.md`` and ``report.html`` (and ``results.json``); both reports are rendered before
    anything is written, so a failure leaves the folder as it was."""
    out = Path(out)
    md, page = render_markdown(results), render_html(results)
    if with_json:
        atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", page)


def rerender(out: str | Path) -> dict:
    """Re-render ``report.md`` / ``report.html`` from ``OUT/results.json``."""
    p = Path(out) / "results.json"
    if not p.exists():
        raise ArtifactError(f"{p}: not found; run `recguard audit --out {out}` first")
    results = read_json(p, ArtifactError)
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ArtifactError(f"{p}: not a recguard audit result (no \"format\": \"{FORMAT}\")")
    try:
        write_reports(results, out, with_json=False)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ArtifactError(f"{p}: malformed audit result ({type(exc).__name__}: {exc}); run `recguard audit` with the same "
                            "--out again to rebuild it from its cells") from None
    return results
