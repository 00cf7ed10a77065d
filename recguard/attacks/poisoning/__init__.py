"""Data poisoning by fake-user injection (PROTOCOLS §2), one attack per module.

>>> from recguard.attacks.poisoning import make_attack
>>> attack = make_attack("popular", budget=0.01)      # doctest: +SKIP
>>> result = attack.poison(split.train, rng=0)        # doctest: +SKIP
"""

from __future__ import annotations

import functools

from ..._params import check_kwargs
from ...errors import ConfigError
from ._base import MAX_BUDGET, ORDERS, THREAT_MODELS, FillerAttack, ModelGuidedAttack, PoisoningAttack, PoisonResult, select_targets
from .camouflage import CamouflageAttack
from .coverage import CoverageAttack
from .inject import InjectedAttack
from .popular import PopularAttack
from .random import RandomAttack
from .segment import SegmentAttack
from .surrogate import ExtractedSurrogateAttack, SurrogateAttack

#: every attack an audit can name; adding one is its module plus one line here
ATTACKS: dict[str, type[PoisoningAttack]] = {
    "random": RandomAttack,
    "popular": PopularAttack,
    "segment": SegmentAttack,
    "surrogate": SurrogateAttack,
    "extracted": ExtractedSurrogateAttack,
    "camouflage": CamouflageAttack,
    "coverage": CoverageAttack,
}
#: other names of registered attacks
ALIASES = {"bandwagon": "popular"}

__all__ = [
    "PoisoningAttack", "FillerAttack", "ModelGuidedAttack", "PoisonResult", "select_targets", "make_attack", "attack_class",
    "ATTACKS", "ALIASES", "THREAT_MODELS", "MAX_BUDGET", "ORDERS", "RandomAttack", "PopularAttack", "SegmentAttack", "SurrogateAttack",
    "ExtractedSurrogateAttack", "InjectedAttack", "CamouflageAttack",
]


def attack_class(name: str) -> type[PoisoningAttack]:
    """The registered class of an attack name (or alias); ``NAME@extracted`` is model-guided attack
    NAME with a surrogate extracted from the victim's top-k lists. An unknown name is a :class:`ConfigError`."""
    base, at, source = name.partition("@")
    if at:
        if source != "extracted":
            raise ConfigError(f"unknown surrogate source {source!r} in {name!r}; the one source to name is NAME@extracted",
                              param="attack")
        return _stolen(attack_class(base))
    cls = ATTACKS.get(ALIASES.get(name, name))
    if cls is None:
        raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))}, NAME@extracted for a model-guided "
                          "one, or --inject FILE", param="attack")
    return cls


@functools.cache
def _stolen(cls: type[PoisoningAttack]) -> type[ModelGuidedAttack]:
    """``cls`` with a surrogate extracted from the victim's top-k lists (the black-box chain)."""
    if not issubclass(cls, ModelGuidedAttack):
        raise ConfigError(f"only a model-guided attack takes a stolen surrogate; {cls.name} is a {cls.threat_model} attack",
                          param="attack")
    doc = f"{cls.__name__} with a surrogate extracted from the victim's top-k lists (the black-box chain)."
    return type(f"Extracted{cls.__name__}", (cls,), {"name": f"{cls.name}@extracted", "surrogate_source": "extracted",
                                                     "__module__": cls.__module__, "__doc__": doc})


def make_attack(name: str, **params) -> PoisoningAttack:
    """An attack by registered name or alias (see :data:`ATTACKS`, :data:`ALIASES`) with its options."""
    cls = attack_class(name)
    params = check_kwargs(cls, params, f"attack_params.{name}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad option for attack {name!r}: {exc}", param="attack") from None
