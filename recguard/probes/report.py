"""JSON + HTML report of an :class:`~recguard.probes.SAEProbe` (``recguard probe``)."""

from __future__ import annotations

from pathlib import Path

from .._io import atomic_write_json, atomic_write_text

__all__ = ["probe_report", "render_probe_html", "write_probe_report"]


def probe_report(probe, *, ablations: list[dict] | None = None, provenance: dict | None = None, table_size: int = 60) -> dict:
    """Everything the report shows, as one JSON-able dict."""
    entries = probe.concepts()
    by_latent = {a["latent"]: a for a in (ablations or [])}
    ranked = sorted((e for e in entries if e.get("confidence") is not None),
                    key=lambda e: (-e["confidence"], -(e.get("auc") or 0), e["latent"]))
    return {
        "fidelity": probe.fidelity(),
        "dictionary": probe.dictionary_summary(),
        "latents": entries,
        "table": [e["latent"] for e in ranked[:table_size]],
        "ablations": ablations or [],
        "ablation_by_latent": {str(k): v for k, v in by_latent.items()},
        "settings": {"layer": probe.layer, **probe.config.to_dict(), "prefixes": probe.prefixes, "holdout": probe.holdout,
                     "context_items": probe.context_items, "top_n": probe.top_n},
        "provenance": provenance or {},
    }


def _f(x, digits=3, pct=False):
    if x is None:
        return "–"
    return f"{100 * x:.1f}%" if pct else f"{x:.{digits}f}"


def _items(rows) -> str:
    return "; ".join(f"{r.get('title') or ('item ' + str(r['item']))} ×{r['count']}" for r in rows[:3])


def _plots(report: dict) -> list[tuple[str, str]]:
    import numpy as np

    from .._reporting import figure, png

    out = []
    scored = [e for e in report["latents"] if e.get("confidence") is not None]
    if scored:
        fig, axes = figure(10, 3.4, 1, 2)
        conf = np.array([e["confidence"] for e in scored])
        axes[0].hist(conf, bins=np.linspace(0, 1, 11), color="#4c78a8", edgecolor="white")
        axes[0].axvline(0.8, color="#e45756", ls="--", lw=1)
        axes[0].set_xlabel("held-out confidence (hits / 10)")
        axes[0].set_ylabel("latents")
        axes[0].set_title("Concept validation")
        rate = np.array([max(e["firing_rate"], 1e-5) for e in scored])
        auc = np.array([e["auc"] if e.get("auc") is not None else np.nan for e in scored])
        sc = axes[1].scatter(rate, auc, c=conf, cmap="viridis", s=10, vmin=0, vmax=1)
        axes[1].set_xscale("log")
        axes[1].axhline(0.5, color="#999", lw=0.8)
        axes[1].set_xlabel("firing rate (probe sequences)")
        axes[1].set_ylabel("AUC, concept present vs activation")
        axes[1].set_title("Latents")
        fig.colorbar(sc, ax=axes[1], label="confidence")
        fig.tight_layout()
        out.append(("Concept validation and firing rates", png(fig)))
    abl = [a for a in report["ablations"] if a.get("delta_concept_share@10") is not None]
    if abl:
        fig, ax = figure(10, 0.35 * len(abl) + 1.2)
        labels = [f"#{a['latent']} {a['concept']}" for a in abl]
        ax.barh(range(len(abl)), [100 * a["delta_concept_share@10"] for a in abl], color="#f58518")
        ax.set_yticks(range(len(abl)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("change of the concept's share of top-10 items when the latent is ablated (points)")
        ax.axvline(0, color="#333", lw=0.8)
        fig.tight_layout()
        out.append(("Ablating a latent removes its concept from the recommendations", png(fig)))
    return out


_LEGEND = ("Confidence: on held-out users' sequences, the concept must be present on the latent's 5 top-activating "
           "sequences and absent on 5 random non-firing ones (hits/10; interpretable at ≥ 0.8). AUC: activation as a score "
           "for “concept present” over all held-out sequences. τ: share of the context items (last history items + top-10 "
           "recommendations) that must carry the concept. Ablation: latent set to 0, SAE error added back, test users "
           "on whom it fires re-scored.")


def render_probe_html(report: dict) -> str:
    from .._reporting import Card, Section, Table, render_page

    fid, dic = report["fidelity"], report["dictionary"]
    prov = report.get("provenance", {})
    cards = [Card(_f(fid["ndcg_recovered"]), "NDCG@10 recovered"), Card(_f(fid["fvu"]), "FVU (test, last position)"),
             Card(f"{fid['l0']:.1f}", "L0"), Card(_f(fid["dead_fraction"], pct=True), "dead latents (training)"),
             Card(f"{dic['interpretable']} / {dic['latents']}", "latents with confidence ≥ 0.8"),
             Card(_f(dic["mean_auc"]), "mean AUC")]
    fidelity = [[label, _f(fid.get(key), 4)] for key, label in [
        ("ndcg_clean", "NDCG@10, victim"), ("ndcg_sae", "NDCG@10, SAE reconstruction spliced in"),
        ("ndcg_mean_ablated", "NDCG@10, mean state (ablation baseline)"), ("ndcg_recovered", "NDCG recovered"),
        ("fvu", "fraction of variance unexplained"), ("silent_at_probe_fraction", "latents silent at the probed position")]]
    heads = ["latent", "description", "τ", "conf.", "AUC", "firing", "top items (last history)", "top recommended",
             "ablation ΔNDCG@10", "Δ concept share", "Jaccard@10"]
    entries = {e["latent"]: e for e in report["latents"]}
    rows, hi = [], set()
    for i, j in enumerate(report["table"]):
        e, a = entries[j], report["ablation_by_latent"].get(str(j), {})
        if e.get("interpretable"):
            hi.add(i)
        rows.append([f"#{j}", e.get("description") or "", _f(e.get("threshold"), 2), _f(e.get("confidence"), 1), _f(e.get("auc")),
                     _f(e["firing_rate"], pct=True), _items(e.get("top_items", [])), _items(e.get("top_recommended", [])),
                     _f(a.get("delta_ndcg@10"), 4), _f(a.get("delta_concept_share@10"), pct=True) if a else "–",
                     _f(a.get("jaccard@10"))])
    summary = (f"{dic['interpretable']} of {dic['latents']} latents ({_f(dic['interpretable_share'], pct=True)}; "
               f"{_f(dic['interpretable_share_of_alive'], pct=True)} of the {dic['alive']} that fire at the probed position) "
               f"are interpretable; mean confidence {_f(dic['mean_confidence'])}. By kind: "
               + ", ".join(f"{k} {v}" for k, v in dic["by_kind"].items()) + ".")
    sections = [Section("Fidelity", table=Table([], fidelity)),
                Section("Concept dictionary", text=[summary], table=Table(heads, rows, highlight=hi, left={1, 6, 7}), note=_LEGEND)]
    sections += [Section(t, images=[uri]) for t, uri in _plots(report)]
    if prov:
        sections.append(Section("Provenance", table=Table([], [[str(k), str(v)] for k, v in prov.items()], left={0, 1})))
    subtitle = (f"layer {fid['layer']} · {fid['width']} latents (TopK k={fid['k']}, d={fid['d_in']}) · trained on "
                f"{fid['train_rows']:,} positions in {_f(fid.get('train_time_s'), 1)} s · dataset {prov.get('dataset', '')}")
    return render_page(f"SAE probe: {prov.get('victim', 'victim')}", subtitle=subtitle, cards=cards, sections=sections)


def write_probe_report(report: dict, out: str | Path) -> None:
    """``OUT/report.json`` + ``OUT/report.html``; ``out`` must be new, empty or a probe-report folder."""
    from .._io import claim_output_dir

    out = claim_output_dir(out, "probe-report", resumable=True)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.html", render_probe_html(report))
