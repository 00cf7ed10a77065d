"""Two next-item models that recguard does not ship, written as a user would, wrapped in
``TorchVictim`` exactly as its docstring says. The test suite runs every capability on them,
and audits import them by path (``--model foreign_models:make_narm``).

- :class:`NARM`: a GRU over the valid items (packed, so padding never enters the state) and
  an attention over its states (Li et al., CIKM'17 style), projected bilinearly onto the item
  embeddings.
- :class:`BagMLP`: an MLP over a position-weighted bag of the last few items.

Both expose ``representation``, ``item_embeddings``, ``score_representation`` and
``hidden_states``; their ``fit_fn`` honours user weights, item weights and the epoch callback.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recguard.victims import TorchVictim


def _right_align(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ids -> right-padded ids, lengths, and the gather index that maps back."""
    b, l = x.shape
    lengths = (x > 0).sum(1).clamp_min(1)
    cols = (torch.arange(l, device=x.device)[None] + (l - lengths)[:, None]).clamp_max(l - 1)
    right = x.gather(1, cols) * (torch.arange(l, device=x.device)[None] < (x > 0).sum(1)[:, None])
    back = (torch.arange(l, device=x.device)[None] - (l - lengths)[:, None]).clamp_min(0)
    return right, lengths, back


class NARM(nn.Module):
    def __init__(self, num_items: int, hidden: int = 32):
        super().__init__()
        self.item_emb = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.a1 = nn.Linear(hidden, hidden, bias=False)
        self.a2 = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)
        self.bilinear = nn.Linear(2 * hidden, hidden, bias=False)

    def reset_parameters(self) -> None:
        for m in (self.item_emb, self.gru, self.a1, self.a2, self.v, self.bilinear):
            m.reset_parameters()

    def _gru_states(self, x: torch.Tensor) -> torch.Tensor:
        right, lengths, back = _right_align(x)
        packed = pack_padded_sequence(self.item_emb(right), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        left = out.gather(1, back.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
        return left * (x > 0).unsqueeze(-1)  # [B, L, D], zero at padding

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """The NARM state of every prefix: global = the GRU state at t, local = attention over states <= t."""
        h = self._gru_states(x)
        valid = x > 0
        l = x.shape[1]
        causal = torch.ones(l, l, dtype=torch.bool, device=x.device).tril()
        scores = self.v(torch.sigmoid(self.a1(h)[:, :, None] + self.a2(h)[:, None, :])).squeeze(-1)  # [B, t, j]
        allowed = causal[None] & valid[:, None, :]
        att = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)
        local = att @ h
        return self.bilinear(torch.cat([h, local], dim=-1)) * valid.unsqueeze(-1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def score_representation(self, rep: torch.Tensor) -> torch.Tensor:
        return rep @ self.item_emb.weight.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_representation(self.representation(x))


class BagMLP(nn.Module):
    def __init__(self, num_items: int, hidden: int = 32, window: int = 4):
        super().__init__()
        self.window = window
        self.emb = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.pos = nn.Parameter(torch.ones(window))
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.bias = nn.Parameter(torch.zeros(num_items + 1))

    def reset_parameters(self) -> None:
        self.emb.reset_parameters()
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        with torch.no_grad():
            self.pos.fill_(1.0)
            self.bias.zero_()

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        b, l = x.shape
        e = self.emb(x)  # [B, L, D]: the ids are embedded once, then windowed
        pad = lambda t: torch.cat([t.new_zeros(b, self.window - 1, *t.shape[2:]), t], dim=1)  # noqa: E731
        windows = pad(e).unfold(1, self.window, 1)  # [B, L, D, W], oldest first
        w = self.pos[None, None, :] * pad(x > 0).unfold(1, self.window, 1)  # [B, L, W]
        bag = (windows * w.unsqueeze(2)).sum(-1) / w.sum(-1, keepdim=True).clamp_min(1e-6)
        return (bag + self.mlp(bag)) * (x > 0).unsqueeze(-1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.emb.weight

    def score_representation(self, rep: torch.Tensor) -> torch.Tensor:
        return rep @ self.emb.weight.T + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_representation(self.representation(x))


@torch.no_grad()
def _valid_ndcg(module: nn.Module, split, max_len: int) -> float:
    """NDCG@10 of the validation items (full ranking, seen items masked), computed by hand."""
    x, y = (torch.from_numpy(np.array(a)) for a in split.inputs("valid", max_len))
    module.eval()
    s = module(x).scatter(1, x, float("-inf"))
    s[:, 0] = float("-inf")
    target = s.gather(1, y[:, None])
    s.scatter_(1, y[:, None], float("-inf"))
    rank = 1 + (s > target).sum(1)
    module.train()
    return float(torch.where(rank <= 10, 1.0 / torch.log2(rank.double() + 1), torch.zeros(())).mean())


class _Shift(nn.Module):
    def __init__(self):
        super().__init__()
        self.delta = None

    def forward(self, w):
        return w if self.delta is None else w + self.delta


def fit_next_item(module: nn.Module, split, user_weights, rng: np.random.Generator, *, item_weights=None, on_epoch_end=None,
                  adversarial=None, epochs: int = 8, lr: float = 0.01, batch_size: int = 64, max_len: int = 20,
                  patience: int = 0) -> None:
    """Cross-entropy on every next item of the training sequences, as any user would write it.
    Each term is weighted by its user's weight (and its target item's, when given); after every
    epoch ``on_epoch_end(epoch)`` may hand new user weights, stop, or reset model selection. With
    ``patience``, training keeps the epoch with the best validation NDCG@10 and stops after that
    many epochs without a better one. With ``adversarial=(eps, lam)`` each step adds lam times the loss
    under the worst-case shift of the item embeddings (APR), of norm eps times their mean norm."""
    module.reset_parameters()  # under the seed TorchVictim.fit sets: the same seed gives the same model
    train = split.train
    w = torch.ones(train.num_users) if user_weights is None else torch.as_tensor(user_weights, dtype=torch.float32)
    iw = None if item_weights is None else torch.as_tensor(item_weights, dtype=torch.float32)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    seqs = train.padded(max_len + 1)
    emb = next(m for m in module.modules() if isinstance(m, nn.Embedding))
    shift = None
    if adversarial is not None:
        from torch.nn.utils import parametrize

        shift = _Shift()
        parametrize.register_parametrization(emb, "weight", shift)
    best, best_state, bad = -1.0, None, 0
    for epoch in range(1, epochs + 1):
        module.train()
        for users in np.array_split(rng.permutation(train.num_users), max(1, train.num_users // batch_size)):
            batch = torch.from_numpy(seqs[users])
            inp, tgt = batch[:, :-1], batch[:, 1:]
            keep = (inp > 0) & (tgt > 0)
            if not keep.any():
                continue
            terms = w[torch.from_numpy(users)][:, None].expand_as(tgt)[keep]
            if iw is not None:
                terms = terms * iw[tgt[keep]]

            def batch_loss(inp=inp, tgt=tgt, keep=keep, terms=terms):
                logits = module.score_representation(module.hidden_states(inp)[keep])
                logits[:, 0] = float("-inf")
                return (nn.functional.cross_entropy(logits, tgt[keep], reduction="none") * terms).sum() / terms.sum().clamp_min(1e-9)

            loss = batch_loss()
            if shift is not None:
                original = emb.parametrizations.weight.original
                (g,) = torch.autograd.grad(loss, original, retain_graph=True)
                shift.delta = adversarial[0] * original.detach()[1:].norm(dim=1).mean() * nn.functional.normalize(g, dim=1)
                loss = loss + adversarial[1] * batch_loss()
                shift.delta = None
            opt.zero_grad()
            loss.backward()
            opt.step()
        stop = False
        if on_epoch_end is not None:
            update = on_epoch_end(epoch)
            if update.user_weights is not None:
                w = torch.as_tensor(update.user_weights, dtype=torch.float32)
            if update.reset_selection:
                best, best_state, bad = -1.0, None, 0
            stop = update.stop
        if patience:
            score = _valid_ndcg(module, split, max_len)
            if score > best:
                best, best_state, bad = score, {k: v.clone() for k, v in module.state_dict().items()}, 0
            else:
                bad += 1
            stop = stop or bad >= patience
        if stop:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    if shift is not None:
        from torch.nn.utils import parametrize

        parametrize.remove_parametrizations(emb, "weight", leave_parametrized=False)


def _victim(module: nn.Module, num_items: int, max_len: int, epochs: int, patience: int, layers=()) -> TorchVictim:
    return TorchVictim(module, num_items=num_items, max_len=max_len, device="cpu", causal=True, max_epochs=epochs, layers=layers,
                       fit_fn=functools.partial(fit_next_item, epochs=epochs, max_len=max_len, patience=patience))


def make_narm(num_items: int, hidden: int = 32, max_len: int = 20, epochs: int = 8, patience: int = 0) -> TorchVictim:
    """Factory: ``recguard audit --model foreign_models:make_narm --set hidden=16``."""
    return _victim(NARM(num_items, hidden), num_items, max_len, epochs, patience)


def make_bag(num_items: int, hidden: int = 32, max_len: int = 20, epochs: int = 8, window: int = 4, patience: int = 0) -> TorchVictim:
    """Factory: ``recguard audit --model foreign_models:make_bag``."""
    return _victim(BagMLP(num_items, hidden, window), num_items, max_len, epochs, patience, layers=("emb",))  # emb sees x as it is
