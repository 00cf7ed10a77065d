"""GRO, a training-time defense against model extraction (Zhang et al., "Defense Against Model
Extraction Attacks on Recommender Systems", WSDM'24, arXiv 2310.16335), for the built-in causal
victims (SASRec, GRU4Rec).

While the victim trains, a *student* of the same architecture learns to imitate the victim's
top-k lists the way an extraction attacker's surrogate does (a margin loss that keeps the list's
order and puts the list above random items). The victim's own loss gains a *swap loss*: for every
rank r of the list, the item whose placement at rank r would raise the student's loss the most
(to first order) is pulled up to the score of the item now there. The victim so learns lists that
its own users still find good (its recommendation loss stays) but that a surrogate imitates badly.

The paper differentiates the student's loss with respect to a one-hot "swap matrix" of shape
(positions, k, items); its gradient at (r, j) is the student loss's gradient at rank r times the
student's score of item j, so the best swap of each rank is the student's highest-scored item
(when that gradient is positive) or its lowest-scored one (when negative). Here that closed form
replaces the dense (positions × k × items) tensor, which does not fit in memory on a real
catalogue. Unlike the published code, a rank whose gradient is zero (the student's margins already
hold there) gets no swap; the published code then pulls up item 1, whatever it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ["GROStep", "best_swaps"]

#: the student's margins (the published values)
LIST_MARGIN = 0.5
NEGATIVE_MARGIN = 0.5


def best_swaps(grad: torch.Tensor, student_scores: torch.Tensor, lists: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each rank of each list, the item whose placement there raises the student's loss the most
    to first order, and whether that raises it at all.

    ``grad`` [P, k]: the student loss's gradient with respect to its score of the item at each rank;
    ``student_scores`` [P, N]; ``lists`` [P, k] (item columns). Placing item j at rank r changes
    the loss by ``grad[r] * (s[j] - s[list[r]])``, largest at the student's highest-scored item
    when ``grad[r] > 0`` and its lowest-scored one when ``grad[r] < 0``. Returns ``(best [P, k],
    raises [P, k] bool)``."""
    s = student_scores.detach()
    best = torch.where(grad > 0, s.argmax(1, keepdim=True), s.argmin(1, keepdim=True))
    raises = grad * (s.gather(1, best) - s.gather(1, lists)) > 0
    return best, raises


class GROStep:
    """The swap loss of one training step, and the student's own step on the same batch.

    Args:
        victim: the victim being trained (builds the student, same architecture and settings).
        num_items: catalogue size.
        lam: weight of the swap loss in the victim's loss (``gro_lambda``).
        k: length of the lists the student imitates (the API's, ``gro_k``).
        positions: at most this many next-item positions of a batch take part (``gro_positions``).
        make_optimizer: ``make_optimizer(module, config)``, the training loop's optimiser for the student.
    """

    def __init__(self, victim, num_items: int, *, lam: float, k: int, positions: int, make_optimizer):
        from ._layers import reinitialise

        self.lam, self.k, self.positions = float(lam), min(int(k), num_items - 1), int(positions)
        student = victim.new_module(num_items)
        if victim.config.init_std is not None:
            reinitialise(student, float(victim.config.init_std))
        self.student = student.to(victim.device)
        self.student.train()
        self.optimizer = make_optimizer(self.student, victim.config)
        self.student_loss = torch.zeros(())  # the last step's, kept on the device

    @classmethod
    def for_victim(cls, victim, num_items: int, make_optimizer) -> GROStep | None:
        """The GRO step of ``victim``'s settings (``gro_lambda``, ``gro_k``, ``gro_positions``); None
        when ``gro_lambda`` is 0; a :class:`ConfigError` for a model that is not causal."""
        cfg = victim.config
        if not cfg.gro_lambda:
            return None
        if not getattr(victim, "causal", True):
            raise ConfigError(f"GRO needs a causal model (SASRec, GRU4Rec); {victim.architecture} is not; set gro_lambda=0",
                              param="gro_lambda")
        return cls(victim, num_items, lam=cfg.gro_lambda, k=cfg.gro_k, positions=cfg.gro_positions, make_optimizer=make_optimizer)

    @staticmethod
    def describe(step: GROStep | None) -> dict:
        """What ``fit_info_`` records of GRO: its settings and the student's last loss ({} when off)."""
        if step is None:
            return {}
        return {"gro": {"lambda": step.lam, "k": step.k, "positions": step.positions,
                        "last_student_loss": float(step.student_loss)}}

    def _positions(self, batch: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, columns) of up to ``positions`` next-item positions of ``batch``, drawn at random."""
        inp, tgt = batch[:, :-1], batch[:, 1:]
        rows, cols = torch.nonzero((tgt > 0) & (inp > 0), as_tuple=True)
        if len(rows) > self.positions:
            pick = torch.randperm(len(rows), generator=gen, device=gen.device)[: self.positions].to(rows.device)
            rows, cols = rows[pick], cols[pick]
        return rows, cols

    def _student_loss(self, scores: torch.Tensor, lists: torch.Tensor, gen: torch.Generator):
        """The student's imitation loss on ``lists`` [P, k] (the victim's top-k), and the list's scores."""
        listed = scores.gather(1, lists)  # [P, k]
        negatives = torch.randint(0, scores.shape[1], lists.shape, generator=gen, device=gen.device).to(lists.device)
        order = F.relu(LIST_MARGIN - (listed[:, :-1] - listed[:, 1:])).mean()
        above = F.relu(NEGATIVE_MARGIN - (listed - scores.gather(1, negatives))).mean()
        return order + above, listed

    def __call__(self, module, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The victim's swap loss (times ``lam``) on ``batch`` [B, L+1]; steps the student on it too."""
        inp = batch[:, :-1]
        rows, cols = self._positions(batch, gen)
        if len(rows) == 0:
            return torch.zeros((), device=batch.device)
        victim_scores = module.logits(module.hidden_states(inp)[rows, cols])[:, 1:]  # [P, N], padding dropped
        lists = victim_scores.detach().topk(self.k, dim=1).indices  # [P, k]
        student_scores = self.student.logits(self.student.hidden_states(inp)[rows, cols])[:, 1:]
        loss, listed = self._student_loss(student_scores, lists, gen)
        (grad,) = torch.autograd.grad(loss, listed, retain_graph=True)  # d loss / d (score at rank r)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.student_loss = loss.detach()
        best, raises = best_swaps(grad, student_scores, lists)
        swap = F.relu(victim_scores.gather(1, lists) - victim_scores.gather(1, best)) * raises
        return self.lam * swap.mean()
