"""SASRec (Kang & McAuley, ICDM'18): causal self-attention over the item history.

Trained with full-softmax cross-entropy at every position on catalogues below the measured
crossover (Klenitskiy & Vasilev, RecSys'23 show it beats the original BCE with one negative)
and with sampled softmax above it; every loss of :mod:`recguard.victims._objective` is
available (``loss="ce" | "sampled_ce" | "gbce" | "bce"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ._base import SequentialVictim, register
from ._config import BaseConfig
from ._layers import FastDropout, TransformerBlock, attention_bias, attention_mask, reinitialise


@dataclass(frozen=True)
class SASRecConfig(BaseConfig):
    """SASRec settings (the loss fields are :class:`BaseConfig`'s)."""

    num_blocks: int = 2
    num_heads: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.num_heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by num_heads ({self.num_heads})", param="num_heads")


class SASRecModule(nn.Module):
    def __init__(self, num_items: int, cfg: SASRecConfig):
        super().__init__()
        self.num_items = num_items
        self.max_len = cfg.max_len
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_drop = FastDropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.hidden, cfg.num_heads, cfg.dropout, cfg.hidden, activation="relu") for _ in range(cfg.num_blocks)
        )
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=1e-8)
        self.scale = cfg.hidden**0.5
        # N(0, 0.02) weights, zero biases and padding row, as in the SASRec-CE paper's code
        # (Klenitskiy & Vasilev): on ML-100k it converged in fewer epochs to a better
        # validation NDCG@10 than PyTorch's defaults (benchmarks/batching.py)
        reinitialise(self, 0.02)

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` final-normalised states at every position of left-padded ``x`` ([B, L])."""
        b, l = x.shape
        valid = x > 0
        # positions count from the right edge of a max_len window, so the most recent
        # item always has position max_len - 1 whatever the batch's padded length
        pos = torch.arange(self.max_len - l, self.max_len, device=x.device)
        h = self.item_emb(x) * self.scale + self.pos_emb(pos)[None]
        h = self.emb_drop(h) * valid.unsqueeze(-1)
        mask = attention_bias(attention_mask(valid, causal=True), h.dtype)  # additive, shared by the blocks
        for blk in self.blocks:
            h = blk(h, mask) * valid.unsqueeze(-1)
        return self.final_norm(h)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x)[:, -1]  # [B, D]

    def logits(self, rep: torch.Tensor) -> torch.Tensor:
        return rep @ self.item_emb.weight.T  # [B, N + 1]

    def output_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def named_layers(self):
        yield "item_embedding", self.item_emb
        for i, blk in enumerate(self.blocks):
            yield f"block.{i}", blk
        yield "final_norm", self.final_norm


@register
class SASRec(SequentialVictim):
    """SASRec victim. ``SASRec(max_len=200, hidden=64).fit(data, rng=0)``."""

    architecture = "sasrec"
    Config = SASRecConfig

    def new_module(self, num_items: int) -> nn.Module:
        return SASRecModule(num_items, self.config)

    def training_loss(self, module, batch, weights, gen, item_weights):
        h, t, w = self._next_item_terms(module, batch, weights, item_weights)  # [P, D], [P], [P]
        return self.objective(h, module.item_emb.weight, t - 1, w, gen)
