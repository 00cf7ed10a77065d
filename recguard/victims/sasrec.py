"""SASRec (Kang & McAuley, ICDM'18): causal self-attention over the item history.

Trained with full-softmax cross-entropy at every position on catalogues below the measured
crossover (Klenitskiy & Vasilev, RecSys'23 show it beats the original BCE with one negative)
and with sampled softmax above it; every loss of :mod:`recguard.victims._objective` is
available (``loss="ce" | "sampled_ce" | "gbce" | "bce"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._base import SequentialVictim, register
from ._config import BaseConfig
from ._layers import (POSITIONS, FastDropout, TransformerBlock, attention_bias, attention_mask, fast_dropout, reinitialise,
                      window_position_embeddings)

BLOCKS = ("pre_ln", "published")
INITS = ("normal", "xavier_normal")
PADDING_KEYS = ("hidden", "attended")


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
    ``init``: ``"normal"`` (every Linear and Embedding weight from N(0, 0.02), zero biases, as the
    SASRec-CE paper's code draws them) or ``"xavier_normal"`` (every weight matrix, the embeddings
    included, from Xavier normal, with the query/key/value projections drawn as one ``[3D, D]``
    matrix; biases and LayerNorm at PyTorch's defaults; what RecTools, the SASRec that eSASRec
    benchmarks, draws before training).
    ``scale_embeddings``: multiply the item embeddings by √hidden before the positions are added
    (SASRec's code and recguard's default); ``False`` adds them unscaled, as RecTools does.
    ``padding_keys`` (``block="published"`` only): ``"hidden"`` (attention never reaches the
    padding) or ``"attended"``: every query also attends the ``max_len − length`` padding
    positions of its window, as RecTools' SASRec does without a key padding mask. Their input is
    zero, so each has the key and value of the projection biases; they enter the softmax as one
    key with ``log(max_len − length)`` added to its score (exact, whatever padding the batch
    has; attention dropout then drops that key's weight as one).
    ``item_dropout``: dropout on the item embedding table itself during training, one mask per step
    over the whole ``[N + 1, D]`` table, shared by the input embeddings and the output layer (each
    item is dropped the same way wherever the step reads it). ``0`` (the default) reads the table as
    it is; RecTools 0.13, the version eSASRec's benchmark trains, drops its item table with the
    model's dropout rate. The whole table then takes a gradient every step, so the item table is
    updated densely at every catalogue size.
    """

    num_blocks: int = 2
    num_heads: int = 1
    block: str = "pre_ln"
    positions: str = "recent"
    init: str = "normal"
    scale_embeddings: bool = True
    padding_keys: str = "hidden"
    item_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.num_heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by num_heads ({self.num_heads})", param="num_heads")
        if self.block not in BLOCKS:
            raise ConfigError(f"must be one of {', '.join(BLOCKS)}, got {self.block!r}", param="block")
        if self.positions not in POSITIONS:
            raise ConfigError(f"must be one of {', '.join(POSITIONS)}, got {self.positions!r}", param="positions")
        if self.init not in INITS:
            raise ConfigError(f"must be one of {', '.join(INITS)}, got {self.init!r}", param="init")
        if self.padding_keys not in PADDING_KEYS:
            raise ConfigError(f"must be one of {', '.join(PADDING_KEYS)}, got {self.padding_keys!r}", param="padding_keys")
        if self.padding_keys == "attended" and self.block != "published":
            raise ConfigError("padding keys are attended only in block='published' (keys and values from x itself); "
                              "set block='published' or padding_keys='hidden'", param="padding_keys")
        if isinstance(self.item_dropout, bool) or not isinstance(self.item_dropout, (int, float)) \
                or not 0.0 <= float(self.item_dropout) < 1.0:
            raise ConfigError(f"must be a number in [0, 1), got {self.item_dropout!r}", param="item_dropout")
        if not isinstance(self.scale_embeddings, bool):
            raise ConfigError(f"must be true or false, got {self.scale_embeddings!r}", param="scale_embeddings")


@torch.no_grad()
def xavier_normal_weights(module: nn.Module) -> None:
    """Every parameter with two or more dimensions from Xavier normal; embedding padding rows zero."""
    for param in module.parameters():
        if param.dim() > 1:
            nn.init.xavier_normal_(param)
    for m in module.modules():
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            m.weight[m.padding_idx].zero_()


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

    def draw_projections(self, distribution: str = "uniform") -> None:
        """Query, key and value weights from Xavier ``distribution`` ("uniform" or "normal") over their
        joint ``[3D, D]`` matrix, zero biases (``nn.MultiheadAttention`` draws them from Xavier uniform,
        which N(0, 0.02) re-initialisation leaves untouched there)."""
        d = self.q.weight.shape[1]
        fan_sum = d + 3 * d
        with torch.no_grad():
            for lin in (self.q, self.kv):
                if distribution == "uniform":
                    bound = (6.0 / fan_sum) ** 0.5
                    lin.weight.uniform_(-bound, bound)
                else:
                    lin.weight.normal_(0.0, (2.0 / fan_sum) ** 0.5)
                lin.bias.zero_()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, padding_log_count: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [B, L, D], ``mask`` the additive attention mask; ``padding_log_count`` ([B], or None: padding
        hidden) adds the window's padding as one key of score ``q·k_pad/√dh + log(count)`` and value ``v_pad``."""
        b, l, d = x.shape
        dh = d // self.heads
        y = self.ln1(x)
        q = self.q(y).view(b, l, self.heads, dh).transpose(1, 2)  # [B, H, L, Dh]
        k, v = self.kv(x).view(b, l, 2, self.heads, dh).permute(2, 0, 3, 1, 4)  # 2 × [B, H, L, Dh]
        att = (q @ k.transpose(-1, -2)) * dh**-0.5 + mask  # [B, H, L, L]
        if padding_log_count is None:
            a = fast_dropout(att.softmax(dim=-1), self.p, self.training) @ v
        else:
            k_pad, v_pad = self.kv.bias.view(2, self.heads, 1, dh)  # the projection of a zero input: [H, 1, Dh] each
            pad_score = (q * k_pad).sum(-1, keepdim=True) * dh**-0.5 + padding_log_count.view(b, 1, 1, 1)  # [B, H, L, 1]
            weights = fast_dropout(torch.cat([pad_score, att], dim=-1).softmax(dim=-1), self.p, self.training)
            a = weights[..., 1:] @ v + weights[..., :1] * v_pad
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
        self.item_drop = float(cfg.item_dropout)
        self.reads_whole_item_table = self.item_drop > 0  # one dropped copy of the whole table per step
        self.count_from_first = cfg.positions == "first"
        self.attend_padding = cfg.padding_keys == "attended"
        if cfg.block == "published":
            self.blocks = nn.ModuleList(PublishedSASRecBlock(cfg.hidden, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_blocks))
        else:
            self.blocks = nn.ModuleList(
                TransformerBlock(cfg.hidden, cfg.num_heads, cfg.dropout, cfg.hidden, activation="relu") for _ in range(cfg.num_blocks)
            )
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=1e-8)
        self.scale = cfg.hidden**0.5 if cfg.scale_embeddings else 1.0
        if cfg.init == "xavier_normal":
            xavier_normal_weights(self)
        else:
            # N(0, 0.02) weights, zero biases and padding row, as in the SASRec-CE paper's code
            # (Klenitskiy & Vasilev): on ML-100k it converged in fewer epochs to a better
            # validation NDCG@10 than PyTorch's defaults (benchmarks/batching.py)
            reinitialise(self, 0.02)
        for blk in self.blocks:
            if isinstance(blk, PublishedSASRecBlock):
                blk.draw_projections("normal" if cfg.init == "xavier_normal" else "uniform")

    def item_table(self) -> torch.Tensor:
        """The ``[N + 1, D]`` item table one training step reads for its inputs and its outputs: the
        embedding weight, with ``item_dropout`` applied while training."""
        return fast_dropout(self.item_emb.weight, self.item_drop, self.training)

    def hidden_states(self, x: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, D]`` final-normalised states at every position of left-padded ``x`` ([B, L]);
        the inputs are read from ``table`` (an :meth:`item_table`) when given, else from the embedding."""
        valid = x > 0
        emb = self.item_emb(x) if table is None else F.embedding(x, table, padding_idx=0)
        h = emb * self.scale + window_position_embeddings(self.pos_emb, valid, self.count_from_first)
        h = self.emb_drop(h) * valid.unsqueeze(-1)
        mask = attention_bias(attention_mask(valid, causal=True), h.dtype)  # additive, shared by the blocks
        if self.attend_padding:  # log of the padding count of each max_len window (-inf when there is none)
            extra = (torch.log((self.max_len - valid.sum(1)).clamp_min(0).to(h.dtype)),)
        else:
            extra = ()
        for blk in self.blocks:
            h = blk(h, mask, *extra) * valid.unsqueeze(-1)
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
        table = module.item_table()  # the embedding weight; with item_dropout, one dropped copy for inputs and outputs
        inputs_from = {"table": table} if module.item_drop else {}
        h, t, w = self._next_item_terms(module, batch, weights, item_weights, **inputs_from)  # [P, D], [P], [P]
        return self.objective(h, table, t - 1, w, gen)
