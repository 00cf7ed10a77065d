"""Robustness assertions for users' own test suites.

Each assertion measures something, raises ``AssertionError`` with the measured figure,
the threshold, the attack and the seeds when the requirement fails, and returns the
measurement (a dict) when it holds. With ``report=DIR`` it also writes the check's JSON
and HTML report there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np

from ..data import SequenceData, Split, as_split
from ..errors import ConfigError

__all__ = ["assert_robust", "assert_extraction_resistant", "assert_clean_quality", "RobustnessError"]


class RobustnessError(AssertionError):
    """A robustness requirement did not hold; ``.result`` holds the measurement."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ConfigError(f"must be >= 1, got {seeds}", param="seeds")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out:
        raise ConfigError("give at least one seed", param="seeds")
    return out


_TMETRIC = re.compile(r"^T-(HR|NDCG)@(\d+)$")


def _finish(result: dict, ok: bool, message: str, report: str | Path | None, name: str | None) -> dict:
    result["passed"] = ok
    result["message"] = message
    if report is not None:
        from ._report import write_check_report

        write_check_report(result, report, name or result["check"])
    if not ok:
        raise RobustnessError(message, result)
    return result


def assert_robust(
    train_fn: Callable[[Split, int], object],
    data: SequenceData | Split,
    *,
    attack: str = "popular",
    budget: float = 0.01,
    metric: str = "T-HR@50",
    max_lift: float = 0.02,
    seeds: int | Sequence[int] = 3,
    targets: str | Sequence[int] = "unpopular",
    num_targets: int = 5,
    attack_params: dict | None = None,
    report: str | Path | None = None,
    name: str | None = None,
) -> dict:
    """Require that ``attack`` at ``budget`` lifts the target metric by at most ``max_lift``
    (mean over seeds of poisoned − clean).

    Args:
        train_fn: ``train_fn(split, seed) -> fitted victim``; called on the clean split and on
            the poisoned one (same seed), so the comparison isolates the fake users.
        attack: ``random``, ``popular``, ``segment`` or ``surrogate`` (white-box: the clean
            victim itself is the surrogate, so it needs the ``gradients`` and ``white_box``
            capabilities — recguard's victims and a wrapped model that offers them).
        metric: ``T-HR@k`` or ``T-NDCG@k`` over genuine test users who never saw the target.
        targets: ids or ``"unpopular"``/``"popular"`` (a seeded draw per seed, as in audits).
    Returns the measurement: per-seed clean/poisoned values, lifts, mean lift, targets.
    """
    from ..attacks.poisoning import make_attack
    from ..attacks.poisoning import select_targets
    from ..audit.compute import poison
    from ..metrics.target import target_exposure
    from ..victims import require

    m = _TMETRIC.match(metric)
    if not m:
        raise ConfigError(f"must look like T-HR@50 or T-NDCG@10, got {metric!r}", param="metric")
    k = int(m.group(2))
    split = as_split(data)
    rows = []
    t0 = time.perf_counter()
    for seed in _seeds(seeds):
        tgt = select_targets(split.train, targets if isinstance(targets, str) else list(targets), num_targets,
                             np.random.default_rng([seed, 7919]))
        clean = train_fn(split, seed)
        atk = make_attack(attack, budget=budget, targets=tgt, num_targets=len(tgt),
                          max_profile_length=getattr(clean, "max_len", 200), **(attack_params or {}))
        if attack == "surrogate":  # white-box: the clean victim is the attacker's surrogate
            require(clean, atk.requires(), who="assert_robust(attack='surrogate')")
            atk = atk.with_surrogate(clean)
        res = poison(split.train, atk, seed=seed, budget=budget, name=attack)  # the audit's stream for these fake users
        poisoned = train_fn(split.with_train(res.data), seed)
        before = target_exposure(clean, split, tgt, ks=(k,))
        after = target_exposure(poisoned, split, tgt, ks=(k,))
        rows.append({"seed": seed, "targets": tgt.tolist(), "fake_users": int(len(res.fake_users)),
                     "clean": before[metric], "poisoned": after[metric], "lift": after[metric] - before[metric],
                     "clean_mean_rank": before["mean_rank"], "poisoned_mean_rank": after["mean_rank"]})
    lift = float(np.mean([r["lift"] for r in rows]))
    result = {"check": "assert_robust", "attack": attack, "budget": budget, "metric": metric, "max_lift": max_lift,
              "seeds": [r["seed"] for r in rows], "mean_lift": lift, "per_seed": rows,
              "mean_clean": float(np.mean([r["clean"] for r in rows])), "mean_poisoned": float(np.mean([r["poisoned"] for r in rows])),
              "dataset": split.full.name, "wall_time_s": time.perf_counter() - t0}
    per = "; ".join(f"seed {r['seed']}: {r['clean']:.4f} -> {r['poisoned']:.4f}" for r in rows)
    ok = lift <= max_lift
    verdict = "holds" if ok else "NOT robust"
    msg = (f"{verdict}: {metric} lift {lift:+.4f} (mean over {len(rows)} seed(s)) {'<=' if ok else '>'} max_lift {max_lift} "
           f"under the {attack!r} attack at budget {budget:.2%} ({rows[0]['fake_users']} fake users) on {split.full.name}; "
           f"clean -> poisoned per seed: {per}; targets of seed {rows[0]['seed']}: {rows[0]['targets']}")
    return _finish(result, ok, msg, report, name)


def assert_extraction_resistant(
    victim,
    data: SequenceData | Split,
    *,
    budget: int = 1000,
    max_agreement: float = 0.5,
    metric: str = "Agreement@10",
    mode: str = "data-free",
    k: int = 100,
    max_queries: int | None = None,
    surrogate="sasrec",
    surrogate_config: dict | None = None,
    epochs: int = 10,
    real_fraction: float = 0.1,
    defense: str = "none",
    max_cost: float | None = None,
    seed: int = 0,
    report: str | Path | None = None,
    name: str | None = None,
) -> dict:
    """Require that a model stolen through the top-``k`` API with ``budget`` generated
    sequences agrees with the victim at most ``max_agreement`` (``Agreement@1`` or ``@10``)
    on the real test users' histories.

    ``victim`` is your model (its top-k lists are all the attacker sees: it is wrapped in a
    :class:`~recguard.victims.BlackBoxVictim` with ``k`` and ``max_queries``) or an existing
    ``BlackBoxVictim``. Agreement is then measured on your side, outside the query budget.
    ``defense``: serve the lists through an API defense (``"truncate:10"``, ``"shuffle:10"``,
    ``"sample:0.5"``, ``"unordered:10"``; :mod:`recguard.defenses.serving`); ``k`` is capped at
    what it serves. ``max_cost``: also require that the defense costs the genuine test users at
    most this share of their NDCG@10 (e.g. 0.02).
    """
    from ..attacks.extraction import agreement, extract
    from ..defenses.serving import check_defense, serve, served_quality
    from ..metrics import clean_cost
    from ..victims import BlackBoxVictim

    if metric not in ("Agreement@1", "Agreement@10"):
        raise ConfigError(f"must be Agreement@1 or Agreement@10, got {metric!r}", param="metric")
    check_defense(defense)
    split = as_split(data)
    if isinstance(victim, BlackBoxVictim):
        if defense.strip() != "none":
            raise ConfigError("pass your model (not a BlackBoxVictim) to serve it through a defense", param="defense")
        api, model = victim, victim.wrapped
    else:
        served = serve(victim, defense, split.train, seed=seed)
        api, model = BlackBoxVictim(served, k=min(k, served.max_list), query_budget=max_queries), victim
    rng = np.random.default_rng([seed, 31337])
    real = None
    if mode == "few-shot":
        n_real = max(1, int(round(real_fraction * split.train.num_users)))
        real = [split.train[u].tolist() for u in rng.choice(split.train.num_users, size=n_real, replace=False)]
    t0 = time.perf_counter()
    res = extract(api, mode=mode, num_sequences=int(budget), real_sequences=real, surrogate=surrogate,
                  surrogate_config=surrogate_config, epochs=epochs, rng=rng, progress=False)
    x, _ = split.inputs("test", model.max_len)
    agree = agreement(model, res.surrogate, x)
    value = float(agree[metric])
    result = {"check": "assert_extraction_resistant", "mode": mode, "budget": int(budget), "k": api.k, "queries": res.queries,
              "surrogate": surrogate, "metric": metric, "value": value, "max_agreement": max_agreement, "agreement": agree,
              "seed": seed, "dataset": split.full.name, "wall_time_s": time.perf_counter() - t0, "defense": defense.strip()}
    ok = value <= max_agreement
    msg = (f"{'holds' if ok else 'NOT resistant'}: a {surrogate} stolen {mode} with {res.queries} top-{api.k} queries "
           f"({budget} generated sequences, seed {seed}, API defense {defense.strip()}) reaches {metric} {value:.4f} "
           f"{'<=' if ok else '>'} max_agreement {max_agreement} on {len(x)} test users of {split.full.name} "
           f"(Agreement@1 {agree['Agreement@1']:.4f})")
    if defense.strip() != "none":
        if api.wrapped.guard is not None:
            result["queries_answered_at_random"] = api.wrapped.guard_flags
        shown, plain = served_quality(api.wrapped, split)["NDCG@10"], served_quality(model, split)["NDCG@10"]
        cost = clean_cost(plain, shown)
        result.update(served_NDCG_10=shown, undefended_NDCG_10=plain, served_cost=cost)
        if max_cost is not None and cost is not None and -cost > max_cost:
            ok = False
            msg = (f"the defense costs too much: NDCG@10 {shown:.4f} served against {plain:.4f} ({100 * cost:+.1f}%, "
                   f"max_cost {max_cost}); {msg}")
        else:
            msg += f"; genuine users' NDCG@10 {shown:.4f} against {plain:.4f} undefended ({100 * (cost or 0):+.1f}%)"
    return _finish(result, ok, msg, report, name)


def assert_clean_quality(
    victim,
    data: SequenceData | Split,
    *,
    min_ndcg: float | None = None,
    min_hr: float | None = None,
    k: int = 10,
    which: str = "test",
    report: str | Path | None = None,
    name: str | None = None,
) -> dict:
    """Require full-ranking NDCG@k (and/or HR@k) of at least the given floor on the split's
    ``which`` items (seen items filtered)."""
    from ..metrics import evaluate

    if min_ndcg is None and min_hr is None:
        raise ConfigError("give min_ndcg and/or min_hr", param="min_ndcg")
    split = as_split(data)
    got = evaluate(victim, split, which=which, ks=(k,))
    fails = []
    if min_ndcg is not None and got[f"NDCG@{k}"] < min_ndcg:
        fails.append(f"NDCG@{k} {got[f'NDCG@{k}']:.4f} < min_ndcg {min_ndcg}")
    if min_hr is not None and got[f"HR@{k}"] < min_hr:
        fails.append(f"HR@{k} {got[f'HR@{k}']:.4f} < min_hr {min_hr}")
    result = {"check": "assert_clean_quality", "which": which, "k": k, "min_ndcg": min_ndcg, "min_hr": min_hr, **got,
              "dataset": split.full.name}
    ok = not fails
    msg = (f"{'holds' if ok else 'quality too low'}: " + ("; ".join(fails) if fails else
           f"NDCG@{k} {got[f'NDCG@{k}']:.4f}, HR@{k} {got[f'HR@{k}']:.4f}") + f" on {got['users']} {which} users of {split.full.name}")
    return _finish(result, ok, msg, report, name)
