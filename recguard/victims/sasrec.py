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
from ._layers import FastDropout, TransformerBlock, attention_bias, attention_mask, fast_dropout, reinitialise

BLOCKS = ("pre_ln", "published")
POSITIONS = ("recent", "first")


@dataclass(frozen=True)
class SASRecConfig(BaseConfig):
    """SASRec settings (the loss fields are :class:`BaseConfig`'s).

    ``block``: ``"pre_ln"`` (x + Attn(LN(x)); x + FFN(LN(x)), dropout on both branches) or
    ``"published"``, the block of SASRec's public PyTorch code that the SASRec-CE paper's code
    (Klenitskiy & Vasilev) reuses: queries from LN(x) but keys and values from x itself, the
    residual taken from LN(x) in both halves, no dropout on the attention output, and the
    query/key/value projections drawn as ``nn.MultiheadAttention`` draws them (Xavier uniform).
    ``positions``: ``"recent"`` (the latest item always has the last position) or ``"first"`` (the
    first item of the window has position 0, as in the published code's right-padded batches).
    """

    num_blocks: int = 2
    num_heads: int = 1
    block: str = "pre_ln"
    positions: str = "recent"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.num_heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by num_heads ({self.num_heads})", param="num_heads")
        if self.block not in BLOCKS:
            raise ConfigError(f"must be one of {', '.join(BLOCKS)}, got {self.block!r}", param="block")
        if self.positions not in POSITIONS:
            raise ConfigError(f"must be one of {', '.join(POSITIONS)}, got {self.positions!r}", param="positions")


class PublishedSASRecBlock(nn.Module):
    """The block of SASRec's public PyTorch code: ``q = LN1(x)``; ``x = q + Attn(q, x, x)``;
    ``y = LN2(x)``; ``y + FFN(y)`` (ReLU, dropout inside the FFN and on the attention weights)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.p = heads, dropout
        self.ln1 = nn.LayerNorm(hidden, eps=1e-8)
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-8)
        self.ff1 = nn.Linear(hidden, hidden)
        self.ff2 = nn.Linear(hidden, hidden)
        self.drop = FastDropout(dropout)

    def draw_projections(self) -> None:
        """Query, key and value weights from Xavier uniform over their joint ``[3D, D]`` matrix, zero biases
        (what ``nn.MultiheadAttention`` does, and what N(0, 0.02) re-initialisation leaves untouched there)."""
        d = self.q.weight.shape[1]
        bound = (6.0 / (d + 3 * d)) ** 0.5
        with torch.no_grad():
            for lin in (self.q, self.kv):
                lin.weight.uniform_(-bound, bound)
                lin.bias.zero_()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        dh = d // self.heads
        y = self.ln1(x)
        q = self.q(y).view(b, l, self.heads, dh).transpose(1, 2)  # [B, H, L, Dh]
        k, v = self.kv(x).view(b, l, 2, self.heads, dh).permute(2, 0, 3, 1, 4)  # 2 × [B, H, L, Dh]
        att = (q @ k.transpose(-1, -2)) * dh**-0.5 + mask  # [B, H, L, L]
        a = fast_dropout(att.softmax(dim=-1), self.p, self.training) @ v
        x = y + self.proj(a.transpose(1, 2).reshape(b, l, d))
        y = self.ln2(x)
        return y + self.drop(self.ff2(self.drop(torch.relu(self.ff1(y)))))


class SASRecModule(nn.Module):
    def __init__(self, num_items: int, cfg: SASRecConfig):
        super().__init__()
        self.num_items = num_items
        self.max_len = cfg.max_len
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_drop = FastDropout(cfg.dropout)
        self.count_from_first = cfg.positions == "first"
        if cfg.block == "published":
            self.blocks = nn.ModuleList(PublishedSASRecBlock(cfg.hidden, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_blocks))
        else:
            self.blocks = nn.ModuleList(
                TransformerBlock(cfg.hidden, cfg.num_heads, cfg.dropout, cfg.hidden, activation="relu") for _ in range(cfg.num_blocks)
            )
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=1e-8)
        self.scale = cfg.hidden**0.5
        # N(0, 0.02) weights, zero biases and padding row, as in the SASRec-CE paper's code
        # (Klenitskiy & Vasilev): on ML-100k it converged in fewer epochs to a better
        # validation NDCG@10 than PyTorch's defaults (benchmarks/batching.py)
        reinitialise(self, 0.02)
        for blk in self.blocks:
            if isinstance(blk, PublishedSASRecBlock):
                blk.draw_projections()

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` final-normalised states at every position of left-padded ``x`` ([B, L])."""
        b, l = x.shape
        valid = x > 0
        if self.count_from_first:  # the first real item has position 0 (capped at the last position)
            pos_emb = self.pos_emb((valid.cumsum(1) - 1).clamp(0, self.max_len - 1))  # [B, L, D]
        else:
            # positions count from the right edge of a max_len window, so the most recent
            # item always has position max_len - 1 whatever the batch's padded length
            pos_emb = self.pos_emb(torch.arange(self.max_len - l, self.max_len, device=x.device))[None]
        h = self.item_emb(x) * self.scale + pos_emb
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
