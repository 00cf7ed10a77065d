"""BERT4Rec (Sun et al., CIKM'19): bidirectional self-attention trained with cloze masking.

Items are replaced by a ``[MASK]`` token (id ``num_items + 1``) with probability
``mask_prob``; the model predicts them with a full softmax over the catalogue (or a
sampled loss, see :mod:`recguard.victims._objective`). At
inference a ``[MASK]`` is appended after the history and its prediction ranks items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._base import SequentialVictim, register, prediction_terms
from ._config import BaseConfig
from ._layers import (POSITIONS, FastDropout, PostLNTransformerBlock, TransformerBlock, attention_bias, attention_mask, reinitialise,
                      window_position_embeddings)

BLOCKS = ("pre_ln", "post_ln")
HEADS = ("transform", "tied")


@dataclass(frozen=True)
class BERT4RecConfig(BaseConfig):
    """BERT4Rec settings (the loss fields are :class:`BaseConfig`'s).

    ``block``: ``"pre_ln"`` (x + Attn(LN(x)); x + FFN(LN(x)), then a final LayerNorm) or ``"post_ln"``
    (HuggingFace's ``BertLayer``: LN(x + Attn(x)); LN(x + FFN(x)), no final LayerNorm, every Linear and
    Embedding weight from N(0, 0.02)), the model the SASRec-CE paper's code (Klenitskiy & Vasilev)
    builds BERT4Rec from. ``head``: ``"transform"`` (BERT4Rec's GELU projection and LayerNorm before the
    tied output, with an output bias) or ``"tied"`` (the last states times the item embeddings, no bias,
    as that code does). ``positions``: ``"recent"`` (the latest item has the last position) or
    ``"first"`` (the first item of the window has position 0, as in that code's right-padded batches).
    """

    num_blocks: int = 2
    num_heads: int = 2
    mask_prob: float = 0.2
    dropout: float = 0.1
    block: str = "pre_ln"
    head: str = "transform"
    positions: str = "recent"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in (("block", BLOCKS), ("head", HEADS), ("positions", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}", param=name)
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"must be in (0, 1), got {self.mask_prob!r}", param="mask_prob")
        if self.hidden % self.num_heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by num_heads ({self.num_heads})", param="num_heads")


class BERT4RecModule(nn.Module):
    def __init__(self, num_items: int, cfg: BERT4RecConfig):
        super().__init__()
        self.num_items = num_items
        self.mask_id = num_items + 1
        self.max_len = cfg.max_len
        self.item_emb = nn.Embedding(num_items + 2, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.emb_norm = nn.LayerNorm(cfg.hidden, eps=1e-8)
        self.emb_drop = FastDropout(cfg.dropout)
        self.count_from_first = cfg.positions == "first"
        block = PostLNTransformerBlock if cfg.block == "post_ln" else TransformerBlock
        self.blocks = nn.ModuleList(
            block(cfg.hidden, cfg.num_heads, cfg.dropout, 4 * cfg.hidden, activation="gelu") for _ in range(cfg.num_blocks)
        )
        # post-LN blocks end normalised already
        self.final_norm = nn.Identity() if cfg.block == "post_ln" else nn.LayerNorm(cfg.hidden, eps=1e-8)
        self.transform_head = cfg.head == "transform"
        if self.transform_head:
            self.out_proj = nn.Linear(cfg.hidden, cfg.hidden)
            self.out_norm = nn.LayerNorm(cfg.hidden, eps=1e-8)
            self.out_bias = nn.Parameter(torch.zeros(num_items + 1))
        else:
            self.out_bias = None
        if cfg.block == "post_ln":  # HuggingFace BERT's initialisation
            reinitialise(self, 0.02)
        else:
            nn.init.trunc_normal_(self.item_emb.weight, std=0.02)
            nn.init.trunc_normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` output-head states at every position of left-padded ``x`` (may contain [MASK])."""
        valid = x > 0  # [MASK] counts as an item
        pos_emb = window_position_embeddings(self.pos_emb, valid, self.count_from_first)
        h = self.emb_drop(self.emb_norm(self.item_emb(x) + pos_emb)) * valid.unsqueeze(-1)
        mask = attention_bias(attention_mask(valid, causal=False), h.dtype)  # additive, shared by the blocks
        for blk in self.blocks:
            h = blk(h, mask)
        h = self.final_norm(h)
        return self.out_norm(F.gelu(self.out_proj(h))) if self.transform_head else h

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        # the history followed by one [MASK]: its state predicts the next item
        masked = torch.cat([x[:, 1:] if x.shape[1] >= self.max_len else x, torch.full_like(x[:, :1], self.mask_id)], dim=1)
        return self.hidden_states(masked)[:, -1]  # [B, D]

    def logits(self, rep: torch.Tensor) -> torch.Tensor:
        scores = rep @ self.item_emb.weight[: self.num_items + 1].T  # [B, N + 1]
        return scores if self.out_bias is None else scores + self.out_bias

    def output_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[: self.num_items + 1]

    def named_layers(self):
        yield "item_embedding", self.item_emb
        for i, blk in enumerate(self.blocks):
            yield f"block.{i}", blk
        yield "final_norm", self.final_norm
        if self.transform_head:
            yield "output", self.out_norm


@register
class BERT4Rec(SequentialVictim):
    """BERT4Rec victim (cloze-masked bidirectional transformer)."""

    architecture = "bert4rec"
    Config = BERT4RecConfig
    causal = False

    def new_module(self, num_items: int) -> nn.Module:
        return BERT4RecModule(num_items, self.config)

    def training_loss(self, module, batch, weights, gen, item_weights):
        x = batch[:, -self.config.max_len :]
        valid = x > 0
        r = torch.rand(x.shape, generator=gen, device=x.device)
        masked = (r < self.config.mask_prob) & valid
        # every sequence predicts at least one item: its last one when the draw masked none
        masked[:, -1] |= ~masked.any(1) & valid[:, -1]
        inp = torch.where(masked, torch.full_like(x, module.mask_id), x)
        h, t, w = prediction_terms(module.hidden_states(inp), x, weights, masked, item_weights)  # [P, D], [P], [P]
        return self.objective(h, module.item_emb.weight, t - 1, w, gen, bias=module.out_bias)
