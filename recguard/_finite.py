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
    # one reduction without temporaries decides: torch's max propagates NaN, and it is +inf
    # exactly when some score is (-inf scores, how items are masked, do not matter)
    if scores.is_floating_point() and scores.numel() and not float(scores.max()) < math.inf:
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


#: Scores held at once by the batched scorers (evaluation, exposure, top-k): 2^22 floats,
#: 16 MB, whatever the catalogue size. Half the 32 MB L3 of the benchmark machine: on Amazon
#: Beauty validation took 2.2 s with this budget (346 users a batch), 2.8 s with 512 users
#: and 3.9 s with 768, the ranking passes being memory-bound.
SCORE_BUDGET = 1 << 22


#: Fewest users per scoring batch: below this, re-reading the item matrix for every batch costs
#: more than the scores' memory saves (from 131k items on the memory grows as 32 × N floats).
MIN_SCORE_ROWS = 32


def score_rows(num_items: int, cap: int = 1024) -> int:
    """Users per scoring batch so that a ``[rows, num_items + 1]`` score matrix stays within
    :data:`SCORE_BUDGET` floats: 1,024 rows on MovieLens, 346 on Amazon Beauty, never fewer
    than :data:`MIN_SCORE_ROWS` (or ``cap``, when that is smaller)."""
    return int(max(min(cap, MIN_SCORE_ROWS), min(cap, SCORE_BUDGET // max(1, num_items + 1))))
