"""The scorer ceiling: how much lift each detector's *ranking* can remove, apart from its decision (issue 24).

Usage:
    python benchmarks/scorer_ceiling.py --dataset amazon-office --seeds 0,1,2 --scorers pca,llm4dec --jobs 2 --threads 2
    python benchmarks/scorer_ceiling.py --dataset amazon-office --seeds 0,1,2 --scorers lorec-detect --shares 0.02

For each scorer and share x (0.5, 1, 2, 5% by default) it runs one resumable audit in which
the defense removes exactly the top x of users by that scorer's suspicion (the decision
layer's ``rule="top"``, ``max_flag_share=x``), on the same attacks, budgets and seeds as the
undefended cells it shares with every other run of the grid (copied, same keys). A removal
near 100% at small x says the scorer finds the fakes; a low removal at every x says it cannot,
and no threshold would help. Summary: benchmarks/results/ceiling_<dataset><tag>.json, and a
plot of removal against x per attack (benchmarks/results/ceiling_<dataset><tag>.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import HERE, RESULTS, parse_args, require_shared, write_result
from defenses import _seed_from


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--attacks", default="random,popular,segment,surrogate,camouflage")
    ap.add_argument("--budgets", default="0.01")
    ap.add_argument("--scorers", default="pca,llm4dec")
    ap.add_argument("--shares", default="0.005,0.01,0.02,0.05")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--tag", default="")
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from the recorded result, run nothing")
    args = parse_args(ap)
    name = f"ceiling_{args.dataset}{args.tag}"
    if args.plot_only:
        import json

        _plot(json.loads((RESULTS / f"{name}.json").read_text())["rows"], RESULTS / f"{name}.png")
        return
    from recguard.audit import AuditSpec, run_audit

    root = HERE.parent / "runs" / "bench"
    path = None if args.dataset == "ml-100k" else str(require_shared(args.dataset))
    rows = []
    for scorer in args.scorers.split(","):
        for share in [float(x) for x in args.shares.split(",")]:
            out = root / f"ceiling_{args.dataset}_{scorer}_{share:g}{args.tag}"
            for other in sorted(root.glob(f"*_{args.dataset}_*")):
                if other != out:
                    _seed_from(other, out)
            spec = AuditSpec(
                dataset=args.dataset, path=path, model="sasrec", model_config={"max_len": args.max_len, "patience": 3},
                attacks=tuple(a for a in args.attacks.split(",") if a), budgets=tuple(float(b) for b in args.budgets.split(",")),
                seeds=tuple(int(s) for s in args.seeds.split(",")), defenses=("none", scorer),
                defense_params={scorer: {"rule": "top", "max_flag_share": share}},
            )
            res = run_audit(spec, out, progress=True, jobs=args.jobs)
            for r in res["summary"]:
                if r["defense"] == "none":
                    continue
                det = r.get("detection") or {}
                rows.append({"scorer": scorer, "share": share, "attack": r["attack"], "budget": r["budget"],
                             "lift_T-HR@50": r["lift_T-HR@50"], "removal": r.get("removal_T-HR@50"),
                             "clean_cost_NDCG@10": r["clean_cost_NDCG@10"], "recall": det.get("recall"),
                             "genuine_flagged": det.get("FPR"), "ROC-AUC": det.get("ROC-AUC")})
    _plot(rows, RESULTS / f"{name}.png")
    write_result(name, {"rows": rows, "plot": f"{name}.png"})


def _plot(rows: list[dict], where: Path) -> None:
    from recguard._reporting import figure

    scorers = list(dict.fromkeys(r["scorer"] for r in rows))
    attacks = list(dict.fromkeys((r["attack"], r["budget"]) for r in rows))
    fig, axes = figure(4.2 * max(1, len(scorers)), 3.4, ncols=max(1, len(scorers)), squeeze=False)
    axes = axes[0]
    for ax, scorer in zip(axes, scorers):
        for attack, budget in attacks:
            pts = sorted((r["share"], r["removal"]["mean"], r["removal"].get("measurable") is not False) for r in rows
                         if r["scorer"] == scorer and r["attack"] == attack and r["budget"] == budget and r.get("removal")
                         and r["removal"].get("mean") is not None)
            if pts:  # hollow markers: the undefended lift's interval includes 0, so the ratio is noise
                line, = ax.plot([100 * x for x, _, _ in pts], [100 * y for _, y, _ in pts], label=f"{attack} {100 * budget:g}%")
                for x, y, ok in pts:
                    ax.plot([100 * x], [100 * y], marker="o", color=line.get_color(), markerfacecolor=line.get_color() if ok else "none")
        ax.axhline(70, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        shares = sorted({100 * r["share"] for r in rows})
        ax.set_xticks(shares, [f"{x:g}%" for x in shares])
        ax.minorticks_off()
        ax.set_xlabel("users removed by score (top x%)")
        ax.set_ylabel("removal of the T-HR@50 lift (%)")
        ax.set_title(f"{scorer} (hollow: lift not measurable)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(where, dpi=110)


if __name__ == "__main__":
    main()
