"""Distil a surrogate from an extraction transcript (PROTOCOLS §4).

For every queried prefix with returned list r1..rk (best first) and k sampled negatives
n1..nk (never padding, never listed items, never the prefix's own items):

    L = mean max(0, s[r_{i+1}] − s[r_i] + λ1) + mean max(0, s[n_i] − s[r_i] + λ2)

plus the few-shot paper's bidirectional repair, weighted by ``repair``: raise listed items
that fall outside the surrogate's own top-k above its k-th score, and lower the
surrogate's top-k items that the victim did not list below the victim's last listed item.

Causal surrogates (SASRec, GRU4Rec) score every prefix of a sequence in one forward pass.
BERT4Rec sees the whole sequence, so it is trained on prefixes ending in [MASK], a few
random prefixes per sequence per step. The attacker holds out 5% of its own generated
sequences and keeps the epoch with the best agreement with the victim's lists on them —
no real data is involved.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..._finite import check_loss
from ..._rng import RNGLike, as_generator, derive_seed, torch_seeded
from ...data import pad_from_csr
from ...errors import ConfigError
from ...victims import Trainer, capabilities, eval_mode, require
from ._generate import Transcript

__all__ = ["distill", "ranking_loss"]


def ranking_loss(scores: torch.Tensor, lists: torch.Tensor, negatives: torch.Tensor, *, lam1: float = 0.5, lam2: float = 0.5,
                 repair: float = 0.0, seen: torch.Tensor | None = None) -> torch.Tensor:
    """The distillation loss for rows of full scores ``[P, N+1]``, lists ``[P, k]`` and negatives ``[P, k]``.

    ``seen`` ([P, L] item ids, 0 = none) are each prefix's own items: the victim's lists never
    contain them, so the repair terms leave them out of the surrogate's top-k as well."""
    s_r = scores.gather(1, lists)  # [P, k]
    s_n = scores.gather(1, negatives)
    loss = torch.relu(s_r[:, 1:] - s_r[:, :-1] + lam1).mean() + torch.relu(s_n - s_r + lam2).mean()
    if repair > 0:
        k = lists.shape[1]
        masked = scores.detach().clone()
        masked[:, 0] = float("-inf")
        if seen is not None:
            masked.scatter_(1, seen, float("-inf"))
        top_val, top_idx = torch.topk(masked, k, dim=1)
        kth = top_val[:, -1:]  # surrogate's k-th score
        listed_in_top = (lists[:, :, None] == top_idx[:, None, :]).any(-1)  # [P, k] victim items the surrogate has
        top_in_list = (top_idx[:, :, None] == lists[:, None, :]).any(-1)  # [P, k] surrogate items the victim listed
        up = torch.relu(kth - s_r + lam1) * (~listed_in_top)
        s_top = scores.gather(1, top_idx)
        down = torch.relu(s_top - s_r[:, -1:] + lam2) * (~top_in_list)
        loss = loss + repair * (up.sum() / (~listed_in_top).sum().clamp_min(1) + down.sum() / (~top_in_list).sum().clamp_min(1))
    return loss


def _negatives(lists: torch.Tensor, n_items: int, gen: torch.Generator) -> torch.Tensor:
    """k uniform items per row, redrawn where they hit the list (a few rounds)."""
    neg = torch.randint(1, n_items + 1, lists.shape, generator=gen)
    for _ in range(6):
        bad = (neg[:, :, None] == lists[:, None, :]).any(-1)
        if not bad.any():
            break
        neg[bad] = torch.randint(1, n_items + 1, (int(bad.sum()),), generator=gen)
    return neg


def _left_pad(seqs: np.ndarray, lengths: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned rows → left-padded ``[n, max_len]`` of the last ``max_len`` items, and the column
    offset that maps a left-aligned position t to its padded column (t + offset)."""
    n, L = seqs.shape
    out = pad_from_csr(seqs.reshape(-1), np.arange(n, dtype=np.int64) * L, lengths, max_len)
    return out, max_len - lengths


def agreement_on(victim_lists: np.ndarray, surrogate_lists: np.ndarray, k: int) -> float:
    a, b = victim_lists[:, :k], surrogate_lists[:, :k]
    return float(np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(a, b)])) if len(a) else 0.0


def distill(
    surrogate,
    transcript: Transcript,
    num_items: int,
    *,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 32,
    lam1: float = 0.5,
    lam2: float = 0.5,
    repair: float = 0.0,
    holdout: float = 0.05,
    patience: int = 5,
    rng: RNGLike = None,
    progress: bool | None = None,
):
    """Train ``surrogate`` (an unfitted victim with the ``distill`` capability: one of recguard's
    architectures or a wrapped model from a factory) on ``transcript``; returns it fitted.

    Causal surrogates with hidden states train on every prefix of a sequence in one pass;
    others on sampled prefixes. ``fit_info_`` records epochs, the held-out agreement@10 with
    the victim's lists on the attacker's own generated sequences, and timings.
    """
    require(surrogate, ["distill"], who="distillation")
    gen_np = as_generator(rng)
    seed = derive_seed(gen_np)
    causal = bool(getattr(surrogate, "causal", False)) and {"hidden_states", "white_box"} <= capabilities(surrogate)
    lengths = transcript.lengths
    usable = np.flatnonzero(lengths >= 1)
    if len(usable) < 2:
        raise ConfigError("the transcript has fewer than 2 queried sequences", param="transcript")
    perm = gen_np.permutation(usable)
    n_hold = max(1, int(round(holdout * len(perm)))) if holdout > 0 else 0
    hold, train_rows = perm[:n_hold], perm[n_hold:]
    hold_pairs = _holdout_pairs(transcript, hold, gen_np)
    max_len = surrogate.max_len
    device = surrogate.device
    t0 = time.perf_counter()
    name = getattr(surrogate, "architecture", type(surrogate).__name__)
    with torch_seeded(seed):
        gen_t = torch.Generator().manual_seed(seed % (2**63 - 1))
        surrogate.build(num_items)
        opt = torch.optim.AdamW(surrogate.parameters(), lr=lr, betas=(0.9, 0.98))

        def run_epoch(epoch: int) -> float:
            total, count = 0.0, 0
            order = gen_np.permutation(train_rows)
            with eval_mode(surrogate, training=True):
                for s in range(0, len(order), batch_size):
                    rows = order[s : s + batch_size]
                    if causal:
                        loss = _causal_batch_loss(surrogate, transcript, rows, max_len, num_items, gen_t, device, lam1, lam2, repair)
                    else:
                        loss = _prefix_batch_loss(surrogate, transcript, rows, max_len, num_items, gen_np, gen_t, device,
                                                  lam1, lam2, repair)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += check_loss(float(loss.detach()), f"distilling into {name}", epoch=epoch, lr=lr)
                    count += 1
            return total / max(1, count)

        trainer = Trainer(epochs=epochs, patience=patience, progress=progress, desc="distil", score_key="holdout_agreement@10",
                          score_label="agree")
        record = trainer.run(surrogate, run_epoch, validate=(lambda: _holdout_agreement(surrogate, hold_pairs)) if n_hold else None)
    surrogate.seed_ = seed
    surrogate.history_ = record.history
    surrogate.fit_info_ = {
        "epochs_run": len(record.history), "best_epoch": record.best_epoch, "holdout_agreement@10": record.best_score,
        "train_pairs": int(lengths[train_rows].sum()), "wall_time_s": time.perf_counter() - t0, "seed": seed,
        "device": str(device),
    }
    surrogate.data_fingerprint_ = None
    return surrogate


def _causal_batch_loss(surrogate, tr: Transcript, rows, max_len, num_items, gen_t, device, lam1, lam2, repair):
    seqs, lengths = tr.seqs[rows], tr.lengths[rows]
    x, offset = _left_pad(seqs, lengths, max_len)
    xt = torch.from_numpy(x).to(device)
    h = surrogate.hidden_states(xt)  # [B, L, D]
    # position t (left-aligned) sits at padded column t + offset; only the last max_len prefixes are visible
    cols = np.arange(max_len)[None, :] - offset[:, None]  # left-aligned index of each padded column
    valid = (cols >= 0) & (cols < lengths[:, None])
    b_idx, c_idx = np.nonzero(valid)
    t_idx = cols[b_idx, c_idx]
    lists = torch.from_numpy(tr.lists[rows][b_idx, t_idx]).to(device)  # [P, k]
    hp = h[torch.from_numpy(b_idx).to(device), torch.from_numpy(c_idx).to(device)]  # [P, D]
    scores = surrogate.score_representation(hp)
    neg = _negatives(lists.cpu(), num_items, gen_t).to(device)
    seen = None
    if repair > 0:  # the items of each prefix: its row up to (and including) its own column
        rows_x = xt[torch.from_numpy(b_idx).to(device)]  # [P, max_len]
        upto = torch.arange(max_len, device=device)[None, :] <= torch.from_numpy(c_idx).to(device)[:, None]
        seen = rows_x * upto
    return ranking_loss(scores, lists, neg, lam1=lam1, lam2=lam2, repair=repair, seen=seen)


def _prefix_batch_loss(surrogate, tr: Transcript, rows, max_len, num_items, gen_np, gen_t, device, lam1, lam2, repair,
                       per_seq: int = 4):
    lists, prefixes = [], []
    for r in rows:
        L = int(tr.lengths[r])
        for t in gen_np.integers(0, L, size=min(per_seq, L)):
            prefixes.append(tr.seqs[r, : t + 1])
            lists.append(tr.lists[r, t])
    from ...victims import as_batch

    x = as_batch(prefixes, max_len, num_items).to(device)
    scores = surrogate.differentiable_score(x)
    lt = torch.from_numpy(np.stack(lists)).to(device)
    neg = _negatives(lt.cpu(), num_items, gen_t).to(device)
    return ranking_loss(scores, lt, neg, lam1=lam1, lam2=lam2, repair=repair, seen=x if repair > 0 else None)


def _holdout_pairs(tr: Transcript, rows, gen_np, per_seq: int = 2) -> tuple[list[np.ndarray], np.ndarray]:
    """A fixed sample of held-out (prefix, victim list) pairs, drawn once before training."""
    prefixes, lists = [], []
    for r in rows:
        L = int(tr.lengths[r])
        for t in gen_np.choice(L, size=min(per_seq, L), replace=False):
            prefixes.append(tr.seqs[r, : t + 1])
            lists.append(tr.lists[r, t])
    return prefixes, (np.stack(lists) if lists else np.zeros((0, tr.lists.shape[2]), np.int64))


@torch.no_grad()
def _holdout_agreement(surrogate, pairs) -> float:
    prefixes, lists = pairs
    if not prefixes:
        return 0.0
    return agreement_on(lists, surrogate.recommend(prefixes, k=10), 10)
