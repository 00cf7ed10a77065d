"""recguard: audit sequential recommenders for robustness and explain what they learned.

The public API, re-exported flat::

    import recguard
    data = recguard.data.load("ml-100k")
    victim = recguard.SASRec(epochs=20).fit(data, rng=0)
    recguard.evaluate(victim, data.split())

Names are imported on first use (PEP 562), so ``import recguard`` — which pytest does for
every test run once recguard's plugin is installed — does not load torch until something
needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "data": (".data", None), "errors": (".errors", None), "metrics": (".metrics", None), "probes": (".probes", None),
    "victims": (".victims", None), "attacks": (".attacks", None), "defenses": (".defenses", None),
    "audit": (".audit", None), "testing": (".testing", None),
    "SequenceData": (".data", "SequenceData"), "Split": (".data", "Split"), "evaluate": (".metrics", "evaluate"),
    **{name: (".victims", name) for name in ("BERT4Rec", "BlackBoxVictim", "GRU4Rec", "SASRec", "TorchVictim", "Victim",
                                             "load", "make_victim")},
}

__all__ = [
    "__version__", "data", "errors", "metrics", "probes", "victims",
    "SequenceData", "Split", "evaluate",
    "SASRec", "BERT4Rec", "GRU4Rec", "TorchVictim", "BlackBoxVictim", "Victim", "load", "make_victim",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'recguard' has no attribute {name!r}") from None
    mod = importlib.import_module(module, __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what static tools and IDEs see
    from . import attacks, audit, data, defenses, errors, metrics, probes, testing, victims  # noqa: F401
    from .data import SequenceData, Split
    from .metrics import evaluate
    from .victims import BERT4Rec, BlackBoxVictim, GRU4Rec, SASRec, TorchVictim, Victim, load, make_victim
