"""Lockstep detection: users who share rare items with a whole group of other users.

A campaign of fake users promotes the same few target items, so every fake shares those items
with every other fake — items that few genuine users hold. Genuine users rarely share several
rare items with many others at once. This is the signal of CopyCatch (Beutel et al., "CopyCatch:
stopping group attacks by spotting lockstep behavior in social networks", WWW'13), which finds
groups of users that liked the same pages; here, without timestamps, on the training sequences.

Each user's suspicion is the rarity-weighted overlap ``o(u, v) = Σ_{i ∈ I_u ∩ I_v} idf(i)``
(``idf(i) = log(U / n_i)``, ``n_i`` = users holding item ``i``) with its ``group_size``-th most
overlapping partner (``group_size`` = ``group_share`` of the users, so the group a user needs grows
with the catalogue's user base; one twin is not a group) divided by the square root of its own
rarity mass ``Σ_{i ∈ I_u} idf(i)`` (a long genuine history overlaps more by chance; dividing by
the whole mass instead over-corrects, see docs/defenses.md). The shared decision layer
(:mod:`recguard.defenses.decision`) turns the scores into removals under its false-positive
budget. The scorer reads the data as received and needs no simulated attack, no text and no model.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..data import Split
from ..errors import ConfigError
from ._base import DefenseOutcome, DetectorDefense
from .decision import DECISION_REVISION, DEFAULT_FLAG_SHARE, DEFAULT_RULE, Decision

__all__ = ["LockstepDetector", "lockstep_scores"]


def lockstep_scores(train, group_size: int = 10, block: int = 2048) -> np.ndarray:
    """Per user: the rarity-weighted item overlap with its ``group_size``-th most overlapping other
    user over the square root of its own rarity mass, ``[U]`` (blocks of ``block`` users bound the
    memory to ``block × U`` floats)."""
    from scipy import sparse

    n_users = train.num_users
    x = train.holdings()  # an item held twice counts once
    holders = np.asarray(x.sum(0)).ravel()
    idf = np.log(n_users / np.maximum(holders, 1.0))
    weighted = x @ sparse.diags(idf)
    mass = np.maximum(np.asarray(weighted.sum(1)).ravel(), 1e-12)
    weighted_t = weighted.T.tocsc()  # [I, U]
    k = max(1, min(int(group_size), n_users - 1))
    out = np.zeros(n_users, dtype=np.float64)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        overlap = (x[start:stop] @ weighted_t).toarray()  # [b, U]
        overlap[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not with oneself
        out[start:stop] = np.partition(overlap, overlap.shape[1] - k, axis=1)[:, -k] / np.sqrt(mass[start:stop])
    return out


class LockstepDetector(DetectorDefense):
    """Remove the users that share rare items with a whole group (CopyCatch-style lockstep).

    Args:
        group_share: the partner whose overlap scores a user, as a share of the users (default
            0.0025: the 12th most overlapping partner on Amazon Office's 4,905 users, the 56th on
            Beauty's 22,363). A campaign smaller than that share is scored partly on genuine
            partners and escapes; chosen on Amazon Office (docs/defenses.md).
        rule, max_flag_share, z, weights, density_ratio: the decision (see :class:`~recguard.defenses.decision.Decision`).
    """

    name = "lockstep"
    revision = DECISION_REVISION

    def __init__(self, *, group_share: float = 0.0025, rule: str = DEFAULT_RULE, max_flag_share: float = DEFAULT_FLAG_SHARE,
                 z: float = 3.0, weights: str = "hard", density_ratio: float = 0.1):
        if isinstance(group_share, bool) or not isinstance(group_share, (int, float)) or not 0 < float(group_share) < 0.5:
            raise ConfigError(f"must be a share of the users in (0, 0.5), e.g. 0.0025; got {group_share!r}", param="group_share")
        if rule in ("paper", "simulated"):
            raise ConfigError(f"rule {rule!r} does not apply (CopyCatch's own rule needs timestamps, and this detector simulates "
                              "no attack); choose top, mixture, group or outlier", param="rule")
        self.decision = Decision(rule=rule, max_flag_share=max_flag_share, z=z, weights=weights,
                                 density_ratio=density_ratio)
        self.group_share = float(group_share)

    def detect(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
        t0 = time.perf_counter()
        group_size = max(2, int(round(self.group_share * split.train.num_users)))
        suspicion = lockstep_scores(split.train, group_size)
        decided = self.decision.decide(suspicion)
        return DefenseOutcome(user_weights=decided.weights, scores=suspicion, flagged=decided.flagged, threshold=decided.threshold,
                              info={**decided.info, "group_size": group_size, "defense_time_s": time.perf_counter() - t0})
