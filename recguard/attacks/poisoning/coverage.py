"""Coverage attack: fake users that each speak for one region of the genuine users, as a model of
the victim sees them.

A fake profile teaches the victim "after these items comes the target". That lesson reaches a
genuine user only if the fake's contexts resemble the contexts the user's own history produces,
and a top-k metric counts users one by one, so the fakes should resemble *many different*
users rather than the average one. The attack therefore:

1. computes the surrogate's representation of every genuine user (white-box, or a stolen model);
2. splits the users into as many groups as there are fake users (seeded k-means on the
   normalised representations);
3. gives each fake user the items the surrogate finds most probable next for its group's mean
   representation (``selection="specific"`` instead ranks the group's ``pool_factor``·fillers most
   probable items by how specific they are to it: log-probability under the group minus under
   all users), in random order, and places the targets in the usual slots (``order``).

The default (``probable``) was chosen on Amazon Office, two seeds (docs/attacks.md).

Filler selection by a surrogate's predictions follows Huang et al., "Data poisoning attacks to
deep learning based recommender systems" (NDSS'21), who fill each fake user with the items a
surrogate ranks highest for it; spreading the fakes over clusters of genuine users is this
project's variant for top-k exposure.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ConfigError
from ...victims import eval_mode
from ._base import ModelGuidedAttack

SELECTIONS = ("probable", "specific")


class CoverageAttack(ModelGuidedAttack):
    """Fake users whose fillers are a surrogate's predictions for one cluster of genuine users each.

    Args:
        surrogate: a trained victim with the ``white_box`` capability over the same catalogue (the
            audit supplies it, see :class:`~recguard.attacks.poisoning.ModelGuidedAttack`).
        selection: ``"probable"`` (default; the group's most probable items) or ``"specific"`` (the
            group's items most specific to it).
        pool_factor: with ``"specific"``, how many of the group's most probable items, per filler
            slot, compete on specificity (default 4).
        batch_size: users per surrogate forward pass.
        Other arguments: see :class:`~recguard.attacks.poisoning.PoisoningAttack`.
    """

    name = "coverage"

    def __init__(self, surrogate=None, *, selection: str = "probable", pool_factor: float = 4.0, batch_size: int = 2048, **kw):
        super().__init__(surrogate, **kw)
        if selection not in SELECTIONS:
            raise ConfigError(f"must be one of {', '.join(SELECTIONS)}, got {selection!r}", param="selection")
        if isinstance(pool_factor, bool) or not isinstance(pool_factor, (int, float)) or pool_factor < 1:
            raise ConfigError(f"must be a number >= 1, got {pool_factor!r}", param="pool_factor")
        self.selection = selection
        self.pool_factor = float(pool_factor)
        self.batch_size = int(batch_size)

    def requires(self) -> tuple[str, ...]:
        """The surrogate's user representation and its scores of a representation."""
        return ("white_box",)

    def _fill(self, data, slots, targets, rng):
        with eval_mode(self.surrogate), torch.no_grad():
            reps = self._user_reps(data)
            groups = _groups(reps, len(slots), rng)
            logp = self._log_probs(np.stack([reps[groups == g].mean(0) for g in range(groups.max() + 1)] + [reps.mean(0)]))
        group_logp, overall = logp[:-1], logp[-1]
        banned = np.zeros(logp.shape[1], dtype=bool)
        banned[0] = True
        banned[np.asarray(targets, dtype=np.int64)] = True
        out = []
        for f, s in enumerate(slots):
            s = s.copy()
            holes = np.flatnonzero(s == 0)
            g = f % len(group_logp)
            s[holes] = rng.permutation(self._choose(group_logp[g], overall, banned, len(holes)))
            out.append(s)
        return out

    def _choose(self, logp: np.ndarray, overall: np.ndarray, banned: np.ndarray, n: int) -> np.ndarray:
        """``n`` distinct filler items for one group (repeating the best ones if the catalogue is short)."""
        order = np.argsort(-np.where(banned, -np.inf, logp), kind="stable")
        order = order[: int((~banned).sum())]
        if self.selection == "specific":
            pool = order[: max(n, int(np.ceil(self.pool_factor * n)))]
            order = pool[np.argsort(-(logp[pool] - overall[pool]), kind="stable")]
        return np.resize(order[:n], n).astype(np.int64)

    def _user_reps(self, data) -> np.ndarray:
        s = self.surrogate
        x = data.padded(s.max_len)
        parts = [s.differentiable_representation(torch.from_numpy(x[i : i + self.batch_size]).to(s.device)).float().cpu()
                 for i in range(0, len(x), self.batch_size)]
        return torch.cat(parts).numpy()

    def _log_probs(self, reps: np.ndarray) -> np.ndarray:
        """Log-softmax over the catalogue (ids 0..N; 0 and any extra tokens excluded) per representation."""
        s = self.surrogate
        scores = s.score_representation(torch.from_numpy(reps).to(s.device))[:, : s.num_items + 1].float()
        scores[:, 0] = float("-inf")
        return torch.log_softmax(scores, dim=1).cpu().numpy()


def _groups(reps: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Seeded k-means labels of the L2-normalised representations (at most one group per user)."""
    from sklearn.cluster import KMeans

    k = max(1, min(n_groups, len(reps)))
    unit = reps / np.maximum(np.linalg.norm(reps, axis=1, keepdims=True), 1e-12)
    labels = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit_predict(unit)
    _, labels = np.unique(labels, return_inverse=True)  # empty clusters, if any, leave no gaps
    return labels
