"""Data poisoning by fake-user injection (PROTOCOLS §2), one attack per module.

>>> from recguard.attacks.poisoning import make_attack
>>> attack = make_attack("popular", budget=0.01)      # doctest: +SKIP
>>> result = attack.poison(split.train, rng=0)        # doctest: +SKIP
"""

from __future__ import annotations

from ..._params import check_kwargs
from ...errors import ConfigError
from ._base import PoisoningAttack, PoisonResult, select_targets
from .camouflage import CamouflageAttack
from .inject import InjectedAttack
from .popular import PopularAttack
from .random import RandomAttack
from .segment import SegmentAttack
from .surrogate import SurrogateAttack

ATTACKS: dict[str, type[PoisoningAttack]] = {
    "random": RandomAttack,
    "popular": PopularAttack,
    "segment": SegmentAttack,
    "surrogate": SurrogateAttack,
    "camouflage": CamouflageAttack,
}

__all__ = [
    "PoisoningAttack", "PoisonResult", "select_targets", "make_attack", "ATTACKS",
    "RandomAttack", "PopularAttack", "SegmentAttack", "SurrogateAttack", "InjectedAttack", "CamouflageAttack",
]


def make_attack(name: str, **params) -> PoisoningAttack:
    """An attack by name (``random``, ``popular``/``bandwagon``, ``segment``, ``surrogate``, ``camouflage``)."""
    key = "popular" if name == "bandwagon" else name
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(sorted(ATTACKS))} (or --inject FILE)", param="attack")
    params = check_kwargs(ATTACKS[key], params, f"attack_params.{name}")
    try:
        return ATTACKS[key](**params)
    except TypeError as exc:
        raise ConfigError(f"bad option for attack {name!r}: {exc}", param="attack") from None
