"""``recguard debias``: unbiased learning from MNAR clicks, evaluated on a MAR test set."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import ConfigError


def debias(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for results.json, report.md, report.html."),
    dataset: str = typer.Option("semi-synthetic", "--dataset", "-d",
                                help="coat, yahoo-r3 (local folders) or semi-synthetic (embedded ML-100k)."),
    path: Path | None = typer.Option(None, "--path", help="Local folder of Coat or Yahoo! R3."),
    loss: str = typer.Option("naive,relmf,clipped,ubpr", "--loss", help="Comma-separated: naive, relmf, clipped, ubpr."),
    seeds: str = typer.Option("0", "--seeds", "-s", help="Comma-separated seeds."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs (UBPR gets 10x: it visits clicks, not all cells)."),
    dim: int = typer.Option(64, "--dim", help="Latent factors."),
    clip: float = typer.Option(0.1, "--clip", help="Propensity floor M of the clipped estimator."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the results of an earlier `recguard debias` at --out."),
) -> None:
    """Train MF with naive / Rel-MF / clipped / UBPR losses on clicks; report DCG, Recall, MAP@{1,3,5} on MAR data."""
    import numpy as np

    from .._io import atomic_write_json, atomic_write_text
    from ..data.mar import load_mar
    from ..defenses.mnar import LOSSES, MFRecommender, mar_metrics

    losses = [x.strip() for x in loss.split(",") if x.strip()]
    bad = [x for x in losses if x not in LOSSES]
    if bad or not losses:
        raise ConfigError(f"unknown loss {bad[0] if bad else ''!r}; choose from {', '.join(LOSSES)}", param="--loss")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"could not parse {seeds!r} as comma-separated integers", param="--seeds") from None
    from .._io import claim_output_dir

    claim_output_dir(out, "debias", overwrite=overwrite)
    rows = []
    t0 = time.perf_counter()
    for seed in seed_list:
        data = load_mar(dataset, path, rng=seed)
        for name in losses:
            m = MFRecommender(loss=name, dim=dim, epochs=epochs * (10 if name == "ubpr" else 1), clip=clip).fit(data, rng=seed)
            rows.append({"seed": seed, "loss": name, **mar_metrics(m.scores(), data)})
            typer.echo(f"seed {seed} {name:8s} DCG@5 {rows[-1]['DCG@5']:.4f}  Recall@5 {rows[-1]['Recall@5']:.4f}", err=True)
    keys = [k for k in rows[0] if k not in ("seed", "loss")]
    summary = {}
    for name in losses:
        vals = {k: [r[k] for r in rows if r["loss"] == name and r[k] is not None] for k in keys}
        summary[name] = {k: {"mean": float(np.mean(v)) if v else None, "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
                         for k, v in vals.items()}
    results = {"dataset": dataset, "losses": losses, "seeds": seed_list, "epochs": epochs, "dim": dim, "clip": clip,
               "summary": summary, "rows": rows, "wall_time_s": time.perf_counter() - t0}
    atomic_write_json(out / "results.json", results)
    shown = ["DCG@1", "DCG@3", "DCG@5", "Recall@5", "MAP@5", "rare_DCG@5", "rare_Recall@5"]
    fmt = lambda s: "–" if s["mean"] is None else f"{s['mean']:.4f}" + (f" ± {s['sd']:.4f}" if s["n"] > 1 else "")  # noqa: E731
    md = [f"# MNAR debiasing on {dataset}", "", f"MF ({dim} factors), seeds {seed_list}; MAR test set; mean ± sd over seeds.", "",
          "| loss | " + " | ".join(shown) + " |", "|" + "---|" * (len(shown) + 1)]
    md += ["| " + name + " | " + " | ".join(fmt(summary[name][k]) for k in shown) + " |" for name in losses]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.html", _html(results, shown, fmt))
    typer.echo("\n".join(md[4:]))
    typer.echo(f"\nreport: {out / 'report.html'}")


def _html(results: dict, shown: list[str], fmt) -> str:
    from .._reporting import COLORS, Section, Table, figure, png, render_page

    s = results["summary"]
    fig, ax = figure(6, 3.2)
    names = results["losses"]
    means = [s[n]["DCG@5"]["mean"] or 0 for n in names]
    sds = [s[n]["DCG@5"]["sd"] or 0 for n in names]
    ax.bar(names, means, yerr=sds, capsize=4, color=[COLORS[i % 10] for i in range(len(names))])
    ax.set_ylabel("DCG@5 (MAR test)")
    ax.set_ylim(min(means) * 0.9 if means else 0, max(means) * 1.05 if means else 1)
    rows = [[n, *(fmt(s[n][k]) for k in shown)] for n in names]
    return render_page(
        f"MNAR debiasing on {results['dataset']}",
        subtitle=f"MF, {results['dim']} factors · seeds {results['seeds']} · clip {results['clip']}",
        sections=[Section("Metrics", table=Table(["loss", *shown], rows),
                          note="Metrics on the missing-at-random test set; rare = items at or below the median training "
                               "click count. Mean ± sd over seeds."),
                  Section("DCG@5", images=[png(fig)])])
