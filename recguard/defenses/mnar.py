"""Unbiased learning from missing-not-at-random implicit feedback (Saito et al., WSDM'20; PROTOCOLS §6).

A click is Y = O·R: the user was exposed to the item (O, with propensity θ = P(O = 1))
*and* found it relevant (R). Training on clicks as if they were relevance labels
(``naive``) mistakes "never shown" for "not relevant", which favours popular items.
Inverse-propensity weighting corrects this in expectation:

* ``naive``:   mean[Y·δ1 + (1 − Y)·δ0]
* ``relmf``:   mean[(Y/θ)·δ1 + (1 − Y/θ)·δ0]  (unbiased for the ideal mean[R·δ1 + (1 − R)·δ0])
* ``clipped``: Rel-MF with θ → max(θ, M) (less variance, some bias)
* ``ubpr``:    pairwise, mean over (u, i clicked, j) of (1/θ_ui)(1 − Y_uj/θ_uj)·(−log σ(s_ui − s_uj)),
  optionally non-negative: each term clamped at ≥ −β.

δ1 / δ0 are the pointwise losses of predicting "relevant" / "not relevant" (log loss by
default: δ1 = −log σ(s), δ0 = −log(1 − σ(s)); ``"mse"`` uses (1 − σ(s))² and σ(s)²).
All functions are pure and take tensors; they are tested against hand-computed values
and, for IPS, by simulation (its mean over sampled click matrices matches the ideal loss).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ._base import Defense, DefenseOutcome

__all__ = ["item_propensity", "pointwise_loss", "ubpr_loss", "ideal_loss", "LOSSES", "MNARWeighting"]

LOSSES = ("naive", "relmf", "clipped", "ubpr")


def item_propensity(counts: np.ndarray, eta: float = 0.5, floor: float = 1e-6) -> np.ndarray:
    """θ_i = (n_i / max_j n_j)^η from item interaction counts (items never seen get ``floor``)."""
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or len(n) == 0 or np.any(n < 0):
        raise ConfigError("counts must be a non-empty vector of non-negative numbers", param="counts")
    if not eta > 0:
        raise ConfigError(f"must be > 0, got {eta!r}", param="eta")
    top = n.max()
    if top <= 0:
        raise ConfigError("all item counts are zero", param="counts")
    return np.maximum((n / top) ** eta, floor)


def _deltas(scores: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "log":
        return F.softplus(-scores), F.softplus(scores)  # −log σ(s), −log(1 − σ(s))
    if kind == "mse":
        p = torch.sigmoid(scores)
        return (1 - p) ** 2, p**2
    raise ConfigError(f"must be 'log' or 'mse', got {kind!r}", param="delta")


def ideal_loss(scores: torch.Tensor, relevance: torch.Tensor, *, delta: str = "log") -> torch.Tensor:
    """The loss we would like to minimise if relevance (probabilities γ or labels R) were observed."""
    d1, d0 = _deltas(scores, delta)
    return (relevance * d1 + (1 - relevance) * d0).mean()


def pointwise_loss(
    scores: torch.Tensor,
    clicks: torch.Tensor,
    propensity: torch.Tensor | None = None,
    *,
    loss: str = "naive",
    clip: float = 0.0,
    delta: str = "log",
) -> torch.Tensor:
    """``naive``, ``relmf`` or ``clipped`` (θ → max(θ, ``clip``)) over aligned 1-D tensors."""
    d1, d0 = _deltas(scores, delta)
    y = clicks.to(scores.dtype)
    if loss == "naive":
        w = y
    elif loss in ("relmf", "clipped"):
        if propensity is None:
            raise ConfigError(f"loss {loss!r} needs propensities", param="propensity")
        theta = propensity.to(scores.dtype)
        if loss == "clipped":
            if not 0 < clip <= 1:
                raise ConfigError(f"clipped IPS needs 0 < clip <= 1, got {clip!r}", param="clip")
            theta = theta.clamp_min(clip)
        if torch.any(theta <= 0):
            raise ConfigError("propensities must be > 0", param="propensity")
        w = y / theta
    else:
        raise ConfigError(f"pointwise loss must be naive, relmf or clipped, got {loss!r}", param="loss")
    return (w * d1 + (1 - w) * d0).mean()


def ubpr_loss(
    s_pos: torch.Tensor,
    s_other: torch.Tensor,
    theta_pos: torch.Tensor,
    clicks_other: torch.Tensor,
    theta_other: torch.Tensor,
    *,
    clip: float = 0.0,
    beta: float | None = None,
) -> torch.Tensor:
    """UBPR over sampled triples (u, i clicked, j): (1/θ_ui)(1 − Y_uj/θ_uj)·(−log σ(s_ui − s_uj)).

    ``clip`` floors both propensities; ``beta`` (non-negative UBPR) clamps each term at ≥ −β.
    """
    tp, to = theta_pos, theta_other
    if clip:
        tp, to = tp.clamp_min(clip), to.clamp_min(clip)
    w = (1.0 / tp) * (1.0 - clicks_other.to(s_pos.dtype) / to)
    terms = w * F.softplus(-(s_pos - s_other))
    if beta is not None:
        terms = terms.clamp_min(-float(beta))
    return terms.mean()


class MNARWeighting(Defense):
    """Propensity-weighted training of a sequential victim (the ``mnar`` defense).

    Each next-item cross-entropy term is weighted by 1/max(θ_target, ``clip``), with
    θ_i = (n_i / max n)^η estimated from the training data's item counts — an adaptation of
    ITPS (Damak et al., KDD'22) that counters popularity bias; in an audit it shows how
    debiased training changes attack lift and clean quality.
    """

    name = "mnar"

    def __init__(self, *, eta: float = 0.5, clip: float = 0.1, propensity: np.ndarray | None = None):
        if not 0 < float(clip) <= 1:
            raise ConfigError(f"must be in (0, 1], got {clip!r}", param="clip")
        if not float(eta) > 0:
            raise ConfigError(f"must be > 0, got {eta!r}", param="eta")
        self.eta, self.clip = float(eta), float(clip)
        self.propensity = None if propensity is None else np.asarray(propensity, dtype=np.float64)

    def item_weights(self, train) -> np.ndarray:
        """Weights for item ids 0..N (0 for padding)."""
        counts = np.asarray(train.item_counts(), dtype=np.float64)[1:]
        theta = self.propensity if self.propensity is not None else item_propensity(counts, self.eta)
        if len(theta) != train.num_items:
            raise ConfigError(f"needs one propensity per item ({train.num_items}), got {len(theta)}", param="propensity")
        return np.concatenate([[0.0], 1.0 / np.maximum(theta, self.clip)])

    def train(self, split, *, make_victim, seed: int, rng, progress: bool = False):
        import time

        t0 = time.perf_counter()
        w = self.item_weights(split.train)
        victim = make_victim().fit(split, rng=seed, progress=progress, item_weights=w)
        return victim, DefenseOutcome(info={"eta": self.eta, "clip": self.clip, "max_item_weight": float(w[1:].max()),
                                            "defense_time_s": time.perf_counter() - t0 - victim.fit_info_["wall_time_s"]})
