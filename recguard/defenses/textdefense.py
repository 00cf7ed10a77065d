"""What the text-reading defenses (LLM4Dec, LoRec; Zhang et al., SIGIR'24, PROTOCOLS §3) share:
the defender's simulated *known* attack, the user-text embeddings, the positive-unlabeled loss
and the MLP detector head.

Labels are positive-unlabeled: the simulated fakes are 1, every user of the (possibly already
poisoned) training data is 0. The injected users' true labels are never read, so no epoch,
threshold or setting can be tuned on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import SequenceData
from ..errors import ConfigError
from ._base import Defense
from .text import TextEncoder, domain_for, item_texts, user_prompts

__all__ = ["TextDefense", "DetectorHead", "refresh_batchnorm", "pu_loss"]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class DetectorHead(nn.Module):
    """LLM4Dec's MLP: Linear→GELU, [Dropout→Linear→GELU]×n, Linear(→128)→BatchNorm→Dropout→GELU→Linear(→1).

    Returns logits ``[B]`` (apply a sigmoid for probabilities)."""

    def __init__(self, d_in: int, hidden: int = 256, n_hidden: int = 1, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.GELU()]
        for _ in range(n_hidden):
            layers += [nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()]
        layers += [nn.Linear(hidden, 128), nn.BatchNorm1d(128), nn.Dropout(dropout), nn.GELU(), nn.Linear(128, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@torch.no_grad()
def refresh_batchnorm(module: nn.Module, batches) -> None:
    """Set BatchNorm running statistics to the exact average over ``batches`` (calls of
    ``module``'s forward given each batch's args), so eval-mode predictions do not depend on
    how many optimiser steps the running averages had to settle (few, on small data)."""
    bns = [m for m in module.modules() if isinstance(m, BATCH_NORMS)]
    if not bns:
        return
    was = module.training
    module.eval()
    saved = [(bn, bn.momentum) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    try:
        for args in batches:
            module(*args)
    finally:
        for bn, mom in saved:
            bn.momentum = mom
        module.train(was)


def pu_loss(logits: torch.Tensor, y: torch.Tensor, lam1: float = 0.5, pos_weight: float = 1.0) -> torch.Tensor:
    """Mean of BCE(p, y) + λ1·[y = 0]·H(p), H the binary entropy of p = sigmoid(logits);
    ``pos_weight`` multiplies the BCE of label-1 rows."""
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if pos_weight != 1.0:
        bce = bce * torch.where(y > 0, torch.full_like(y, pos_weight), torch.ones_like(y))
    p = torch.sigmoid(logits)
    ent = p * F.softplus(-logits) + (1 - p) * F.softplus(logits)  # -p·log p - (1-p)·log(1-p), stable
    return (bce + lam1 * (y == 0).float() * ent).mean()



# ------------------------------------------------------------------ shared base
class TextDefense(Defense):
    """What LLM4Dec and LoRec share: the simulated known attack and the user-text embeddings."""

    reads_text = True

    def __init__(
        self,
        *,
        known: str | Sequence[str] = "random",
        known_budget: float = 0.01,
        known_targets: str | Sequence[int] = "unpopular",
        num_known_targets: int = 5,
        known_groups: int = 1,
        encoder: str = "minilm",
        encoder_options: dict | None = None,
        user_text: str = "prompt",
        domain: str | None = None,
        id_tokens: bool = False,
        item_text: str = "title",
        lam1: float = 0.5,
        lr: float = 1e-2,
        weight_decay: float = 5e-4,
        batch_size: int = 256,
        balance: bool = False,
        progress: bool = False,
    ):
        families = tuple(f.strip() for f in (known.replace("+", ",").split(",") if isinstance(known, str) else known))
        bad = [f for f in families if f not in ("random", "popular", "bandwagon", "segment")] or ([] if families else [known])
        if bad:
            raise ConfigError(
                f"known attack must be random, popular or segment, or several joined by '+' (attacks the defender can "
                f"simulate without a model), got {known!r}", param="known",
            )
        if item_text not in ("title", "title+categories"):
            raise ConfigError(f"must be 'title' or 'title+categories', got {item_text!r}", param="item_text")
        if not 0 < float(known_budget) <= 0.5:
            raise ConfigError(f"must be in (0, 0.5], got {known_budget!r}", param="known_budget")
        if user_text not in ("prompt", "items"):
            raise ConfigError(f"must be 'prompt' (LoRec's text, encoded whole) or 'items' (mean of title embeddings), got {user_text!r}",
                              param="user_text")
        self.known_families, self.known, self.known_budget = families, "+".join(families), float(known_budget)
        self.item_text = item_text
        self.known_targets, self.num_known_targets = known_targets, int(num_known_targets)
        if isinstance(known_groups, bool) or not isinstance(known_groups, int) or known_groups < 1:
            raise ConfigError(f"must be a positive integer, got {known_groups!r}", param="known_groups")
        self.known_groups = known_groups
        self.encoder_name, self.encoder_options = encoder, dict(encoder_options or {})
        self.user_text, self.domain, self.id_tokens = user_text, domain, bool(id_tokens)
        self.lam1, self.lr, self.weight_decay, self.batch_size = float(lam1), float(lr), float(weight_decay), int(batch_size)
        self.balance = bool(balance)
        self.progress = progress
        self._encoder: TextEncoder | None = None

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.encoder_name, **self.encoder_options)
        return self._encoder

    def settings(self) -> dict:
        """Options and, once texts were built, how many items each text source described."""
        return {"text_sources": getattr(self, "text_sources_", None), "known": self.known, "item_text": self.item_text,
                **({"known_groups": self.known_groups} if self.known_groups > 1 else {}),
                "known_budget": self.known_budget, "encoder": self.encoder_name, "user_text": self.user_text, "balance": self.balance}

    def simulate_known(self, train: SequenceData, rng: np.random.Generator, max_len: int) -> list[np.ndarray]:
        """Fake sequences of the defender's own simulated attack (labels 1). LLM4Dec only learns from
        them; LoRec also adds them to the victim's training data when ``inject_known`` is set. With
        several known families the budget is shared equally among them, each with its own targets;
        with ``known_groups`` > 1 each family's share is split again into that many groups, each
        promoting targets of its own, so a detector cannot learn one campaign's target items."""
        from ..attacks.poisoning import make_attack

        out: list[np.ndarray] = []
        share = self.known_budget / (len(self.known_families) * self.known_groups)
        for family in self.known_families:
            for _ in range(self.known_groups):
                attack = make_attack(family, budget=share, targets=self.known_targets, num_targets=self.num_known_targets,
                                     max_profile_length=max_len)
                res = attack.poison(train, rng=rng)
                out += [np.asarray(res.data[u]) for u in res.fake_users]
        return out

    def text_embeddings(self, train: SequenceData, known: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of every training user's text and of the known fakes' text."""
        self.text_sources_: dict = {}
        titles = item_texts(train.meta, train.num_items, id_tokens=self.id_tokens, counts=self.text_sources_,
                            categories=self.item_text == "title+categories")
        domain = self.domain or domain_for(train.name)
        enc = self.encoder
        if self.user_text == "items":
            item_emb = enc.encode(titles[1:], progress=self.progress)
            item_emb = np.vstack([np.zeros((1, item_emb.shape[1]), np.float32), item_emb])

            def pool(seq):
                return item_emb[np.asarray(seq, dtype=np.int64)].mean(0)

            eu = np.stack([pool(train[u]) for u in range(train.num_users)])
            ek = np.stack([pool(s) for s in known]) if known else np.zeros((0, item_emb.shape[1]), np.float32)
            return eu.astype(np.float32), ek.astype(np.float32)
        texts = user_prompts(train, titles, domain)
        texts_k = user_prompts(known, titles, domain)
        emb = enc.encode(texts + texts_k, progress=self.progress)
        return emb[: len(texts)], emb[len(texts) :]

    def pos_weight(self, n_unlabeled: int, n_known: int) -> float:
        """Weight of a known fake's BCE term: unlabeled/known when ``balance`` (both sides then weigh
        the same in total), else 1 as in the paper. Balancing makes p near 0.5 for ambiguous users,
        so LoRec's rule (flag p > mean only while fewer than N/3 are flagged) skips most updates."""
        return n_unlabeled / n_known if self.balance and n_known else 1.0

    def make_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)


