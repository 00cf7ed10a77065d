"""A user's own next-item model, made auditable with recguard.TorchVictim.

BagOfRecent: the state at each position is a position-weighted mean of the embeddings of
the last few items up to it; next-item scores are its dot products with every item
embedding, plus an item bias. Nothing in the model is specific to recguard. What recguard
uses, and what each piece unlocks (docs/custom-models.md has the full table):

- ``forward(x)``: scores — evaluation, black-box attacks, extraction of this model;
- ``representation``, ``item_embeddings``, ``score_representation``: white box — SAE probes,
  the surrogate attack's influence objective;
- ``hidden_states``: the state at every position — LoRec, fast distillation;
- the one ``nn.Embedding`` over item ids: gradients — the surrogate attack, captum attributions;
- ``fit_fn``: retraining — every audit cell; its ``item_weights`` and ``on_epoch_end`` keywords
  let the MNAR and LoRec defenses train it.
"""

from __future__ import annotations

import functools

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

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:  # [B, L] left-padded -> [B, L, D]
        b, l = x.shape
        pad = lambda t: torch.cat([t.new_zeros(b, self.window - 1, *t.shape[2:]), t], dim=1)  # noqa: E731
        windows = pad(self.emb(x)).unfold(1, self.window, 1)  # [B, L, D, W]: the last `window` items up to each position
        w = self.pos * pad(x > 0).unfold(1, self.window, 1)  # [B, L, W]
        return (windows * w.unsqueeze(2)).sum(-1) / w.sum(-1, keepdim=True).clamp_min(1e-6)

    def representation(self, x: torch.Tensor) -> torch.Tensor:  # [B, D]: the state the scores come from
        return self.hidden_states(x)[:, -1]

    def item_embeddings(self) -> torch.Tensor:  # [N + 1, D]
        return self.emb.weight

    def score_representation(self, h: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, N + 1]
        return h @ self.emb.weight.T + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L] -> [B, N + 1]
        return self.score_representation(self.representation(x))


def fit_fn(module: BagOfRecent, split, user_weights, rng: np.random.Generator, *, item_weights=None, on_epoch_end=None,
           epochs: int = 20, max_len: int = 20, batch_size: int = 128) -> None:
    """Cross-entropy on every next item of the training sequences. Each term is multiplied by its
    user's weight and, when given, its target item's weight; after every epoch ``on_epoch_end``
    may hand new user weights or ask to stop. Weights are re-initialised first, so the seed
    recguard sets fixes the whole run."""
    module.reset_parameters()
    train = split.train
    w = torch.ones(train.num_users) if user_weights is None else torch.as_tensor(user_weights, dtype=torch.float32)
    iw = None if item_weights is None else torch.as_tensor(item_weights, dtype=torch.float32)
    seqs = train.padded(max_len + 1)
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    for epoch in range(1, epochs + 1):
        for users in np.array_split(rng.permutation(train.num_users), max(1, train.num_users // batch_size)):
            batch = torch.from_numpy(seqs[users])
            inp, tgt = batch[:, :-1], batch[:, 1:]
            keep = (inp > 0) & (tgt > 0)
            logits = module.score_representation(module.hidden_states(inp)[keep])
            logits[:, 0] = float("-inf")
            terms = w[torch.from_numpy(users)][:, None].expand_as(tgt)[keep]
            if iw is not None:
                terms = terms * iw[tgt[keep]]
            loss = (nn.functional.cross_entropy(logits, tgt[keep], reduction="none") * terms).sum() / terms.sum().clamp_min(1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if on_epoch_end is not None:
            update = on_epoch_end(epoch)
            if update.user_weights is not None:
                w = torch.as_tensor(update.user_weights, dtype=torch.float32)
            if update.stop:
                break


def make_victim(num_items: int = 40, dim: int = 16, max_len: int = 20, epochs: int = 20) -> TorchVictim:
    """A fresh, unfitted victim: the factory that contract checks and ``recguard audit --model mymodel:make_victim`` call."""
    return TorchVictim(BagOfRecent(num_items, dim), num_items=num_items, max_len=max_len, device="cpu", causal=True,
                       max_epochs=epochs, fit_fn=functools.partial(fit_fn, epochs=epochs, max_len=max_len))
