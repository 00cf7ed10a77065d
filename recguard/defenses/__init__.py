"""Defenses. A defense sees the (possibly poisoned) training split and returns per-user
weights for the victim's training (0 = filtered out), plus optional per-user
suspicion scores for detection metrics. ``none`` is the baseline; LoRec, LLM4Dec and
MNAR-weighted training plug in here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..data import Split
from ..errors import ConfigError

__all__ = ["Defense", "DefenseOutcome", "NoDefense", "DEFENSES", "make_defense"]


@dataclass
class DefenseOutcome:
    """``user_weights``: one weight per user of ``split.train`` (None = all 1);
    ``scores``: suspicion per training user (higher = more likely fake), for detection metrics;
    ``threshold``: the defense's own decision threshold on ``scores``; ``info``: timings etc."""

    user_weights: np.ndarray | None = None
    scores: np.ndarray | None = None
    threshold: float | None = None
    info: dict = field(default_factory=dict)


class Defense(Protocol):
    name: str

    def apply(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome: ...


class NoDefense:
    """Train on the data as it is."""

    name = "none"

    def apply(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
        return DefenseOutcome()


DEFENSES: dict[str, Callable[..., Defense]] = {"none": NoDefense}


def make_defense(name: str, **params) -> Defense:
    if name not in DEFENSES:
        raise ConfigError(f"unknown defense {name!r}; available: {', '.join(sorted(DEFENSES))}", param="defense")
    return DEFENSES[name](**params)
