"""The victim contract, declared once: what each capability needs from a victim, and the
epoch-end callback of training.

Every attack, defense and probe states the capabilities it needs (:data:`CAPABILITIES`)
and calls :func:`require` before any work starts; nothing outside ``recguard.victims``
reaches into a victim's ``module``. recguard's own victims have every capability; a
:class:`~recguard.victims.TorchVictim` has those its module's methods and its ``fit_fn``
provide, and says which when asked (``victim.capabilities()``).

The white-box surface (shapes for ``B`` sequences of length ``L``, ``N`` items, state width ``D``):

========================================  ======================================================
``score(seqs) -> [B, N+1]``               next-item scores, no gradient, column 0 is ``-inf``
``representation(seqs) -> [B, D]``        the user state the scores are computed from (no grad)
``differentiable_representation(x)``      the same with autograd on (``x`` a LongTensor [B, L])
``score_representation(rep) -> [B, N+1]`` the head: scores from a state (differentiable)
``item_embeddings() -> [N+1, D]``         output item vectors (row 0 = padding)
``hidden_states(x) -> [B, L, D]``         the state at every position (optional)
``input_embedding_layer()``               the ``nn.Embedding`` that embeds input ids (gradients)
``differentiable_score(x) -> [B, N+1]``   scores with autograd on, module mode kept
``layers() -> {name: nn.Module}``         sub-modules whose output is ``[B, L, D]``, aligned
                                          with the left-padded input (probes at a layer)
``causal``                                position t sees only items up to t (declared)
``module``                                the ``nn.Module`` that holds the parameters
``build(num_items)``                      a fresh, untrained module (distillation targets)
``clone()``                               an independent copy with the same settings (fitting it
                                          leaves the original alone)
``fit(data, *, user_weights, item_weights, rng, on_epoch_end, progress)``
========================================  ======================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CapabilityError

__all__ = ["CAPABILITIES", "CAPABILITY_TABLE", "Capability", "capabilities", "require", "EpochUpdate", "STOP", "as_update"]

@dataclass(frozen=True)
class Capability:
    """One row of the capability table.

    Attributes:
        name: what attacks, defenses and probes ask for (``require(victim, [name], who=...)``).
        needs: what the victim must offer.
        how_to_add: how a :class:`~recguard.victims.TorchVictim` (or a hand-made victim) gets it.
        detect: how an object that implements the protocol by hand (no ``capabilities()``) is seen
            to offer it.
        checks: names of the :mod:`recguard.testing` conformance checks that apply to a victim that
            declares it.
    """

    name: str
    needs: str
    how_to_add: str
    detect: Callable[[Any], bool]
    checks: tuple[str, ...] = ()


def _has(*methods: str) -> Callable[[Any], bool]:
    return lambda victim: all(callable(getattr(victim, m, None)) for m in methods)


#: the one capability table: name → what it needs, how to add it, how it is detected, which checks apply
CAPABILITY_TABLE: tuple[Capability, ...] = (
    Capability("retrain", "fit(data, *, user_weights=None, rng=None)",
               "pass fit_fn=... to TorchVictim (it trains the module in place and honours user_weights)", _has("fit")),
    Capability("item_weights", "fit(..., item_weights=[N+1 weights])",
               "give fit_fn a keyword argument item_weights and multiply each loss term by the weight of its target item",
               lambda v: False, ("check_item_weights_honoured",)),
    Capability("epoch_callback", "fit(..., on_epoch_end=callback)",
               "give fit_fn a keyword argument on_epoch_end and call it after every epoch, using the weights it returns from "
               "the next epoch on (docs/custom-models.md shows the loop)", lambda v: False, ("check_epoch_callback_honoured",)),
    Capability("white_box", "representation(x) -> [B, D] and item_embeddings() -> [N+1, D]",
               "add methods representation(x) and item_embeddings() to your module (and score_representation(rep) when scores "
               "are not rep @ item_embeddings().T)",
               _has("representation", "item_embeddings", "differentiable_representation", "score_representation"),
               ("check_representation_consistent_with_score", "check_item_embeddings_shape")),
    Capability("hidden_states", "hidden_states(x) -> [B, L, D]",
               "add a method hidden_states(x) to your module: the state at every position", _has("hidden_states"),
               ("check_hidden_states",)),
    Capability("gradients", "input_embedding_layer(): the nn.Embedding applied to the [B, L] input ids (any alignment, extra "
               "tokens allowed), on a differentiable path to the scores",
               "give TorchVictim(item_embedding='name of that nn.Embedding'), or have exactly one nn.Embedding with num_items + 1 "
               "(or + 2) rows", _has("input_embedding_layer", "differentiable_score"), ("check_gradients_reach_input_embeddings",)),
    Capability("layers", "layers(): sub-modules whose output is [B, L, D] aligned with the left-padded input",
               "pass TorchVictim(layers=['name', ...]) naming such sub-modules", _has("layers")),
    Capability("adversarial", "fit(..., adversarial=(eps, lam)): APR adversarial training of the item embeddings",
               "give fit_fn a keyword argument adversarial and, when it is set, add lam times the loss under the worst-case "
               "item-embedding perturbation of norm eps", lambda v: False, ("check_adversarial_training_honoured",)),
    Capability("distill", "module (trainable parameters) and build(num_items)",
               "use a factory that returns an unfitted TorchVictim holding a freshly initialised module", lambda v: False),
    Capability("fresh_scores", "score(x) returns a new tensor on every call (callers may rank it in place) and accepts "
               "batches trimmed of their common left padding",
               "nothing to add: recguard copies a wrapped model's scores before ranking them (a little slower)", lambda v: False),
)

#: capability → (what the victim must offer, how to add it): the table's prose, for messages and docs
CAPABILITIES: dict[str, tuple[str, str]] = {c.name: (c.needs, c.how_to_add) for c in CAPABILITY_TABLE}


def capabilities(victim: Any) -> frozenset[str]:
    """The capabilities ``victim`` offers: its own declaration (``victim.capabilities()``), or,
    for an object that implements the protocol by hand, what the table's detectors see."""
    declared = getattr(victim, "capabilities", None)
    if callable(declared):
        return frozenset(declared())
    return frozenset(c.name for c in CAPABILITY_TABLE if c.detect(victim))


def require(victim: Any, needs: Iterable[str], *, who: str) -> None:
    """Raise one :class:`CapabilityError` naming every capability in ``needs`` that ``victim``
    lacks, what it takes and how to add it; return quietly when it has them all."""
    needs = list(dict.fromkeys(needs))
    unknown = [n for n in needs if n not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")
    missing = [n for n in needs if n not in capabilities(victim)]
    if not missing:
        return
    try:
        name = repr(victim)
    except Exception:
        name = type(victim).__name__
    parts = [f"{n} — needs {CAPABILITIES[n][0]}; to add it: {CAPABILITIES[n][1]}" for n in missing]
    raise CapabilityError(f"{who} needs what {name} does not offer: " + " | ".join(parts))


@dataclass(frozen=True)
class EpochUpdate:
    """What an ``on_epoch_end(epoch, victim)`` callback asks of the training loop.

    Attributes:
        user_weights: new per-user loss weights from the next epoch on (None = keep them).
        stop: end training now (the best validated weights are kept).
        reset_selection: forget the validations so far: the returned checkpoint and early
            stopping consider only validations from this epoch on (a defense whose weights
            enter late is then never bypassed by an earlier checkpoint).
    """

    user_weights: np.ndarray | None = None
    stop: bool = False
    reset_selection: bool = False


STOP = EpochUpdate(stop=True)


def as_update(value: Any) -> EpochUpdate:
    """A callback's return value as an :class:`EpochUpdate`: ``None`` (carry on), an array of user
    weights, :data:`STOP` / ``True`` (stop), or an ``EpochUpdate``."""
    if value is None or value is False:
        return EpochUpdate()
    if value is True:
        return STOP
    if isinstance(value, EpochUpdate):
        return value
    return EpochUpdate(user_weights=np.asarray(value, dtype=np.float64))
