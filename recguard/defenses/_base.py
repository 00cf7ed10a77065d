"""The defense seam: what every defense receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np

from ..data import Split

__all__ = ["Defense", "DefenseOutcome", "NoDefense"]


@dataclass
class DefenseOutcome:
    """What a defense decided about the users of the training data it was given.

    Attributes:
        user_weights: final weight per training user (None = all 1; 0 = filtered out).
        scores: suspicion per training user (higher = more likely fake), for ROC/PR-AUC.
        flagged: boolean per training user: the defense's own decision (its threshold).
        threshold: the threshold on ``scores`` behind ``flagged``, where there is one.
        info: timings and settings for the report.
        simulated_scores: the same scorer's scores of the defender's own simulated fakes, where
            it has them (for the separation check and diagnostics; never of the injected users).
    """

    user_weights: np.ndarray | None = None
    scores: np.ndarray | None = None
    flagged: np.ndarray | None = None
    threshold: float | None = None
    info: dict = field(default_factory=dict)
    simulated_scores: np.ndarray | None = None

    def decisions(self) -> np.ndarray | None:
        if self.flagged is not None:
            return np.asarray(self.flagged, dtype=bool)
        if self.scores is not None and self.threshold is not None:
            return np.asarray(self.scores) >= self.threshold
        return None


class Defense:
    """Base class. A defense either computes user weights before training (override
    :meth:`apply`) or acts during training (override :meth:`train`).

    ``train(split, make_victim, seed, rng)`` returns the trained victim and the outcome;
    the default trains ``make_victim()`` with the weights :meth:`apply` returned.
    """

    name = "base"
    #: capabilities the defended victim must offer (recguard.victims.CAPABILITIES)
    requires: tuple[str, ...] = ("retrain",)
    #: bumped when the defense's numbers change for the same seed; audit cells carry it, so a resumed
    #: audit recomputes what an older revision wrote (None: never bumped)
    revision: int | None = None
    #: whether the defense reads user text (the audit's --known/--encoder/--user-text apply to it)
    reads_text: bool = False

    def victim(self, make_victim: Callable):
        """A fresh victim from ``make_victim``, checked for :attr:`requires` before anything trains."""
        from ..victims._contract import require

        v = make_victim()
        require(v, self.requires, who=f"the {self.name} defense")
        return v

    def apply(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
        return DefenseOutcome()

    def train(self, split: Split, *, make_victim: Callable, seed: int, rng: np.random.Generator, progress: bool = False):
        import time

        t0 = time.perf_counter()
        outcome = self.apply(split, make_victim=make_victim, rng=rng)
        outcome.info.setdefault("defense_time_s", time.perf_counter() - t0)
        victim = self.victim(make_victim).fit(split, user_weights=outcome.user_weights, rng=seed, progress=progress)
        return victim, outcome


class NoDefense(Defense):
    """Train on the data as it is."""

    name = "none"
