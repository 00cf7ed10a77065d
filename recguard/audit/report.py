"""Rendering audit results: ``report.md`` and a self-contained ``report.html`` (plots embedded
as PNG data URIs), and the summary table the CLI prints. The numbers come from
:mod:`recguard.audit.results`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from .results import DETECTION_METRICS, measurable

__all__ = ["write_reports", "render_markdown", "render_html", "summary_table", "format_interval", "helps_attacker",
           "objective_text", "measurable"]


def format_interval(ms: dict | None, digits: int = 4, pct: bool = False, removal: bool = False) -> str:
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
            _fmt(r[f"clean_T-HR@{k}"]), _fmt(r[f"T-HR@{k}"]), format_interval(r[f"lift_T-HR@{k}"]),
        ]
        if _defended(results):
            row.append(format_interval(r.get(f"removal_T-HR@{k}"), pct=True, removal=True) if r["defense"] != "none" else "")
            det = r.get("detection") or {}
            row += [_fmt(det.get("recall"), 2), _share(det.get("FPR"))]
        if _controlled(results):
            row.append(format_interval(r.get(f"net_removal_T-HR@{k}"), pct=True, removal=True) if r["defense"] != "none" else "")
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


_FORENSICS_HEADERS = ["attack", "budget", "recall in the top 1%", "precision in the top 1%", "ROC-AUC", "s per item", "cells"]
_FORENSICS_NOTE = ("Training-data influence (TracIn over the scoring head, across the checkpoints the undefended victim kept) "
                   "of every training user on the targets' scores for the users whose top-50 lists show them; recall and "
                   "precision of the injected users among the top 1% most influential training users. The labels are "
                   "read only after ranking.")


def _forensics_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["summary"]:
        f = r.get("forensics")
        if f:
            rows.append([r["attack"], _budget(r["budget"]), _fmt(f["recall_top1pct"], 2), _fmt(f["precision_top1pct"], 2),
                         _fmt(f["roc_auc"], 3), _fmt(f["seconds_per_item"], 1), str(f["cells"])])
    return rows


_CTRL_HEADERS = ["defense", "clean T-HR@{k}", "T-HR@{k} with defense", "shift", "NDCG@10", "clean cost", "users down-weighted",
                 "cell s"]
_CTRL_NOTE = ("Each defense trained on the clean data (no attack), same seeds and targets. Shift = its T-HR minus the clean "
              "victim's: what the defense alone does to the targets. Net removal = 1 − (defended − control) / (undefended − "
              "clean): the share of the attack's lift the defense cancels, not counting that shift.")


_CONCEPT_HEADERS = ["attack", "budget", "defense", "what the model saw in the flagged users (cells naming it)"]
_CONCEPT_NOTE = ("The latents of the victim's sparse autoencoder whose mean activation is highest among the users the defense "
                 "flagged, relative to the others, named by the probe's concept dictionary (docs/probes.md).")


def _concept_rows(results: dict) -> list[list[str]]:
    return [[r["attack"], _budget(r["budget"]), r["defense"], "; ".join(f"{e['concept']} ({e['cells']})" for e in r["flagged_concepts"])]
            for r in results["summary"] if r.get("flagged_concepts")]


_EXTRACTION_NOTE = ("The `extracted` chain's surrogate, stolen through the victim's top-k API as served under the defense "
                    "named (extraction option `defense`): its agreement with the victim on the test users' histories, and "
                    "what that API costs the genuine users shown the same lists (NDCG@10 against the undefended lists).")


def _extraction_rows(results: dict) -> list[list[str]]:
    e = results.get("extraction")
    if not e:
        return []
    rows = [["API defense", str(e["defense"])], ["Agreement@10 of the stolen model", _fmt(e["Agreement@10"], 3)],
            ["Agreement@1", _fmt(e["Agreement@1"], 3)], ["stolen model's NDCG@10", _fmt(e["surrogate_NDCG@10"])],
            ["queries", _fmt(e["queries"], 0)]]
    if e.get("served_NDCG@10"):
        rows += [["genuine users' NDCG@10, served / undefended", f"{_fmt(e['served_NDCG@10'])} / {_fmt(e['undefended_NDCG@10'])}"],
                 ["cost to genuine users", _fmt(e["served_cost_NDCG@10"], pct=True)]]
    return rows


def _control_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    k = max(results["spec"]["ks"])
    rows = [[d, _fmt(r[f"clean_T-HR@{k}"]), _fmt(r[f"T-HR@{k}"]), _fmt(r[f"shift_T-HR@{k}"]), _fmt(r["NDCG@10"]),
             _fmt(r["clean_cost_NDCG@10"], pct=True), _fmt(r["flagged_share"], pct=True), _fmt(r["wall_time_s"], 1)]
            for d, r in (results["clean"].get("controls") or {}).items()]
    return [h.format(k=k) for h in _CTRL_HEADERS], rows


def objective_text(clean: dict) -> str:
    """The clean victims' training objective(s) in words, e.g. ``sampled_ce, 256 uniform negatives
    shared per batch (auto: 12,101 items >= 8,000, the measured CPU crossover)``."""
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
    stolen = _extraction_rows(results)
    if stolen:
        lines += ["", "## The stolen model (black-box chain)", "", "| | |", "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in stolen] + ["", _EXTRACTION_NOTE]
    named = _concept_rows(results)
    if named:
        lines += ["", "## What the model saw in the flagged users", "", "| " + " | ".join(_CONCEPT_HEADERS) + " |",
                  "|" + "---|" * len(_CONCEPT_HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in named] + ["", _CONCEPT_NOTE]
    traced = _forensics_rows(results)
    if traced:
        lines += ["", "## Forensics: who pushed the targets", "", "| " + " | ".join(_FORENSICS_HEADERS) + " |",
                  "|" + "---|" * len(_FORENSICS_HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in traced] + ["", _FORENSICS_NOTE]
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


def _grouped_bars(ax, summary: list[dict], attacks: list, groups: list[tuple], value, labels: list[str], colors) -> None:
    """One bar per (attack, group), groups side by side within an attack; ``value(row)`` gives
    (mean, sd) or None to leave the bar out; a group is ``(budget, defense)``."""
    width = 0.8 / max(1, len(groups))
    for j, ((b, d), label) in enumerate(zip(groups, labels)):
        xs, ys, es = [], [], []
        for i, a in enumerate(attacks):
            r = next((r for r in summary if r["attack"] == a and r["budget"] == b and r["defense"] == d), None)
            v = None if r is None else value(r)
            if v is None:
                continue
            xs.append(i + (j - (len(groups) - 1) / 2) * width)
            ys.append(v[0])
            es.append(v[1])
        ax.bar(xs, ys, width, yerr=es, capsize=3, color=colors[j % 10], label=label)


def _exposure(k: int):
    return lambda r: (r[f"T-HR@{k}"]["mean"], r[f"T-HR@{k}"]["sd"] or 0.0)


def _cost(r: dict):
    c = r["clean_cost_NDCG@10"]
    return None if c["mean"] is None else (100 * c["mean"], 100 * (c["sd"] or 0.0))


def _plots(results: dict) -> list[tuple[str, str, str]]:
    """The report's figures: (key, title, PNG data URI)."""
    summary = results["summary"]
    if not summary:  # defense controls alone: their table says it all
        return []
    defenses = list(dict.fromkeys(r["defense"] for r in summary))
    attacks = list(dict.fromkeys(r["attack"] for r in summary))
    budgets = list(dict.fromkeys(r["budget"] for r in summary))
    series = [(b, d) for d in defenses for b in budgets if any(r["budget"] == b and r["defense"] == d for r in summary)]
    out = [_exposure_plot(results, attacks, series, defenses), _cost_plot(results, attacks, series, defenses)]
    if len(defenses) > 1:
        out.append(_defense_plot(results, attacks, defenses, budgets[0]))
    targets = _target_plot(results, attacks, budgets[0], defenses[0])
    return out + ([targets] if targets else [])


def _exposure_plot(results: dict, attacks: list, series: list, defenses: list) -> tuple[str, str, str]:
    """T-HR@k by attack × budget (per defense) with error bars over seeds."""
    from .._reporting import COLORS, figure, png

    k, summary = max(results["spec"]["ks"]), results["summary"]
    fig, ax = figure(max(5.5, 1.3 * len(attacks) * max(1, len(series)) / 2 + 2), 3.4)
    labels = [f"{_budget(b)} fakes" + (f", {d}" if len(defenses) > 1 else "") for b, d in series]
    _grouped_bars(ax, summary, attacks, series, _exposure(k), labels, COLORS)
    clean_vals = [r[f"clean_T-HR@{k}"]["mean"] for r in summary if r[f"clean_T-HR@{k}"]["mean"] is not None]
    if clean_vals:
        ax.axhline(float(np.mean(clean_vals)), color="black", linestyle="--", linewidth=1, label="clean model")
    ax.set_xticks(range(len(attacks)), attacks)
    ax.set_ylabel(f"T-HR@{k}")
    ax.set_title(f"Target exposure after poisoning (T-HR@{k}, higher = attack worked)")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return "exposure", f"T-HR@{k} by attack and budget", png(fig)


def _cost_plot(results: dict, attacks: list, series: list, defenses: list) -> tuple[str, str, str]:
    """The clean-metric cost (Δ NDCG@10 against the clean victim) by attack × budget."""
    from .._reporting import COLORS, figure, png

    fig, ax = figure(max(5.5, 1.1 * len(attacks) + 2), 3.0)
    labels = [f"{_budget(b)}" + (f", {d}" if len(defenses) > 1 else "") for b, d in series]
    _grouped_bars(ax, results["summary"], attacks, series, _cost, labels, COLORS)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(attacks)), attacks)
    ax.set_ylabel("Δ NDCG@10 vs clean (%)")
    ax.set_title("Cost to genuine users' recommendation quality")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return "cost", "Clean NDCG@10 change", png(fig)


def _defense_plot(results: dict, attacks: list, defenses: list, b0) -> tuple[str, str, str]:
    """T-HR@k per attack, one bar per defense (first budget), the clean level dashed."""
    from .._reporting import COLORS, figure, png

    k = max(results["spec"]["ks"])
    fig, ax = figure(max(5.5, 1.6 * len(attacks) + 2), 3.4)
    _grouped_bars(ax, results["summary"], attacks, [(b0, d) for d in defenses], _exposure(k), list(defenses), COLORS)
    clean_level = results["clean"].get(f"T-HR@{k}", {}).get("mean")
    if clean_level is not None:
        ax.axhline(clean_level, color="#444", ls="--", lw=1, label="clean victim")
    ax.set_xticks(range(len(attacks)))
    ax.set_xticklabels(attacks)
    ax.set_ylabel(f"T-HR@{k}")
    ax.set_title(f"Defenses against each attack ({_budget(b0)} fakes)", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return "defenses", "Defense comparison", png(fig)


def _target_plot(results: dict, attacks: list, b0, d0) -> tuple[str, str, str] | None:
    """Per-target bars (first budget, first defense, first seed: each seed draws its own targets)."""
    from .._reporting import COLORS, figure, png

    k = max(results["spec"]["ks"])
    seed0 = min((c["seed"] for c in results["cells"] if c["kind"] == "poisoned"), default=None)
    cells = [c for c in results["cells"] if c["kind"] == "poisoned" and c["budget"] == b0 and c["defense"] == d0
             and c["seed"] == seed0]
    if not cells:
        return None
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
        ax.bar(x + 0.2, pois, 0.4, color=COLORS[0], label="poisoned")
        ax.set_xticks(x, tlist, rotation=45, fontsize=8)
        ax.set_title(a, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"T-HR@{k}")
    axes[0][0].legend(fontsize=8, frameon=False)
    fig.suptitle(f"Per target item ({_budget(b0)} fakes, defense {d0}, seed {seed0})", fontsize=11)
    fig.tight_layout()
    return "targets", "Per-target exposure", png(fig)


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
    stolen = _extraction_rows(results)
    if stolen:
        sections.append(Section("The stolen model (black-box chain)", table=Table([], stolen, left={0, 1}), note=_EXTRACTION_NOTE))
    named = _concept_rows(results)
    if named:
        sections.append(Section("What the model saw in the flagged users", table=Table(_CONCEPT_HEADERS, named, left={0, 1, 2, 3}),
                                note=_CONCEPT_NOTE))
    traced = _forensics_rows(results)
    if traced:
        sections.append(Section("Forensics: who pushed the targets", table=Table(list(_FORENSICS_HEADERS), traced, left={0, 1}),
                                note=_FORENSICS_NOTE))
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


def summary_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the audit's main table, as the reports and the CLI show it."""
    return _headers(results), _rows(results)
