"""Target-exposure metrics for poisoning audits (PROTOCOLS §2, LoRec's definitions).

For each target item t, over genuine test users who have never interacted with t:
rank t among all items the user has not interacted with (their whole sequence,
test item included, is excluded), scoring with the test input (history before the
test item). T-HR@k = share of users with rank ≤ k; T-NDCG@k = mean of
1/log2(rank + 1)·[rank ≤ k]. Averages go over users, then over targets.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .._finite import check_scores, score_rows
from ..data import Split
from ..data import pad_from_csr

__all__ = ["target_exposure", "attack_lift", "defense_removal", "clean_cost"]


@torch.no_grad()
def target_exposure(
    victim,
    split: Split,
    targets: Iterable[int],
    *,
    ks: Iterable[int] = (10, 50),
    users: np.ndarray | None = None,
    batch_size: int | None = None,
) -> dict:
    """T-HR@k, T-NDCG@k and mean rank of ``targets``; per target and averaged.

    Args:
        split: the *clean* split; its evaluation users are the genuine test users.
        users: optional subset of user indices of ``split.full`` (default: all evaluation users).
    Returns:
        ``{"T-HR@10": ..., "T-NDCG@10": ..., ..., "mean_rank": ..., "per_target": {t: {...}}}``.
    """
    ks = tuple(ks)
    t_arr = np.asarray(list(targets), dtype=np.int64)
    eval_users = split.eval_users if users is None else np.intersect1d(split.eval_users, np.asarray(users))
    d = split.full
    lengths = d.lengths[eval_users]
    starts = d.offsets[eval_users]
    x = pad_from_csr(d.items, starts, lengths - 1, victim.max_len)  # test input
    full_len = int(lengths.max()) if len(lengths) else 1
    t_tensor = torch.from_numpy(t_arr)
    if batch_size is None:  # the [B, N + 1] scores and the seen mask stay within the score budget
        batch_size = score_rows(victim.num_items, cap=256)
    ranks_all = []
    eligible_all = []
    for s in range(0, len(eval_users), batch_size):
        e = slice(s, s + batch_size)
        scores = check_scores(victim.score(torch.from_numpy(x[e])), victim).float().cpu()
        hist = torch.from_numpy(pad_from_csr(d.items, starts[e], lengths[e], full_len))
        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen.scatter_(1, hist, True)
        seen[:, 0] = True
        eligible = ~seen[:, t_tensor]  # [B, T] users who never interacted with t
        ts = scores[:, t_tensor]  # [B, T]
        scores.masked_fill_(seen, float("-inf"))
        ranks = torch.stack([1 + (scores > ts[:, j : j + 1]).sum(1) for j in range(len(t_arr))], dim=1)  # [B, T]
        ranks_all.append(ranks.numpy())
        eligible_all.append(eligible.numpy())
    ranks = np.concatenate(ranks_all) if ranks_all else np.zeros((0, len(t_arr)), dtype=np.int64)
    eligible = np.concatenate(eligible_all) if eligible_all else np.zeros((0, len(t_arr)), dtype=bool)
    per_target = {}
    for j, t in enumerate(t_arr.tolist()):
        r = ranks[eligible[:, j], j].astype(np.float64)
        row = {"users": int(len(r)), "mean_rank": float(r.mean()) if len(r) else None}
        for k in ks:
            row[f"T-HR@{k}"] = float(np.mean(r <= k)) if len(r) else 0.0
            row[f"T-NDCG@{k}"] = float(np.mean(np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0))) if len(r) else 0.0
        per_target[str(int(t))] = row  # string keys: identical before and after a JSON round trip
    out = {}
    for key in next(iter(per_target.values())):
        if key != "users":  # a target every test user already has has no rank: left out of the mean rank
            vals = [row[key] for row in per_target.values() if row[key] is not None]
            out[key] = float(np.mean(vals)) if vals else None
    out["per_target"] = per_target
    return out


def attack_lift(clean: float, poisoned: float) -> float:
    """T-HR(poisoned) − T-HR(clean)."""
    return poisoned - clean


def defense_removal(clean: float, poisoned: float, defended: float, defended_clean: float | None = None) -> float | None:
    """1 − (defended − clean) / (poisoned − clean); None when the attack had no lift.

    With ``defended_clean`` (the defense trained on the clean data), the net removal
    1 − (defended − defended_clean) / (poisoned − clean): the share of the attack's lift that
    the defense cancels, not counting what the defense alone does to the targets.
    """
    lift = poisoned - clean
    if lift <= 0:
        return None
    return 1.0 - (defended - (clean if defended_clean is None else defended_clean)) / lift


def clean_cost(reference: float, other: float) -> float | None:
    """Relative change of a clean metric: (other − reference) / reference."""
    if reference == 0:
        return None
    return (other - reference) / reference
