"""recguard: audit sequential recommenders for robustness and explain what they learned.

The public API, re-exported flat::

    import recguard
    data = recguard.data.load("ml-100k")
    victim = recguard.SASRec(epochs=20).fit(data, rng=0)
    recguard.evaluate(victim, data.split())
"""

__version__ = "0.1.0"

from . import data, errors, metrics, probes, victims  # noqa: E402
from .data import SequenceData, Split  # noqa: E402
from .metrics import evaluate  # noqa: E402
from .victims import (  # noqa: E402
    BERT4Rec,
    BlackBoxVictim,
    GRU4Rec,
    SASRec,
    TorchVictim,
    Victim,
    load,
    make_victim,
)

__all__ = [
    "__version__", "data", "errors", "metrics", "probes", "victims",
    "SequenceData", "Split", "evaluate",
    "SASRec", "BERT4Rec", "GRU4Rec", "TorchVictim", "BlackBoxVictim", "Victim", "load", "make_victim",
]
