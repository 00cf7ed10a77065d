"""GRU4Rec (Hidasi et al., ICLR'16) with a loss at every position (full softmax or sampled).

Left-padded batches are right-aligned internally so padding never enters the recurrent
state of a real item.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ._base import SequentialVictim, register
from ._config import BaseConfig
from ._layers import FastDropout


@dataclass(frozen=True)
class GRU4RecConfig(BaseConfig):
    num_layers: int = 1
    dropout: float = 0.1


class GRU4RecModule(nn.Module):
    def __init__(self, num_items: int, cfg: GRU4RecConfig):
        super().__init__()
        self.num_items = num_items
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        self.emb_drop = FastDropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, num_layers=cfg.num_layers, batch_first=True,
                          dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def hidden_states(self, x: torch.Tensor, packed: bool | None = None) -> torch.Tensor:
        """``[B, L, D]`` states aligned with left-padded ``x``; zero at padding.

        The GRU reads the sequences right-aligned, so padding only follows the real items. ``packed``
        (default: on a CPU) packs them, skipping the padding's steps; unpacked (the default on a GPU),
        the GRU also runs over the trailing padding, which cannot reach an earlier state, and the
        host never waits for the lengths that packing needs on the host."""
        b, l = x.shape
        lengths = (x > 0).sum(1)
        lengths_c = lengths.clamp_min(1)
        # left-padded → right-padded: row i, column j takes column j + (L - len_i)
        cols = (torch.arange(l, device=x.device)[None] + (l - lengths_c)[:, None]).clamp_max(l - 1)
        right = x.gather(1, cols) * (torch.arange(l, device=x.device)[None] < lengths[:, None])
        e = self.emb_drop(self.item_emb(right))
        if not x.is_cuda if packed is None else packed:
            out, _ = self.gru(pack_padded_sequence(e, lengths_c.cpu(), batch_first=True, enforce_sorted=False))
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=l)  # [B, L, D], right-padded
        else:
            out, _ = self.gru(e)  # [B, L, D]; states past each row's length are never read
        out = self.out(out)
        # back to left alignment
        back = (torch.arange(l, device=x.device)[None] - (l - lengths_c)[:, None]).clamp_min(0)
        left = out.gather(1, back.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
        return left * (x > 0).unsqueeze(-1)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x)[:, -1]

    def logits(self, rep: torch.Tensor) -> torch.Tensor:
        return rep @ self.item_emb.weight.T

    def output_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def named_layers(self):
        # the GRU runs on right-aligned sequences: no sub-module's output is aligned with the
        # left-padded input, so probes read GRU4Rec at its representation only
        return iter(())


@register
class GRU4Rec(SequentialVictim):
    """GRU4Rec victim (next-item loss at every position)."""

    architecture = "gru4rec"
    Config = GRU4RecConfig
    aligned_layers = False

    def new_module(self, num_items: int) -> nn.Module:
        return GRU4RecModule(num_items, self.config)

    def training_loss(self, module, batch, weights, gen, item_weights):
        h, t, w = self._next_item_terms(module, batch, weights, item_weights)
        return self.objective(h, module.item_emb.weight, t - 1, w, gen)
