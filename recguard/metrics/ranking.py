"""Full-ranking metrics (PROTOCOLS §1): pure functions of ranks, plus a batched evaluator.

A rank is 1 + the number of candidate items scored strictly higher than the target,
where candidates are all items except padding and the items the user already had before
the held-out item ("filter seen"; the target itself is never filtered). :func:`evaluate`
masks the user's whole history by default, as the SASRec-CE paper's code and RecBole do;
``seen="window"`` masks only the items in the model's input window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .._finite import check_scores, score_rows
from ..errors import ConfigError

__all__ = ["hit_rate", "ndcg", "mrr", "ranks_from_scores", "evaluate", "summarize_ranks", "SEEN_MASKS"]

#: What full-ranking evaluation removes from the candidates: every item the user had before the
#: held-out one (``"history"``), or only those in the model's input window of ``max_len`` items
#: (``"window"``, recguard's rule before training revision 6).
SEEN_MASKS = ("history", "window")


def hit_rate(ranks: np.ndarray | Sequence[float], k: int) -> float:
    """HR@k = share of ranks ≤ k."""
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(r <= k)) if len(r) else 0.0


def ndcg(ranks: np.ndarray | Sequence[float], k: int) -> float:
    """NDCG@k with one relevant item = mean of 1/log2(rank + 1) for rank ≤ k, else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    if not len(r):
        return 0.0
    return float(np.mean(np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)))


def mrr(ranks: np.ndarray | Sequence[float]) -> float:
    """Mean reciprocal rank."""
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(1.0 / r)) if len(r) else 0.0


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None = None, *,
                      inplace: bool = False, checked: bool = False) -> torch.Tensor:
    """Rank of each target ([B]) among all items, given scores ``[B, N + 1]``.

    ``seen`` ([B, L] item ids, 0 = padding) are excluded from the candidates except
    the target itself. Column 0 (padding) is never a candidate. ``scores`` is not modified
    unless ``inplace`` (the evaluator's own score buffers: one copy of ``[B, N + 1]`` less);
    ``checked`` skips the finiteness check when the caller has just made it.
    """
    s = scores.detach().float()
    if not checked:
        check_scores(s, "the scores given to ranks_from_scores")
    if not inplace:
        s = s.clone()
    t = targets.view(-1, 1).to(s.device)
    target_score = s.gather(1, t)
    if seen is not None:
        s.scatter_(1, seen.to(s.device), float("-inf"))
    s[:, 0] = float("-inf")
    s.scatter_(1, t, float("-inf"))  # the target does not outrank itself
    return 1 + (s > target_score).sum(1)


def summarize_ranks(ranks: np.ndarray, ks: Iterable[int] = (10, 20)) -> dict[str, float]:
    """HR@k and NDCG@k for each ``k``, MRR and the user count, from 1-based ranks of the held-out items."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = hit_rate(ranks, k)
        out[f"NDCG@{k}"] = ndcg(ranks, k)
    out["MRR"] = mrr(ranks)
    out["users"] = int(len(ranks))
    return out


@torch.no_grad()
def evaluate(
    victim,
    split,
    *,
    which: str = "test",
    ks: Iterable[int] = (10, 20),
    users: np.ndarray | None = None,
    batch_size: int | None = None,
    return_ranks: bool = False,
    seen: str = "history",
):
    """Full-ranking HR@k / NDCG@k / MRR of ``victim`` on a leave-one-out :class:`~recguard.data.Split`.

    Args:
        which: ``"valid"`` or ``"test"``.
        users: optional subset of user indices (of ``split.full``) to evaluate, e.g. the
            genuine users of a poisoned dataset; default: every user with a held-out item.
        batch_size: users scored at once; default: as many as keep the score matrix within
            16 MB (``recguard._finite.SCORE_BUDGET``), so memory does not grow with the catalogue.
        return_ranks: also return the per-user ranks.
        seen: which of the user's items leave the candidates: ``"history"`` (every item before the
            held-out one, as the SASRec-CE paper's code and RecBole mask them) or ``"window"``
            (only the last ``max_len`` of them, the model's input). They differ for users with a
            history longer than ``max_len``: on ML-1M (max_len 200, a quarter of the users) the
            window rule gave SASRec a test NDCG@10 about 0.004 lower.

    Ranks are exact (every item is scored); scores are computed in user batches and ranked
    in place.
    """
    if seen not in SEEN_MASKS:
        raise ConfigError(f"must be one of {', '.join(SEEN_MASKS)}, got {seen!r}", param="seen")
    x, y = split.inputs(which, victim.max_len)
    rows = np.arange(len(y))
    if users is not None:
        rows = np.flatnonzero(np.isin(split.eval_users, np.asarray(users)))
        x, y = x[rows], y[rows]
    if batch_size is None:
        batch_size = score_rows(victim.num_items)
    own = _owns_scores(victim)
    ranks = np.zeros(len(y), dtype=np.int64)
    # recguard's victims score users of similar history length together, with the batch's
    # left padding trimmed (their positions count from the right edge, so the states do not
    # change): on Amazon Beauty (mean length 9, max_len 50) the forward pass does ~5× less work
    lengths = (x > 0).sum(1)
    order = np.argsort(lengths, kind="stable") if own else np.arange(len(y))
    for start in range(0, len(y), batch_size):
        sel = order[start : start + batch_size]
        xb = x[sel]
        if own:
            xb = xb[:, max(0, xb.shape[1] - max(1, int(lengths[sel].max(initial=1)))) :]
        xb = torch.from_numpy(np.ascontiguousarray(xb))
        yb = torch.from_numpy(y[sel])
        scores = victim.score(xb) if own else check_scores(victim.score(xb), victim)
        masked = xb if seen == "window" else torch.from_numpy(split.history(which, rows[sel]))
        ranks[sel] = ranks_from_scores(scores, yb, masked, inplace=own, checked=True).cpu().numpy()
    out = summarize_ranks(ranks, ks)
    return (out, ranks) if return_ranks else out


def _owns_scores(victim) -> bool:
    """Whether the victim declares ``fresh_scores``: its score tensor is new on every call (ranked in
    place) and it accepts batches trimmed of their common left padding. recguard's own victims
    declare it; a wrapped model's tensor might be a buffer it keeps, so it is copied first."""
    declared = getattr(victim, "capabilities", None)
    return callable(declared) and "fresh_scores" in declared()
