"""Audit results: aggregation of the cells into ``results.json`` (every number over the seeds,
with intervals, removals and warnings). Rendering lives in :mod:`recguard.audit.report`."""

from __future__ import annotations

import json

import numpy as np

from ..metrics import clean_cost
from .spec import AuditSpec

__all__ = ["build_results", "mean_interval", "measurable", "audit_warnings", "FORMAT", "DETECTION_METRICS"]

FORMAT = "recguard-audit"


def mean_interval(values: list[float]) -> dict:
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
        row[f"removal_{m}"] = mean_interval(vals)
        # a removal ratio divides by the attack's lift: with a lift that its interval cannot tell from 0 it is noise
        base_lift = mean_interval([b["derived"][f"lift_{m}"] for b in base.values()])
        row[f"removal_{m}"]["measurable"] = measurable(base_lift)
        if controls:
            row[f"control_{m}"] = mean_interval(ctrl)
            row[f"net_removal_{m}"] = {**mean_interval(net), "measurable": measurable(base_lift)}


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
            row[f"clean_T-HR@{k}"] = mean_interval([c["clean_target"][f"T-HR@{k}"] for c in cs])
            row[f"T-HR@{k}"] = mean_interval([c["metrics"]["target"][f"T-HR@{k}"] for c in cs])
            row[f"shift_T-HR@{k}"] = mean_interval([c["derived"][f"shift_T-HR@{k}"] for c in cs])
        row["NDCG@10"] = mean_interval([c["metrics"]["clean"]["NDCG@10"] for c in cs])
        row["clean_cost_NDCG@10"] = mean_interval([c["derived"]["clean_cost_NDCG@10"] for c in cs])
        row["flagged_share"] = mean_interval([c.get("flagged_share") for c in cs])
        row["wall_time_s"] = mean_interval([c["wall_time_s"] for c in cs])
        out[d] = row
    return out


def flagged_concepts(cells: list[dict], top: int = 5) -> list[dict]:
    """The concepts of the latents a detector named for its flagged users (``defense_info["latents"]``,
    the ``sae`` defense), over ``cells``: each concept with the number of cells that named it, most
    often first (latents without a concept count under their number)."""
    counts: dict[str, int] = {}
    for c in cells:
        seen = {e.get("concept") or f"latent {e['latent']} (no concept)" for e in (c.get("defense_info") or {}).get("latents") or []}
        for name in seen:
            counts[name] = counts.get(name, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"concept": name, "cells": n} for name, n in ranked]


def extraction_summary(cells: list[dict]) -> dict | None:
    """Over the ``extracted`` chain's extraction cells: the API defense the attacker met, the
    stolen models' Agreement@1/10 with the victim and NDCG@10, the queries spent, and (behind a
    defense) the genuine users' NDCG@10 with and without it and its relative cost."""
    infos = [c["extraction"] for c in cells if c.get("extraction")]
    if not infos:
        return None
    out = {"defense": (infos[0].get("served") or {}).get("defense", infos[0].get("defense", "none")), "seeds": len(infos),
           **{m: mean_interval([i["agreement"][m] for i in infos]) for m in ("Agreement@1", "Agreement@10")},
           "surrogate_NDCG@10": mean_interval([i.get("surrogate_NDCG@10") for i in infos]),
           "queries": mean_interval([i.get("queries") for i in infos])}
    served = [i["served"] for i in infos if i.get("served")]
    if served:
        out["served_NDCG@10"] = mean_interval([s["NDCG@10"] for s in served])
        out["undefended_NDCG@10"] = mean_interval([s["undefended_NDCG@10"] for s in served])
        out["served_cost_NDCG@10"] = mean_interval([clean_cost(s["undefended_NDCG@10"], s["NDCG@10"]) for s in served])
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
            row[f"clean_T-HR@{k}"] = mean_interval([c["clean_target"][f"T-HR@{k}"] for c in cs])
            row[f"T-HR@{k}"] = mean_interval([c["metrics"]["target"][f"T-HR@{k}"] for c in cs])
            row[f"T-NDCG@{k}"] = mean_interval([c["metrics"]["target"][f"T-NDCG@{k}"] for c in cs])
            row[f"lift_T-HR@{k}"] = mean_interval([c["derived"][f"lift_T-HR@{k}"] for c in cs])
        row["mean_rank"] = mean_interval([c["metrics"]["target"]["mean_rank"] for c in cs])
        row["clean_mean_rank"] = mean_interval([c["clean_target"]["mean_rank"] for c in cs])
        row["NDCG@10"] = mean_interval([c["metrics"]["clean"]["NDCG@10"] for c in cs])
        row["HR@10"] = mean_interval([c["metrics"]["clean"]["HR@10"] for c in cs])
        row["clean_cost_NDCG@10"] = mean_interval([c["derived"]["clean_cost_NDCG@10"] for c in cs])
        row["wall_time_s"] = mean_interval([c["wall_time_s"] for c in cs])
        row["defense_time_s"] = mean_interval([c.get("defense_time_s") for c in cs])
        traced = [c["forensics"] for c in cs if (c.get("forensics") or {}).get("traced_items")]
        if traced:
            row["forensics"] = {m: mean_interval([f.get(m) for f in traced])
                                for m in ("recall_top1pct", "precision_top1pct", "roc_auc", "seconds_per_item")}
            row["forensics"]["cells"] = len(traced)
        named = flagged_concepts(cs)
        if named:
            row["flagged_concepts"] = named
        dets = [c.get("detection") for c in cs if c.get("detection")]
        if dets:
            row["detection"] = {m: mean_interval([d.get(m) for d in dets]) for m in DETECTION_METRICS}
        summary.append(row)
    _add_removal(summary, groups, {(c["defense"], c["seed"]): c for c in control_cells}, k_hi)
    clean_summary = {
        "seeds": [c["seed"] for c in clean],
        "NDCG@10": mean_interval([c["metrics"]["clean"]["NDCG@10"] for c in clean]),
        "HR@10": mean_interval([c["metrics"]["clean"]["HR@10"] for c in clean]),
        f"T-HR@{k_hi}": mean_interval([c["metrics"]["target"][f"T-HR@{k_hi}"] for c in clean]),
        "wall_time_s": mean_interval([c["wall_time_s"] for c in clean]),
    }
    objectives = sorted({json.dumps(c["train"]["objective"], sort_keys=True) for c in clean
                         if isinstance(c.get("train"), dict) and c["train"].get("objective")})
    if objectives:
        clean_summary["objective"] = [json.loads(o) for o in objectives]
    if control_cells:
        clean_summary["controls"] = _control_summary(control_cells, spec.ks)
    stolen = extraction_summary([c for c in cells if c["kind"] == "extraction"])
    return {
        "format": FORMAT, "format_version": 1, "spec": spec.to_dict(), "provenance": provenance,
        "clean": clean_summary, "summary": summary, "warnings": audit_warnings(poisoned),
        **({"extraction": stolen} if stolen else {}),
        "cells": sorted(cells, key=lambda c: json.dumps(c.get("key", {}), sort_keys=True)),
        "wall_time_s": wall_time_s,
        "compute_time_s": float(sum(c.get("wall_time_s", 0.0) for c in cells)),
    }
