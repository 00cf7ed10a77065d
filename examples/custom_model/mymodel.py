"""A user's own next-item model, made auditable with recguard.TorchVictim.

BagOfRecent: the next-item scores are the dot products of every item embedding with a
position-weighted mean of the last few items' embeddings. Nothing here is specific to
recguard except the ``fit_fn`` contract: ``fit_fn(module, split, user_weights, rng)``
trains in place and multiplies each user's loss terms by ``user_weights[user]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recguard.victims import TorchVictim


class BagOfRecent(nn.Module):
    def __init__(self, num_items: int, dim: int = 16, window: int = 4):
        super().__init__()
        self.window = window
        self.emb = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.ones(window))
        self.bias = nn.Parameter(torch.zeros(num_items + 1))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.emb.weight, std=0.1)
        with torch.no_grad():
            self.emb.weight[0].zero_()
            self.pos.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L] left-padded -> [B, N + 1]
        recent = x[:, -self.window:]
        w = self.pos[-recent.shape[1]:][None, :, None] * (recent > 0).unsqueeze(-1)
        h = (self.emb(recent) * w).sum(1) / w.sum(1).clamp_min(1e-6)
        return h @ self.emb.weight.T + self.bias


def fit_fn(module: BagOfRecent, split, user_weights, rng: np.random.Generator, epochs: int = 30) -> None:
    """Every (last-window prefix -> next item) pair of the training sequences, cross-entropy
    weighted per user. Weights are re-initialised first, so a seed fixes the whole run."""
    module.reset_parameters()
    train = split.train
    xs, ys, us = [], [], []
    for u in range(train.num_users):
        s = train[u]
        for t in range(1, len(s)):
            xs.append(np.pad(s[max(0, t - module.window):t], (module.window - min(t, module.window), 0)))
            ys.append(s[t])
            us.append(u)
    x, y = torch.tensor(np.array(xs)), torch.tensor(np.array(ys))
    w = torch.ones(train.num_users) if user_weights is None else torch.as_tensor(user_weights, dtype=torch.float32)
    wu = w[torch.tensor(us)]
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(y)))
        for b in order.split(256):
            logits = module(x[b])
            logits[:, 0] = float("-inf")
            loss = (nn.functional.cross_entropy(logits, y[b], reduction="none") * wu[b]).sum() / wu[b].sum().clamp_min(1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()


def make_victim(num_items: int = 40) -> TorchVictim:
    """A fresh, unfitted victim (the factory the contract checks call)."""
    return TorchVictim(BagOfRecent(num_items), num_items=num_items, max_len=8, fit_fn=fit_fn, device="cpu")
