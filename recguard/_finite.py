"""Guards against non-finite numbers: a diverged model is an error, never a score.

Ranks count the items scored strictly above the target, and NaN never compares greater,
so a NaN model would rank every target first and score perfectly. Every scoring path
(victims' ``score``, the metrics, top-k lists) therefore refuses NaN and +inf scores
(-inf is allowed: it is how items are masked), training loops stop at the first
non-finite loss, and saved weights are checked when they are loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .errors import NonFiniteError

__all__ = ["check_loss", "check_scores", "check_tensors", "check_module"]


def check_loss(value: float, what: str, *, epoch: int | None = None, lr: float | None = None, param: str = "lr") -> float:
    """``value`` if finite, else :class:`NonFiniteError` naming the training run, the epoch and a fix."""
    if math.isfinite(value):
        return value
    at = f" at epoch {epoch}" if epoch is not None else ""
    fix = f"lower the learning rate ({param}={lr:g} now, try {param}={lr / 10:g})" if lr is not None else "lower the learning rate"
    raise NonFiniteError(f"{what} diverged{at}: the loss became {value}; {fix}")


def check_scores(scores: torch.Tensor, who: object) -> torch.Tensor:
    """``scores`` unchanged if they hold no NaN or +inf, else :class:`NonFiniteError` naming ``who``."""
    if scores.is_floating_point():
        bad = torch.isnan(scores) | (scores == float("inf"))
        if bool(bad.any()):
            n = int(bad.sum())
            kind = "NaN" if bool(torch.isnan(scores).any()) else "+inf"
            raise NonFiniteError(f"{_name(who)} produced {n} {kind} score(s) of {scores.numel()}: the model has diverged or "
                                 "its weights are not finite, so its rankings mean nothing; retrain it (e.g. with a lower lr)")
    return scores


def check_tensors(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    """:class:`NonFiniteError` if any floating-point tensor holds NaN or infinities."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"{where}: weight {name!r} holds NaN or infinite values; the model diverged when it was "
                                 "trained and cannot be used. Retrain it (e.g. with a lower lr)")


def check_module(module: torch.nn.Module, where: str) -> None:
    """:func:`check_tensors` over a module's parameters and buffers."""
    check_tensors(dict(module.state_dict()), where)


def _name(who: object) -> str:
    if isinstance(who, str):
        return who
    try:
        return repr(who)
    except Exception:
        return type(who).__name__
