"""Audit results: ``results.json`` (every number + provenance), ``report.md`` and a
self-contained ``report.html`` (plots embedded as PNG data URIs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_text, read_json
from ..errors import ArtifactError, ConfigError
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


def audit_warnings(poisoned: list[dict]) -> list[str]:
    """Lines the reports print above the tables: attacks whose targets no genuine training user reached."""
    cold: dict[str, set] = {}
    for c in poisoned:
        for t in (c.get("attack_meta") or {}).get("cold_targets", []):
            cold.setdefault(c["attack"], set()).add(int(t))
    return [f"{attack}: target item(s) {', '.join(map(str, sorted(items)))} have no interaction by any genuine training user; "
            "their T-HR counts every genuine test user, and the lift measures pushing items nobody has seen (an --inject "
            "file names items by recguard's internal ids 1..N: check that they mean the items you intended)"
            for attack, items in sorted(cold.items())]


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


def build_results(spec: AuditSpec, cells: list, provenance: dict, *, wall_time_s: float) -> dict:
    """The results dictionary (``results.json``) from the audit's :class:`CellResult` s."""
    from .cells import CellResult

    cells = [c.to_dict() if isinstance(c, CellResult) else c for c in cells]
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
    objectives = sorted({json.dumps(c["train"]["objective"], sort_keys=True) for c in clean
                         if isinstance(c.get("train"), dict) and c["train"].get("objective")})
    if objectives:
        clean_summary["objective"] = [json.loads(o) for o in objectives]
    if control_cells:
        clean_summary["controls"] = _control_summary(control_cells, spec.ks)
    return {
        "format": FORMAT, "format_version": 1, "spec": spec.to_dict(), "provenance": provenance,
        "clean": clean_summary, "summary": summary, "warnings": audit_warnings(poisoned),
        "cells": sorted(cells, key=lambda c: json.dumps(c.get("key", {}), sort_keys=True)),
        "wall_time_s": wall_time_s,
        "compute_time_s": float(sum(c.get("wall_time_s", 0.0) for c in cells)),
    }


# ---------------------------------------------------------------------------- rendering
def _fmt_ci(ms: dict | None, digits: int = 4, pct: bool = False, removal: bool = False) -> str:
    """``mean [lo, hi]`` with the 95% interval over seeds; a removal whose lift cannot be told from 0
    reads "not measurable" instead of a ratio of noise."""
    if not ms or ms.get("mean") is None:
        return "–"
    if ms.get("measurable") is False:
        return "not measurable"
    f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{x:.{digits}f}")
    text = f(ms["mean"]) + (f" [{f(ms['ci95'][0])}, {f(ms['ci95'][1])}]" if ms.get("ci95") else "")
    return f"helps the attacker: {text}" if removal and helps_attacker(ms) else text


def helps_attacker(removal: dict | None) -> bool:
    """A measurable removal whose 95% interval lies wholly below 0: the defense made the attack stronger."""
    return bool(removal and removal.get("measurable") is not False and removal.get("ci95")
                and removal["ci95"][1] is not None and removal["ci95"][1] < 0)


def _fmt(ms: dict | None, digits: int = 4, pct: bool = False) -> str:
    if not ms or ms.get("mean") is None:
        return "–"
    m, s = ms["mean"], ms["sd"]
    if pct:
        txt = f"{100 * m:+.1f}%"
        return txt + (f" ± {100 * s:.1f}" if ms["n"] > 1 else "")
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if ms["n"] > 1 else "")


def _share(ms: dict | None) -> str:
    """A share as an unsigned percentage, ``mean ± sd`` over seeds."""
    if not ms or ms.get("mean") is None:
        return "–"
    return f"{100 * ms['mean']:.1f}%" + (f" ± {100 * ms['sd']:.1f}" if ms.get("n", 1) > 1 else "")


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
            row.append(_fmt_ci(r.get(f"removal_T-HR@{k}"), pct=True, removal=True) if r["defense"] != "none" else "")
            det = r.get("detection") or {}
            row += [_fmt(det.get("recall"), 2), _share(det.get("FPR"))]
        if _controlled(results):
            row.append(_fmt_ci(r.get(f"net_removal_T-HR@{k}"), pct=True, removal=True) if r["defense"] != "none" else "")
        row += [_fmt(r[f"T-NDCG@{k}"]), _fmt(r["mean_rank"], 0), _fmt(r["NDCG@10"]), _fmt(r["clean_cost_NDCG@10"], pct=True),
                _fmt(r["wall_time_s"], 1)]
        rows.append(row)
    return rows


def _headers(results: dict) -> list[str]:
    k = max(results["spec"]["ks"])
    return (["attack", "budget", "defense", "fakes", f"clean T-HR@{k}", f"T-HR@{k}", "lift"]
            + (["removal", "recall", "genuine flagged"] if _defended(results) else [])
            + (["net removal"] if _controlled(results) else [])
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


def objective_text(clean: dict) -> str:
    """The clean victims' training objective(s) in words, e.g. ``sampled_ce, 256 uniform negatives
    shared per batch (auto: 12,101 items >= 8,000, the measured crossover)``."""
    parts = []
    for o in clean.get("objective") or []:
        text = str(o.get("loss"))
        if o.get("num_negatives"):
            shared = " shared per batch" if o.get("negatives_shared_per_batch") else ""
            text += f", {o['num_negatives']} {o.get('sampler', 'uniform')} negatives{shared}"
        if o.get("gbce_t") is not None:
            text += f", t = {o['gbce_t']}"
        parts.append(f"{text} ({o.get('chosen_by', 'config')})")
    return "; ".join(parts)


def render_markdown(results: dict) -> str:
    spec, prov, clean = results["spec"], results["provenance"], results["clean"]
    lines = [
        f"# recguard audit: {spec['model']} on {spec['dataset']}",
        "",
        f"Seeds {spec['seeds']}; targets: {spec['num_targets']} {spec['targets'] if isinstance(spec['targets'], str) else 'given'} items; "
        f"profiles: `{spec['order']}`; surrogate: `{spec['surrogate']}`.",
        f"Clean victim: NDCG@10 {_fmt(clean['NDCG@10'])}, HR@10 {_fmt(clean['HR@10'])} (full ranking, genuine users).",
        *([f"Training objective: {objective_text(clean)}."] if clean.get("objective") else []),
        *(f"> **Warning:** {w}" for w in results.get("warnings") or []),
        "",
        "| " + " | ".join(_headers(results)) + " |",
        "|" + "---|" * len(_headers(results)),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(results)]
    det = _detection_rows(results)
    if det:
        lines += ["", "## Detection of the injected users", "", "| " + " | ".join(_DET_HEADERS) + " |", "|" + "---|" * len(_DET_HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in det]
        lines += ["", "Precision/recall/F1 at each defense's own decision (LLM4Dec: its decision rule; LoRec: down-weighted "
                  "users; PCA: removed users); FPR over genuine users. Removal = 1 − (defended − clean) / (undefended − clean) in T-HR."]
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
        "includes 0 (the ratio would divide by noise), and \"helps the attacker\" when its interval lies wholly below 0.",
        "Recall and genuine flagged: the share of the injected users, and of the genuine users, that the defense's own",
        "decision flagged (removed or down-weighted). Clean cost = relative change of NDCG@10 against the clean victim.",
        "Fake users never count in any metric.",
        "",
        f"recguard {prov['recguard']}, torch {prov['torch']}, python {prov['python']}; "
        f"compute {results.get('compute_time_s', 0):.0f} s over all cells (this run: {results['wall_time_s']:.0f} s).",
        "",
    ]
    return "\n".join(lines)


def _plots(results: dict) -> list[tuple[str, str, str]]:
    from .._reporting import COLORS as colors
    from .._reporting import figure, png

    k = max(results["spec"]["ks"])
    summary = results["summary"]
    out = []
    if not summary:  # defense controls alone: their table says it all
        return out
    defenses = list(dict.fromkeys(r["defense"] for r in summary))
    attacks = list(dict.fromkeys(r["attack"] for r in summary))
    budgets = list(dict.fromkeys(r["budget"] for r in summary))
    # 1. T-HR@k by attack × budget (per defense) with error bars over seeds
    series = [(b, d) for d in defenses for b in budgets if any(r["budget"] == b and r["defense"] == d for r in summary)]
    fig, ax = figure(max(5.5, 1.3 * len(attacks) * max(1, len(series)) / 2 + 2), 3.4)
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
    out.append(("exposure", f"T-HR@{k} by attack and budget", png(fig)))
    # 2. clean-metric cost
    fig, ax = figure(max(5.5, 1.1 * len(attacks) + 2), 3.0)
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
    out.append(("cost", "Clean NDCG@10 change", png(fig)))
    # 3. defense comparison: T-HR@k per attack, one bar per defense (first budget), clean level dashed
    if len(defenses) > 1:
        b0 = budgets[0]
        fig, ax = figure(max(5.5, 1.6 * len(attacks) + 2), 3.4)
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
        out.append(("defenses", "Defense comparison", png(fig)))

    # 4. per-target bars (first budget, first defense, first seed: each seed draws its own targets)
    b0, d0 = budgets[0], defenses[0]
    seed0 = min((c["seed"] for c in results["cells"] if c["kind"] == "poisoned"), default=None)
    cells = [c for c in results["cells"] if c["kind"] == "poisoned" and c["budget"] == b0 and c["defense"] == d0
             and c["seed"] == seed0]
    if cells:
        fig, axes = figure(max(6, 2.6 * len(attacks)), 2.9, 1, len(attacks), sharey=True, squeeze=False)
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
        out.append(("targets", "Per-target exposure", png(fig)))
    return out


_ONE_SEED = (
    "One seed only: every number includes training noise (a retrained victim differs from the clean one even "
    "without fake users, by a few percent of NDCG@10 on small data). Run several seeds (--seeds 0,1,2) before "
    "drawing conclusions."
)

def render_html(results: dict) -> str:
    from .._reporting import Card, Section, Table, render_page

    spec, prov, clean = results["spec"], results["provenance"], results["clean"]
    k = max(spec["ks"])
    summary = results["summary"]
    worst = max(summary, key=lambda r: r[f"lift_T-HR@{k}"]["mean"] or -1, default=None)
    cards = [Card(_fmt(clean["NDCG@10"]), "clean NDCG@10"), Card(_fmt(clean[f"T-HR@{k}"]), f"clean T-HR@{k} of targets")]
    if worst is not None:
        cards.append(Card(_fmt(worst[f"T-HR@{k}"]), f"worst case: {worst['attack']} at {_budget(worst['budget'])} ({worst['defense']})"))
        cards.append(Card(_fmt(worst[f"lift_T-HR@{k}"]), f"largest lift in T-HR@{k}"))
    sections = [Section(
        "Summary", table=Table(_headers(results), _rows(results), highlight={i for i, r in enumerate(summary) if r is worst},
                               left={0, 2}),
        note=("Mean ± sd over seeds; lift and removal: mean [95% confidence interval] (Student t over seeds), and a removal "
              f"is 'not measurable' when the undefended lift's interval includes 0. T-HR@{k}: share of genuine users (who "
              f"never interacted with the target) whose top-{k} unseen items contain the target, averaged over targets. "
              "Lift = poisoned − clean. Clean cost = relative change of NDCG@10 (full ranking, genuine users). Fake users "
              "are never counted."),
        warn=" ".join([*(results.get("warnings") or []), *([_ONE_SEED] if len(spec["seeds"]) == 1 else [])]) or None)]
    det = _detection_rows(results)
    if det:
        sections.append(Section("Detection of the injected users", table=Table(list(_DET_HEADERS), det, left={0, 1}), note=(
            "ROC-/PR-AUC of each defense's suspicion score on the injected fake users; precision, recall and F1 at the "
            "defense's own decision (LLM4Dec: its decision rule; LoRec: users it down-weighted; PCA: users it removed); "
            "FPR over genuine users. Defenses learn only from an attack they simulate themselves (never from these labels).")))
    if _controlled(results):
        heads, ctrl = _control_rows(results)
        sections.append(Section("Defenses on clean data (controls)", table=Table(heads, ctrl), note=_CTRL_NOTE))
    sections += [Section(title, images=[uri]) for _, title, uri in _plots(results)]
    fps = sorted({c.get("data_fingerprint", "") for c in results["cells"] if c["kind"] == "clean"})
    execution = prov.get("execution") or {}
    rows = [("recguard", prov.get("recguard")), ("torch", prov.get("torch")), ("numpy", prov.get("numpy")),
            ("python", prov.get("python")), ("platform", prov.get("platform")), ("command", " ".join(prov.get("command", []))),
            ("backend", ", ".join(f"{a}={b}" for a, b in execution.items())),
            ("training objective", objective_text(clean) if clean.get("objective") else None),
            ("data fingerprint", ", ".join(f[:16] for f in fps)),
            ("compute time, all cells", f"{results.get('compute_time_s', 0):.0f} s"),
            ("this run's wall time", f"{results['wall_time_s']:.0f} s")]
    sections.append(Section("Provenance", table=Table([], [[a, str(b)] for a, b in rows if b], left={0, 1})))
    subtitle = (f"{len(spec['seeds'])} seed(s) · {spec['num_targets']} target items "
                f"({spec['targets'] if isinstance(spec['targets'], str) else 'given'}) · profiles {spec['order']} · "
                f"surrogate {spec['surrogate']}")
    return render_page(f"Robustness audit: {spec['model']} on {spec['dataset']}", subtitle=subtitle, cards=cards,
                       sections=sections)


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
    """Rebuild ``results.json``, ``report.md`` and ``report.html`` from the audit's cells
    (``OUT/spec.json`` + ``OUT/cells/``), or re-render the reports from ``OUT/results.json``
    when the cells are not there (a results file copied on its own)."""
    from .cells import CellResult
    from .runner import load_results

    out = Path(out)
    spec_file = out / "spec.json"
    p = out / "results.json"
    if spec_file.exists() and (out / "cells").is_dir():
        raw = read_json(spec_file, ArtifactError, what="audit spec")
        try:
            spec = AuditSpec.from_dict(raw, source=str(spec_file))
        except ConfigError as exc:
            raise ArtifactError(str(exc)) from None
        cells: list[CellResult] = load_results(spec, out)
        if not any(c.kind == "clean" for c in cells):
            raise ArtifactError(f"{out / 'cells'}: no finished cell of this audit; run `recguard audit --out {out}` first")
        old = {}
        if p.exists():
            prev = read_json(p, ArtifactError)
            old = prev if isinstance(prev, dict) and prev.get("format") == FORMAT else {}
        if "provenance" not in old:  # results.json lost: this machine's, marked as a rebuild
            from .compute import provenance

            old["provenance"] = {**provenance(["recguard", "report", str(out)], spec.model), "rebuilt_from_cells": True}
        results = build_results(spec, cells, old["provenance"], wall_time_s=float(old.get("wall_time_s", 0.0)))
        write_reports(results, out)
        return results
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
