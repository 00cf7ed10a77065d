"""Several finished audits of one dataset side by side: which API defense to serve.

One audit runs the ``extracted`` chain through one API defense (``extraction.defense``). To choose
between defenses, run one audit per defense and compare them: for each audit, the stolen model's
Agreement@10 and the genuine users' NDCG@10 cost of the defense, and for each attack row the lift
and how much of the baseline audit's lift it removes, paired by seed. The baseline is the audit
whose API is undefended (``none``), else the first one. ``recguard compare A B C --out DIR``
writes ``compare.json``, ``compare.md`` and ``compare.html`` (with a plot of agreement against cost).
"""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_text, read_json
from ..errors import ArtifactError, ConfigError
from .report import format_interval
from .results import mean_interval

__all__ = ["compare_audits", "comparison_table", "render_comparison", "write_comparison"]


def _load(folder: Path) -> dict:
    path = Path(folder) / "results.json"
    if not path.exists():
        raise ArtifactError(f"{path}: no audit results here; run `recguard audit --out {folder}` first")
    results = read_json(path, ArtifactError, what="audit results")
    if not isinstance(results, dict) or "spec" not in results or "cells" not in results:
        raise ArtifactError(f"{path}: not the results of a recguard audit")
    return results


def _label(results: dict, folder: Path) -> str:
    extraction = results.get("extraction") or {}
    return str(extraction.get("defense") or Path(folder).name)


def _lifts(results: dict, k: int) -> dict[tuple, dict[int, float]]:
    """Per (attack, budget, defense): the lift in T-HR@k of each seed."""
    out: dict[tuple, dict[int, float]] = {}
    for c in results["cells"]:
        if c.get("kind") == "poisoned" and f"lift_T-HR@{k}" in (c.get("derived") or {}):
            out.setdefault((c["attack"], c["budget"], c["defense"]), {})[int(c["seed"])] = float(c["derived"][f"lift_T-HR@{k}"])
    return out


def compare_audits(folders: list[str | Path]) -> dict:
    """Compare finished audits of one dataset and model (see the module). A folder without audit
    results is an :class:`ArtifactError`; audits of different datasets or models, a
    :class:`ConfigError`."""
    if len(folders) < 2:
        raise ConfigError(f"give at least two audit folders to compare, got {len(folders)}", param="folders")
    loaded = [(Path(f), _load(Path(f))) for f in folders]
    first = loaded[0][1]["spec"]
    for folder, results in loaded[1:]:
        spec = results["spec"]
        for key in ("dataset", "model"):
            if spec.get(key) != first.get(key):
                raise ConfigError(f"{folder}: audits {key} {spec.get(key)!r}, but {loaded[0][0]} audits {first.get(key)!r}; "
                                  "compare audits of one dataset and model", param="folders")
    k = max(first["ks"])
    labels = [_label(r, f) for f, r in loaded]
    labels = [lab if labels.count(lab) == 1 else f"{lab} ({f.name})" for lab, (f, _) in zip(labels, loaded)]
    base = next((i for i, (_, r) in enumerate(loaded) if (r.get("extraction") or {}).get("defense") == "none"), 0)
    base_lifts = _lifts(loaded[base][1], k)
    audits = []
    for label, (folder, results) in zip(labels, loaded):
        rows = []
        for key, by_seed in sorted(_lifts(results, k).items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            paired = sorted(set(by_seed) & set(base_lifts.get(key, {})))
            removed = [base_lifts[key][s] - by_seed[s] for s in paired]
            base_mean = sum(base_lifts[key][s] for s in paired) / len(paired) if paired else 0.0
            rows.append({"attack": key[0], "budget": key[1], "defense": key[2], "lift": mean_interval(list(by_seed.values())),
                         "removed": mean_interval(removed) if removed else None, "paired_seeds": len(paired),
                         "removed_share": (sum(removed) / len(removed)) / base_mean if removed and base_mean > 0 else None})
        audits.append({"folder": str(folder), "label": label, "seeds": results["spec"]["seeds"],
                       "extraction": results.get("extraction"), "rows": rows})
    return {"dataset": first["dataset"], "model": first["model"], "k": k, "baseline": labels[base], "audits": audits}


def comparison_table(cmp: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the comparison: one row per audit and attack row."""
    k = cmp["k"]
    headers = ["audit (API defense)", "Agreement@10 of the stolen model", "genuine users' NDCG@10 cost", "attack", "budget",
               "poisoning defense", f"lift T-HR@{k}", f"lift removed vs {cmp['baseline']}", "share removed"]
    rows = []
    for a in cmp["audits"]:
        e = a["extraction"] or {}
        for r in a["rows"] or [{}]:
            share = r.get("removed_share")
            rows.append([a["label"], format_interval(e.get("Agreement@10"), 3), format_interval(e.get("served_cost_NDCG@10"), pct=True),
                         str(r.get("attack", "–")), str(r.get("budget", "–")), str(r.get("defense", "–")),
                         format_interval(r.get("lift")), format_interval(r.get("removed")),
                         "–" if share is None else f"{100 * share:.0f}%"])
    return headers, rows


def _plot(cmp: dict) -> str | None:
    from .._reporting import COLORS, figure, png

    points = [(a["label"], a["extraction"]) for a in cmp["audits"] if a["extraction"]]
    if not points:
        return None
    fig, ax = figure(6, 4)
    for i, (label, e) in enumerate(points):
        cost = e.get("served_cost_NDCG@10") or {"mean": 0.0, "ci95": None}
        agree = e["Agreement@10"]
        yerr = 0 if agree.get("ci95") is None else (agree["ci95"][1] - agree["ci95"][0]) / 2
        ax.errorbar(-100 * cost["mean"], agree["mean"], yerr=yerr, fmt="o", capsize=3, color=COLORS[i % len(COLORS)], label=label)
    ax.set_xlabel("cost to genuine users: NDCG@10 lost (%)")
    ax.set_ylabel("stolen model's Agreement@10")
    ax.legend(fontsize=7)
    return png(fig)


def render_comparison(cmp: dict) -> tuple[str, str]:
    """(Markdown, HTML) of a comparison."""
    from .._reporting import Section, Table, render_page

    headers, rows = comparison_table(cmp)
    note = (f"Mean [95% CI] over seeds (Student t). Lift removed: the baseline audit's lift minus this audit's, paired by "
            f"seed (only seeds both audits ran); share removed: that mean over the baseline's mean lift on the same seeds. "
            f"Baseline: {cmp['baseline']}.")
    md = [f"# Audits compared: {cmp['model']} on {cmp['dataset']}", "", "| " + " | ".join(headers) + " |",
          "|" + "---|" * len(headers), *("| " + " | ".join(r) + " |" for r in rows), "", note, ""]
    sections = [Section("Defenses side by side", table=Table(headers, rows, left={0, 3, 5}), note=note)]
    image = _plot(cmp)
    if image:
        sections.append(Section("The stolen model's agreement against the cost to genuine users", images=[image]))
    folders = [[a["label"], a["folder"], ", ".join(str(s) for s in a["seeds"])] for a in cmp["audits"]]
    sections.append(Section("Audits", table=Table(["audit", "folder", "seeds"], folders, left={0, 1, 2})))
    html = render_page(f"Audits compared: {cmp['model']} on {cmp['dataset']}", subtitle=f"{len(cmp['audits'])} audits",
                       sections=sections)
    return "\n".join(md), html


def write_comparison(cmp: dict, out: str | Path) -> None:
    """``compare.json``, ``compare.md`` and ``compare.html`` in ``out`` (both reports rendered first)."""
    md, html = render_comparison(cmp)
    out = Path(out)
    atomic_write_json(out / "compare.json", cmp)
    atomic_write_text(out / "compare.md", md)
    atomic_write_text(out / "compare.html", html)
