"""Does the sampled default learn on a catalogue where full CE is out of reach on this CPU? (issue 29)

A synthetic catalogue of ``--items`` items (default 100,000) with a known next-item law: every item
has 3 successors (drawn once, probabilities 0.5 / 0.3 / 0.2); a user's next item is one of its last
item's successors with probability ``--follow`` (0.8), otherwise a draw from a Zipf(1.1)
popularity law over the whole catalogue. Histories start from the popularity law and their
lengths follow Amazon Beauty's (``catalogue_scale.beauty_lengths``).

SASRec (max length 50, the library defaults) trains with ``loss="auto"`` (the sampled default on a
CPU at this size) to early stopping. Recorded: test HR@10 / NDCG@10 (full ranking, seen items
filtered, leave-one-out), against the same metrics of the **oracle** (ranking every item by the
true next-item probability given the last item, seen items filtered) and of popularity; the
training time and positions per second; and what one epoch of full CE would take at the rate
``catalogue_scale.train_rate`` measures for it on this machine (a few steps only).

Usage:
    python benchmarks/synthetic_catalogue.py [--items 100000] [--users 20000] [--threads 2]
    python benchmarks/synthetic_catalogue.py --set sampled_correction=negatives --tag _neg --skip-ce-rate

Writes benchmarks/results/synthetic_catalogue_<items><tag>.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import parse_args, parse_setting, positions_per_epoch, write_result


def generate(num_items: int, num_users: int, follow: float, seed: int):
    """``(SequenceData, successors [N+1, 3], successor probabilities [3], popularity [N+1])`` of the law above."""
    from catalogue_scale import beauty_lengths
    from recguard.data import SequenceData

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    pop = np.zeros(num_items + 1)
    pop[1:] = ranks**-1.1
    pop /= pop.sum()
    succ = rng.integers(1, num_items + 1, size=(num_items + 1, 3))
    succ_p = np.array([0.5, 0.3, 0.2])
    lengths = np.maximum(beauty_lengths(rng, num_users).astype(np.int64), 5)
    total = int(lengths.sum())
    items = np.empty(total, dtype=np.int64)
    random_draws = rng.choice(num_items + 1, size=total, p=pop)
    pick = rng.choice(3, size=total, p=succ_p)
    follows = rng.random(total) < follow
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    is_start = np.zeros(total, dtype=bool)
    is_start[starts] = True
    for t in range(total):  # a plain loop: each item depends on the one before
        if is_start[t] or not follows[t]:
            items[t] = random_draws[t]
        else:
            items[t] = succ[items[t - 1], pick[t]]
    data = SequenceData(items=items, offsets=np.concatenate([[0], np.cumsum(lengths)]), num_items=num_items)
    return data, succ, succ_p, pop


def oracle_metrics(split, succ, succ_p, pop, follow: float, which: str = "test") -> dict:
    """HR@10 / NDCG@10 of ranking every item by the true next-item law (seen items filtered), and of popularity."""
    x, y = split.inputs(which, 200)
    out = {}
    for name in ("oracle", "popularity"):
        ranks = np.empty(len(y), dtype=np.int64)
        for start in range(0, len(y), 512):
            rows = slice(start, start + 512)
            xb, yb = x[rows], y[rows]
            scores = np.tile((1 - follow) * pop if name == "oracle" else pop, (len(yb), 1))
            if name == "oracle":
                last = xb[:, -1]
                np.add.at(scores, (np.repeat(np.arange(len(yb)), 3), succ[last].ravel()), np.tile(follow * succ_p, len(yb)))
            scores[:, 0] = -np.inf
            seen = xb > 0
            scores[np.repeat(np.arange(len(yb)), seen.sum(1)), xb[seen]] = -np.inf
            target = scores[np.arange(len(yb)), yb]
            ranks[rows] = (scores > target[:, None]).sum(1)
        hit = ranks < 10
        out[name] = {"HR@10": float(hit.mean()), "NDCG@10": float(np.where(hit, 1 / np.log2(ranks + 2), 0).mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--follow", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a victim setting, e.g. --set sampled_correction=negatives")
    ap.add_argument("--skip-ce-rate", action="store_true", help="do not time full CE's step (its estimate is left out)")
    ap.add_argument("--tag", default="")
    args = parse_args(ap)
    import recguard
    from catalogue_scale import train_rate

    data, succ, succ_p, pop = generate(args.items, args.users, args.follow, args.seed)
    split = data.split()
    reference = oracle_metrics(split, succ, succ_p, pop, args.follow)
    settings = dict(parse_setting(text) for text in args.settings)
    victim = recguard.SASRec(max_len=50, eval_every=1, **settings)
    deadline = time.perf_counter() + 60 * args.max_minutes
    t0 = time.perf_counter()
    victim.fit(split, rng=args.seed, progress=True, on_epoch_end=lambda e, v: time.perf_counter() > deadline)
    wall = time.perf_counter() - t0
    test = recguard.evaluate(victim, split, which="test", ks=(10,))
    info = victim.fit_info_
    per_epoch = positions_per_epoch(split, victim.max_len)
    ce_rate = None if args.skip_ce_rate else train_rate(args.items, "ce", 3)["positions_per_s"]
    write_result(f"synthetic_catalogue_{args.items}{args.tag}", {
        "settings": settings, "seed": args.seed,
        "items": args.items, "users": args.users, "interactions": int(data.num_interactions), "follow": args.follow,
        "objective": info["objective"], "test": {"HR@10": test["HR@10"], "NDCG@10": test["NDCG@10"]},
        "oracle": reference["oracle"], "popularity": reference["popularity"],
        "share_of_oracle_ndcg": test["NDCG@10"] / reference["oracle"]["NDCG@10"],
        "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"], "wall_s": wall, "train_s": info["train_time_s"],
        "positions_per_epoch": per_epoch, "positions_per_s": per_epoch * info["epochs_run"] / info["train_time_s"],
        "stopped_by_time_limit": wall > 60 * args.max_minutes,
        "full_ce_positions_per_s": ce_rate, "full_ce_seconds_per_epoch_estimate": None if ce_rate is None else per_epoch / ce_rate})


if __name__ == "__main__":
    main()
