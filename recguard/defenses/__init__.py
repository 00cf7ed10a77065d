"""Defenses. A defense sees the (possibly poisoned) training split and decides per-user
weights for the victim's training (0 = filtered out) — before training (LLM4Dec) or
while the victim trains (LoRec) — plus per-user suspicion scores for detection
metrics. ``none`` is the baseline.

Text-based defenses follow PROTOCOLS §3: they learn from a *known* attack that the
defender simulates itself, never from the injected users' true labels.
"""

from __future__ import annotations

from collections.abc import Callable

from .._params import check_kwargs
from ..errors import ConfigError
from ._base import Defense, DefenseOutcome, DetectorDefense, NoDefense
from .baselines import AdversarialTraining, PCASelect
from .decision import Decided, Decision
from .llm4dec import LLM4Dec
from .lockstep import LockstepDetector
from .lorec import LoRec, LoRecDetect, lorec_weights, update_scores
from .mnar import MNARWeighting
from .querystream import QueryStreamDetector
from .saedetect import SAEDetector
from .serving import ServedVictim, ServingPolicy, served_quality

__all__ = [
    "Defense", "DetectorDefense", "DefenseOutcome", "NoDefense", "LLM4Dec", "LoRec", "DEFENSES", "make_defense",
    "update_scores", "lorec_weights", "MNARWeighting", "PCASelect", "AdversarialTraining", "LoRecDetect", "Decision",
    "Decided", "SAEDetector", "ServedVictim", "ServingPolicy", "served_quality", "QueryStreamDetector",
]

#: every defense an audit can name; adding one is its module plus one line here
DEFENSES: dict[str, Callable[..., Defense]] = {
    "none": NoDefense,
    "llm4dec": LLM4Dec,
    "lorec": LoRec,
    "lorec-detect": LoRecDetect,
    "mnar": MNARWeighting,
    "pca": PCASelect,
    "apr": AdversarialTraining,
    "lockstep": LockstepDetector,
    "sae": SAEDetector,
}


def make_defense(name: str, **params) -> Defense:
    """A defense by registered name (see :data:`DEFENSES`) with its options."""
    if name not in DEFENSES:
        raise ConfigError(f"unknown defense {name!r}; available: {', '.join(sorted(DEFENSES))}", param="defense")
    params = check_kwargs(DEFENSES[name], params, f"defense_params.{name}")
    try:
        return DEFENSES[name](**params)
    except TypeError as exc:
        raise ConfigError(f"bad option for defense {name!r}: {exc}", param="defense") from None
