"""Surrogate-guided attack: a white-box surrogate's gradients choose the fillers.

Yue et al. (RecSys'21) craft fake sequences on a surrogate model: profiles alternate
the target with items that push the surrogate toward predicting the target next. For
each filler slot (left to right, all fake users in parallel):

1. put a random allowed item ``a`` in the slot and compute the gradient ``g`` of the
   attack loss toward the next target ``t`` with respect to ``a``'s input embedding ``e``;
2. move against the gradient, ``e' = e − ε·sign(g)`` (ε = the mean absolute embedding
   coordinate, so the step is scale-aware), and take the ``candidates`` items whose
   embeddings are most cosine-similar to ``e'``;
3. score each candidate exactly with the same objective and keep the best.

Two objectives (``objective=``):

- ``"likelihood"``: the surrogate's log-probability of ``t`` after ``prefix + [a]`` — the
  literal reading of "the candidate that most raises the target's score".
- ``"influence"`` (default): a first-order estimate of how much training on the context
  ``c = prefix + [a]`` followed by ``t`` raises ``t``'s score for genuine users. A
  cross-entropy step on (c, t) moves ``t``'s output embedding by ∝ (1 − p(t | c))·r(c), which
  changes a genuine user's score of ``t`` by ∝ (1 − p(t | c))·r(c)·r_u; summed over users:
  J(c) = (1 − p(t | c))·r(c)·r̄ with r̄ the mean genuine user representation. Measured on
  ML-100k (docs/attacks.md), the likelihood objective picks niche items that already
  predict the target — contexts few genuine users share and where the training signal is
  small — and lifted T-HR@50 less than random fillers; the influence objective targets
  typical contexts where the target is not yet predicted.

The surrogate is any white-box victim over the same item space: a model the attacker
trained on public data, the audited model itself (the strongest, white-box case), or
a model stolen by extraction (the black-box chain).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ...data import pad_from_csr
from ...errors import ConfigError
from ...victims import eval_mode
from ...victims import capture
from ._base import ModelGuidedAttack, non_targets


class SurrogateAttack(ModelGuidedAttack):
    """Fake users whose fillers are chosen by a white-box surrogate's gradients.

    Args:
        surrogate: a trained victim with the ``gradients`` capability (and ``white_box`` for
            the influence objective; see :data:`recguard.victims.CAPABILITIES`) and the same
            catalogue as the data — recguard's own victims or a wrapped model; may be given
            later with :meth:`with_surrogate` (the audit does this).
        objective: ``"influence"`` (default) or ``"likelihood"`` (see the module docstring).
        candidates: nearest-embedding candidates scored exactly per slot (default 32).
        pool_fraction: restrict fillers to this most popular share of the non-target items
            (default 1.0 = any item; with the influence objective a restriction hurt on ML-100k,
            see docs/attacks.md).
        batch_size: sequences per surrogate forward pass.
        Other arguments: see :class:`PoisoningAttack`.
    """

    name = "surrogate"

    def __init__(
        self, surrogate=None, *, objective: str = "influence", candidates: int = 32, pool_fraction: float = 1.0,
        batch_size: int = 2048, **kw,
    ):
        super().__init__(surrogate, **kw)
        if objective not in ("influence", "likelihood"):
            raise ConfigError(f"must be 'influence' or 'likelihood', got {objective!r}", param="objective")
        self.objective = objective
        if candidates < 1:
            raise ConfigError("must be >= 1", param="candidates")
        if not 0.0 < pool_fraction <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {pool_fraction!r}", param="pool_fraction")
        self.candidates = int(candidates)
        self.pool_fraction = float(pool_fraction)
        self.batch_size = int(batch_size)

    def requires(self) -> tuple[str, ...]:
        """Capabilities the surrogate needs: input gradients, and for the influence objective the
        user representation too."""
        return ("gradients",) + (("white_box",) if self.objective == "influence" else ())

    # ------------------------------------------------------------------ crafting
    def _fill(self, data, slots, targets, rng):
        t0 = time.perf_counter()
        with eval_mode(self.surrogate):
            seqs = self._craft(np.stack(slots), targets, data, rng)
        self._last_time = time.perf_counter() - t0
        return list(seqs)

    def poison(self, data, *, rng=None):
        res = super().poison(data, rng=rng)
        res.meta["craft_time_s"] = getattr(self, "_last_time", None)
        return res

    def _craft(self, seqs: np.ndarray, targets: np.ndarray, data, rng: np.random.Generator) -> np.ndarray:
        s = self.surrogate
        device = s.device
        emb = s.input_embedding_layer().weight.detach()[: s.num_items + 1].to(device).float()  # [N+1, D]: candidates' inputs
        eps = float(emb[1:].abs().mean())
        emb_n = torch.nn.functional.normalize(emb, dim=1)
        pool = non_targets(data, targets)
        if self.pool_fraction < 1.0:  # fillers only from the most popular items
            counts = data.item_counts()[pool]
            pool = pool[np.argsort(-counts, kind="stable")[: max(self.candidates, int(np.ceil(self.pool_fraction * len(pool))))]]
        allowed = torch.zeros(emb.shape[0], dtype=torch.bool, device=device)
        allowed[torch.from_numpy(pool).to(device)] = True
        self._rbar = self._mean_user_rep(data) if self.objective == "influence" else None
        n_fake, length = seqs.shape
        # next target slot after each position (wrapping to the row's first target)
        for pos in range(length):
            rows = np.flatnonzero(seqs[:, pos] == 0)
            if len(rows) == 0:
                continue
            t_next = np.array([_next_target(seqs[r], pos) for r in rows])
            prefix = _left_pad(seqs[rows, :pos], s.max_len - 1)  # [R, <= max_len - 1]
            used = torch.zeros(len(rows), emb.shape[0], dtype=torch.bool, device=device)
            if pos:
                used.scatter_(1, torch.from_numpy(seqs[rows, :pos]).to(device), True)
            ok = allowed[None, :] & ~used  # [R, N+1]
            init = _sample_allowed(ok, rng)
            grad = self._embedding_grad(np.concatenate([prefix, init[:, None]], 1), t_next)  # [R, D]
            point = emb[torch.from_numpy(init).to(device)] - eps * torch.sign(grad)
            sim = torch.nn.functional.normalize(point, dim=1) @ emb_n.T  # [R, N+1]
            sim[~ok] = float("-inf")
            k = min(self.candidates, int(ok.sum(1).min()))
            cand = torch.topk(sim, k, dim=1).indices.cpu().numpy()  # [R, C]
            cand[:, -1] = init  # the random start competes too
            best = self._best_candidates(prefix, cand, t_next)
            seqs[rows, pos] = best
        return seqs

    def _mean_user_rep(self, data) -> torch.Tensor:
        """Mean representation of the (genuine) users in ``data``, ``[D]``."""
        s = self.surrogate
        x = data.padded(s.max_len)
        total = None
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                r = self._rep(torch.from_numpy(x[i : i + self.batch_size]).to(s.device)).sum(0)
                total = r if total is None else total + r
        return total / max(1, len(x))

    def _rep(self, x: torch.Tensor) -> torch.Tensor:
        return self.surrogate.differentiable_representation(x)

    def _objective(self, x: np.ndarray, t: np.ndarray) -> torch.Tensor:
        """Per-row objective to maximise (differentiable), ``[B]``."""
        s = self.surrogate
        xt = torch.from_numpy(x).to(s.device)
        tt = torch.from_numpy(t).to(s.device)[:, None]
        if self.objective == "likelihood":
            scores = s.differentiable_score(xt)[:, : s.num_items + 1]
            pad = torch.zeros_like(scores, dtype=torch.bool)
            pad[:, 0] = True
            return torch.log_softmax(scores.masked_fill(pad, float("-inf")), dim=1).gather(1, tt).squeeze(1)
        rep = self._rep(xt)  # [B, D]
        scores = s.score_representation(rep)[:, : s.num_items + 1].clone()
        scores[:, 0] = float("-inf")
        p_t = torch.softmax(scores, dim=1).gather(1, tt).squeeze(1)
        return (1.0 - p_t) * (rep @ self._rbar)

    def _embedding_grad(self, x: np.ndarray, t: np.ndarray) -> torch.Tensor:
        """Gradient of the (negated) objective w.r.t. the input embedding of x's last item, ``[R, D]``."""
        layer = self.surrogate.input_embedding_layer()
        n = self.surrogate.num_items
        out = []
        for start in range(0, len(x), self.batch_size):
            xb, tb = x[start : start + self.batch_size], t[start : start + self.batch_size]
            with torch.enable_grad(), capture(layer) as box:
                obj = self._objective(xb, tb)
                e = box.last  # [B, L', D]
                (g,) = torch.autograd.grad(-obj.sum(), e)
            ids = box.inputs[-1][0]  # [B, L'] the ids as the layer saw them, in the model's own layout
            # x's last item is the last real item id in each row (after it may come padding in a right-aligned
            # layout, or a [MASK] token, id N + 1, as in BERT4Rec)
            real = ((ids >= 1) & (ids <= n)).to(torch.int8)
            col = ids.shape[1] - 1 - real.flip(1).argmax(1)
            out.append(g[torch.arange(len(col), device=g.device), col].detach())
        return torch.cat(out)

    @torch.no_grad()
    def _best_candidates(self, prefix: np.ndarray, cand: np.ndarray, t_next: np.ndarray) -> np.ndarray:
        r, c = cand.shape
        x = np.concatenate([np.repeat(prefix, c, axis=0), cand.reshape(-1, 1)], axis=1)
        t = np.repeat(t_next, c)
        value = np.concatenate([
            self._objective(x[i : i + self.batch_size], t[i : i + self.batch_size]).cpu().numpy()
            for i in range(0, len(x), self.batch_size)
        ]).reshape(r, c)
        return cand[np.arange(r), value.argmax(1)]


def _next_target(row: np.ndarray, pos: int) -> int:
    after = np.flatnonzero(row[pos + 1 :] > 0)
    if len(after) and row[pos + 1 + after[0]] > 0:
        return int(row[pos + 1 + after[0]])
    first = np.flatnonzero(row > 0)
    return int(row[first[0]])


def _left_pad(rows: np.ndarray, max_len: int) -> np.ndarray:
    """The last ``max_len`` columns of ``rows`` (already dense, no padding inside)."""
    if rows.shape[1] == 0:
        return np.zeros((rows.shape[0], 0), dtype=np.int64)
    lengths = np.full(rows.shape[0], rows.shape[1], dtype=np.int64)
    starts = np.arange(rows.shape[0], dtype=np.int64) * rows.shape[1]
    return pad_from_csr(rows.reshape(-1), starts, lengths, min(max_len, rows.shape[1]))


def _sample_allowed(ok: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One allowed item id per row, uniformly."""
    out = np.empty(ok.shape[0], dtype=np.int64)
    okn = ok.cpu().numpy()
    for i, row in enumerate(okn):
        out[i] = rng.choice(np.flatnonzero(row))
    return out


class ExtractedSurrogateAttack(SurrogateAttack):
    """The black-box chain: the surrogate-guided attack with a surrogate the audit extracts from
    the clean victim's top-k lists (PROTOCOLS §4), never from its weights."""

    name = "extracted"
    surrogate_source = "extracted"
