"""API-side defenses against model extraction: how much agreement each removes, at what cost (issue 28).

Usage:
    python benchmarks/extraction_defenses.py --dataset amazon-office --seeds 0,1,2
    python benchmarks/extraction_defenses.py --dataset amazon-office --seeds 0 --cost-only   # served cost of each defense
    python benchmarks/extraction_defenses.py --defenses "none;truncate:20;sample:0.5,head=10"
    python benchmarks/extraction_defenses.py --dataset ml-1m --seeds 0,1,2 --modes data-free,few-shot
    python benchmarks/extraction_defenses.py --defenses none --victims ";gro_lambda=1" --tag _gro   # GRO-trained victims

For every seed: train SASRec (max_len 50, patience 3) on the dataset once (kept in
runs/bench/extraction_defenses_<dataset>/victim_seed<seed>). For every (mode, defense): serve
the victim's lists through the defense (:class:`recguard.defenses.serving.ServedVictim`),
steal it through a :class:`~recguard.victims.BlackBoxVictim` (``--num-sequences`` generated
sequences of the victim's max_len, top-``--k`` lists; few-shot holds 10% of the training
users), distil SASRec for ``--epochs`` epochs, and record the stolen model's Agreement@1/10
with the victim on the test users' histories, its NDCG@10, and the genuine users' NDCG@10 of
the served lists with and without the defense (the defense's cost). The defense ``guard`` fits a
:class:`~recguard.defenses.QueryStreamDetector` on the training users (1% budget) and answers the
queries of the accounts it flags with random items (``POLICY+guard`` combines it with a list
policy); the queries so answered are counted. ``--victims`` adds victims trained with other
settings (``;``-separated, each ``KEY=VALUE[,KEY=VALUE]``, the empty one the plain victim), e.g. a
training-time defense (``gro_lambda=1``, :mod:`recguard.victims._gro`): each is stolen through each
API defense, its cost measured against the plain victim of the same seed, and its agreement
against the plain victim's undefended clone. Each finished cell is
kept in the run folder so an interrupted run resumes; the summary (agreement relative to the
undefended API of the same seed and mode, cost) goes to
benchmarks/results/extraction_defenses_<dataset>.json, with a plot of agreement against cost
beside it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import HERE, RESULTS, data_path, kept_cells, parse_args, parse_setting, write_result

DEFAULT_DEFENSES = "none;truncate:10;shuffle:10,head=10;sample:1,head=10;guard;unordered:100,head=10;shuffle:10"


def _training(text: str) -> dict:
    """``"gro_lambda=1,gro_k=50"`` → the victim settings it names ({} for the plain victim)."""
    return dict(parse_setting(part) for part in text.split(",") if part)


def _victim(split, seed: int, args, training: str = ""):
    """The SASRec victim of ``seed`` (max_len, patience 3), with the extra ``training`` settings, kept
    in the run folder (``victim_seed<seed>``, or ``victim_<settings>_seed<seed>``)."""
    import recguard

    name = f"victim_{_file_part(training)}_seed{seed}" if training else f"victim_seed{seed}"
    where = HERE.parent / "runs" / "bench" / f"extraction_defenses_{args.dataset}" / name
    if (where / "weights.safetensors").exists():
        return recguard.load(where)
    victim = recguard.SASRec(max_len=args.max_len, patience=3, **_training(training)).fit(split, rng=seed)
    victim.save(where, overwrite=True)
    return victim


def _cell(split, token: str, seed: int, args) -> dict:
    from recguard.attacks.extraction import agreement, extract
    from recguard.defenses.serving import serve, served_quality
    from recguard.metrics import evaluate
    from recguard.victims import BlackBoxVictim

    mode, defense, training = (token.split("/") + [""])[:3]
    victim = _victim(split, seed, args, training)
    served = serve(victim, defense, split.train, seed=seed)  # "guard" / "POLICY+guard": the query-stream detector too
    rng = np.random.default_rng([seed, 4242])
    real = None
    if mode == "few-shot":
        users = rng.choice(split.train.num_users, size=max(1, int(round(0.1 * split.train.num_users))), replace=False)
        real = [split.train[u].tolist() for u in users]
    t0 = time.perf_counter()
    bb = BlackBoxVictim(served, k=min(args.k, served.max_list))
    res = extract(bb, mode=mode, num_sequences=args.num_sequences, real_sequences=real, epochs=args.epochs,
                  surrogate_config={"patience": 3}, rng=rng, progress=False)
    x, _ = split.inputs("test", victim.max_len)
    plain = _victim(split, seed, args) if training else victim
    return {"mode": mode, "defense": defense, "training": training, "seed": seed, "k": bb.k, "queries": res.queries,
            "queries_answered_at_random": served.guard_flags,
            "agreement": agreement(victim, res.surrogate, x),
            "stolen_NDCG@10": evaluate(res.surrogate, split, which="test", ks=(10,))["NDCG@10"],
            "served_NDCG@10": served_quality(served, split)["NDCG@10"], "undefended_NDCG@10": served_quality(plain, split)["NDCG@10"],
            "seconds": time.perf_counter() - t0}


def _label(cell: dict) -> str:
    """A cell's defense as the tables name it: the API defense, and the victim's training settings if any."""
    return cell["defense"] + (f" [trained {cell['training']}]" if cell.get("training") else "")


def _file_part(token: str) -> str:
    """``"data-free/shuffle:10,head=10"`` as a file-name part: ``data-free_shuffle-10_head10``; a
    defense with the guard also names the detector's revision (``_det2``) from revision 2 on."""
    from recguard.defenses.querystream import DETECTOR_REVISION

    part = token.replace("/", "_").replace(":", "-").replace(",", "_").replace("=", "")
    return part + (f"_det{DETECTOR_REVISION}" if "guard" in token and DETECTOR_REVISION > 1 else "")


def _costs(split, seeds: str, defenses: list[str], args) -> dict:
    """The served NDCG@10 of each defense against the undefended lists, per seed (no extraction)."""
    from recguard.defenses.serving import ServedVictim, ServingPolicy, served_quality

    out: dict = {}
    for seed in [int(s) for s in seeds.split(",")]:
        victim = _victim(split, seed, args)
        plain = served_quality(victim, split)["NDCG@10"]
        for d in defenses:
            shown = served_quality(ServedVictim(victim, ServingPolicy.parse(d, seed=seed)), split)["NDCG@10"]
            out.setdefault(d, []).append((shown - plain) / plain)
            print(f"seed {seed} {d:14s} served NDCG@10 {shown:.4f} against {plain:.4f} ({100 * (shown - plain) / plain:+.1f}%)",
                  flush=True)
    return out


def _plot(summary: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, marker in (("data-free", "o"), ("few-shot", "s")):
        rows = [(d, r) for (m, d), r in summary.items() if m == mode]
        for d, r in rows:
            ci = r["agreement@10"]["ci95"]
            ax.errorbar(-100 * r["cost"]["mean"], r["agreement@10"]["mean"], yerr=0 if ci is None else (ci[1] - ci[0]) / 2,
                        fmt=marker, capsize=3, label=f"{mode} {d}")
    ax.set_xlabel("cost to genuine users: NDCG@10 lost (%)")
    ax.set_ylabel("stolen model's Agreement@10")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="amazon-office", choices=["amazon-office", "amazon-beauty", "ml-1m", "ml-100k"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--modes", default="data-free")
    ap.add_argument("--defenses", default=DEFAULT_DEFENSES, help="API defenses separated by ';' (recguard.defenses.serving)")
    ap.add_argument("--num-sequences", type=int, default=2000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--victims", default="", help="';'-separated victim settings, the empty one the plain victim, "
                    "e.g. ';gro_lambda=1'")
    ap.add_argument("--tag", default="", help="suffix of the result files (a run over fewer defenses keeps the full table)")
    ap.add_argument("--cost-only", action="store_true", help="only the served cost of each defense (no extraction)")
    args = parse_args(ap)
    import recguard
    from recguard.audit.results import mean_interval

    split = recguard.data.load(args.dataset, path=data_path(args.dataset)).split()
    defenses = [d for d in args.defenses.split(";") if d]
    if args.cost_only:
        costs = _costs(split, args.seeds, defenses, args)
        write_result(f"extraction_defense_costs_{args.dataset}", {"cost": {d: mean_interval(v) for d, v in costs.items()},
                                                                  "settings": vars(args)})
        return
    trainings = args.victims.split(";") if args.victims else [""]
    tokens = [f"{m}/{d}" + (f"/{t}" if t else "") for m in args.modes.split(",") if m for d in defenses for t in trainings]
    cells = kept_cells(HERE.parent / "runs" / "bench" / f"extraction_defenses_{args.dataset}", args.seeds, tokens,
                       lambda token, seed: f"{_file_part(token)}_n{args.num_sequences}_e{args.epochs}_seed{seed}.json",
                       lambda token, seed: _cell(split, token, seed, args),
                       lambda c: (f"{c['mode']:9s} {c['defense']:14s} seed {c['seed']}: Agreement@10 {c['agreement']['Agreement@10']:.3f} "
                                  f"served NDCG@10 {c['served_NDCG@10']:.4f} / {c['undefended_NDCG@10']:.4f} ({c['seconds']:.0f} s)"))
    undefended = {(c["mode"], c["seed"]): c["agreement"]["Agreement@10"] for c in cells
                  if c["defense"] == "none" and not c.get("training")}
    summary = {}
    for mode, defense in sorted({(c["mode"], _label(c)) for c in cells}):
        rows = [c for c in cells if c["mode"] == mode and _label(c) == defense]
        summary[(mode, defense)] = {
            "agreement@10": mean_interval([c["agreement"]["Agreement@10"] for c in rows]),
            "agreement@1": mean_interval([c["agreement"]["Agreement@1"] for c in rows]),
            "agreement_left": mean_interval([c["agreement"]["Agreement@10"] / undefended[(mode, c["seed"])] for c in rows
                                             if (mode, c["seed"]) in undefended]),
            "cost": mean_interval([(c["served_NDCG@10"] - c["undefended_NDCG@10"]) / c["undefended_NDCG@10"] for c in rows]),
            "stolen_NDCG@10": mean_interval([c["stolen_NDCG@10"] for c in rows]),
            "queries": mean_interval([c["queries"] for c in rows]), "seeds": len(rows)}
    _plot(summary, RESULTS / f"extraction_defenses_{args.dataset}{args.tag}.png")
    by_name = {f"{m}/{d}": r for (m, d), r in summary.items()}
    write_result(f"extraction_defenses_{args.dataset}{args.tag}", {"cells": cells, "summary": by_name, "settings": vars(args)})


if __name__ == "__main__":
    main()
