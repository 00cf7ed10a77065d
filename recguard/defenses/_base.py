"""The defense seam: what every defense receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..data import Split

__all__ = ["Defense", "DetectorDefense", "DefenseOutcome", "NoDefense"]


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
    """Base class of every defense. Its one lifecycle is :meth:`train`: given the (possibly
    poisoned) training split and a factory of fresh victims, return the trained victim and a
    :class:`DefenseOutcome` (weights, suspicion scores, flags, timings). The audit calls nothing
    else. A defense that only decides per-user weights before training subclasses
    :class:`DetectorDefense` and implements :meth:`DetectorDefense.detect`.

    Declarations the audit reads (never the defense's name): :attr:`requires`, :attr:`revision`,
    :attr:`reads_text` and :attr:`baseline`.
    """

    name = "base"
    #: capabilities the defended victim must offer (recguard.victims.CAPABILITIES)
    requires: tuple[str, ...] = ("retrain",)
    #: bumped when the defense's numbers change for the same seed; audit cells carry it, so a resumed
    #: audit recomputes what an older revision wrote (None: never bumped)
    revision: int | None = None
    #: whether the defense reads user text (the audit's --known/--encoder/--user-text apply to it)
    reads_text: bool = False
    #: the undefended baseline (no detection metrics, no control cell, no removal)
    baseline: bool = False

    def victim(self, make_victim: Callable):
        """A fresh victim from ``make_victim``, checked for :attr:`requires` before anything trains."""
        from ..victims import require

        v = make_victim()
        require(v, self.requires, who=f"the {self.name} defense")
        return v

    def train(self, split: Split, *, make_victim: Callable, seed: int, rng: np.random.Generator, progress: bool = False):
        """Train ``make_victim()`` on ``split`` under the defense: ``(victim, outcome)``. The base trains as is."""
        victim = self.victim(make_victim).fit(split, rng=seed, progress=progress)
        return victim, DefenseOutcome(info={"defense_time_s": 0.0})


class DetectorDefense(Defense):
    """A defense that scores the training users before training and trains with the weights it
    decided (0 = removed): subclasses implement :meth:`detect`."""

    def detect(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:  # pragma: no cover
        """Suspicion scores, flags and weights of ``split``'s training users (nothing trains)."""
        raise NotImplementedError

    def train(self, split: Split, *, make_victim: Callable, seed: int, rng: np.random.Generator, progress: bool = False):
        import time

        t0 = time.perf_counter()
        outcome = self.detect(split, make_victim=make_victim, rng=rng)
        outcome.info.setdefault("defense_time_s", time.perf_counter() - t0)
        victim = self.victim(make_victim).fit(split, user_weights=outcome.user_weights, rng=seed, progress=progress)
        return victim, outcome


class NoDefense(Defense):
    """Train on the data as it is: the undefended baseline."""

    name = "none"
    baseline = True
