"""Training-data influence: which training users pushed an item into people's lists (TracIn).

TracIn (Pruthi et al., "Estimating Training Data Influence by Tracing Gradient Descent",
NeurIPS 2020) credits a training example with the change its gradient steps made to a test
quantity: summed over saved checkpoints ``k``, ``η_k ⟨∇θ L(example; θ_k), ∇θ f(θ_k)⟩``. Here an
example is a training *user* (the sum over every next-item prediction of its history), the
test quantity ``f`` is the target item's score summed over the query users (by default every
user whose top-k list shows the item), and θ is the scoring head's parameters (the output item
embeddings, and their bias where the model has one): TracIn's "last layer" variant, with the
hidden states of each checkpoint held fixed. A positive influence means training on that user
raised the item's score for the query users (a proponent).

Why not ``captum.influence.TracInCPFast`` directly: it takes one output row per example and a
``final_fc_layer`` module, while a sequence recommender has one prediction per position of a
user's history and often scores with its (tied) input embedding table, not a ``Linear``. The
exact per-position quantity it would compute, ``⟨∇θ CE(position), ∇θ f⟩``, is computed here for
every position of a batch at once: with ``J = ∂logits/∂θ`` at the position's hidden state,
``∇θ CE = Jᵀ (p − e_y)`` and the inner product is ``(p − e_y) · (J ∇θ f)``; ``J ∇θ f`` comes from
two reverse passes (the transpose of a vector-Jacobian product), for any scoring head. The test
suite checks the result against captum's ``TracInCP`` on the same examples, position by position.

The cross-entropy of the full softmax is the loss whose gradient is traced, whatever sampled
loss trained the model (a sampled loss's gradient depends on the negatives drawn at that step,
which are not kept).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import SequenceData, Split, pad_from_csr
from ..errors import CapabilityError, ConfigError, NonFiniteError
from ..victims import eval_mode

__all__ = ["influence", "Influence", "RANKINGS"]

#: How :meth:`Influence.top` can order users: by signed influence, or by its magnitude.
RANKINGS = ("signed", "magnitude")


@dataclass
class Influence:
    """Per training user, the influence on some items' scores for their query users.

    Attributes:
        items: the items whose scores are traced (those no query user's list showed are left out,
            see ``info["skipped_items"]``); query_users: per item, the users whose score for it is summed.
        scores: ``[num_users]`` influence of every training user on the summed scores (positive:
            training on the user raised them); checkpoints: the epochs whose weights were used
            (``[]``: only the final weights, when the victim kept no checkpoints).
        per_checkpoint: ``[len(checkpoints) or 1, num_users]``, each checkpoint's share of ``scores``.
        info: the learning rate, positions traced, time taken, and ``sign_agreement``: of the top 1%
            of users by ``|scores|``, the share whose influence has the same sign at every checkpoint.
            A low value says the ranking depends on the training phase: a campaign that the model
            has memorised can have its influence change sign late in training (see docs/probes.md).
    """

    items: list[int]
    query_users: dict[int, np.ndarray]
    scores: np.ndarray
    checkpoints: list[int]
    info: dict = field(default_factory=dict)
    per_checkpoint: np.ndarray | None = None

    def top(self, k: int, by: str = "signed") -> np.ndarray:
        """The ``k`` most influential training users, most influential first: by ``"signed"``
        influence (the proponents, who raised the scores) or by its ``"magnitude"`` (who moved them
        most, either way: it also finds a memorised campaign whose late pull outweighs its early
        push, and it also ranks genuine users who pulled the items down)."""
        check_ranking(by, "by")
        key = self.scores if by == "signed" else np.abs(self.scores)
        return np.argsort(-key, kind="stable")[: int(k)]

    def finds(self, users) -> dict:
        """How well this ranking finds ``users`` (e.g. the injected ones): their recall and the precision
        among the top 1% of the training users, the ROC-AUC of the influence (None when every user or
        none is one of them), the items traced, the checkpoints and the seconds per traced item."""
        from sklearn.metrics import roc_auc_score

        wanted = np.zeros(len(self.scores), dtype=bool)
        wanted[np.asarray(users, dtype=np.int64)] = True
        top = self.top(int(np.ceil(0.01 * len(wanted))))
        top_abs = self.top(len(top), by="magnitude")
        both = 0 < wanted.sum() < len(wanted)
        by_checkpoint = ([float(roc_auc_score(wanted, row)) for row in self.per_checkpoint]
                         if both and self.per_checkpoint is not None else None)
        return {"traced_items": list(self.items), "checkpoints": list(self.checkpoints),
                "recall_top1pct": float(wanted[top].sum() / max(1, wanted.sum())), "precision_top1pct": float(wanted[top].mean()),
                "roc_auc": float(roc_auc_score(wanted, self.scores)) if both else None,
                "roc_auc_by_checkpoint": by_checkpoint,
                "roc_auc_abs": float(roc_auc_score(wanted, np.abs(self.scores))) if both else None,
                "recall_top1pct_abs": float(wanted[top_abs].sum() / max(1, wanted.sum())),
                "seconds_per_item": self.info["time_s"] / max(1, len(self.items))}

    def to_dict(self, data: SequenceData | None = None, k: int = 100, by: str = "signed") -> dict:
        """Plain data for JSON: the top ``k`` users (:meth:`top`, ``by``) with their influence and each
        checkpoint's share (and ids, when ``data`` is given)."""
        top = self.top(k, by=by)
        users = [{"user": int(u), "influence": float(self.scores[u]),
                  **({"by_checkpoint": [float(v) for v in self.per_checkpoint[:, u]]} if self.per_checkpoint is not None else {}),
                  **({"user_id": str(data.user_ids[u])} if data is not None and data.user_ids is not None else {})} for u in top]
        return {"items": [int(i) for i in self.items], "query_users": {str(i): int(len(q)) for i, q in self.query_users.items()},
                "checkpoints": list(self.checkpoints), "ranked_by": by, "top": users, "info": dict(self.info)}


def check_ranking(by: str, param: str) -> None:
    """A :class:`ConfigError` naming ``param`` unless ``by`` is one of :data:`RANKINGS`."""
    if by not in RANKINGS:
        raise ConfigError(f"must be {' or '.join(repr(r) for r in RANKINGS)}, got {by!r}", param=param)


@contextlib.contextmanager
def _weights(module: torch.nn.Module, state: dict | None):
    """Within the block, ``module`` holds ``state`` (None: as it is); its own weights come back after."""
    if state is None:
        yield
        return
    own = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    try:
        yield
    finally:
        module.load_state_dict(own)


def _query_users(victim, train: SequenceData, items: list[int], top_k: int) -> dict[int, np.ndarray]:
    """Per item, the users whose top-``top_k`` list (seen items excluded) shows it."""
    shows = np.zeros((train.num_users, len(items)), dtype=bool)
    wanted = np.asarray(items)
    for start in range(0, train.num_users, 1024):
        users = np.arange(start, min(start + 1024, train.num_users))
        lists = np.asarray(victim.recommend([train[u] for u in users], k=top_k, exclude_seen=True))
        shows[users] = (lists[:, :, None] == wanted[None, None, :]).any(1)
    return {item: np.flatnonzero(shows[:, j]) for j, item in enumerate(items)}


def _head_gradient(victim, queries: list[tuple[int, torch.Tensor]]) -> tuple[list[torch.nn.Parameter], list[torch.Tensor]]:
    """The scoring head's parameters and the gradient of the items' scores summed over their query users."""
    params = [p for p in victim.parameters() if p.requires_grad]
    score = 0.0
    for item, query_x in queries:
        with torch.no_grad():
            rep = victim.representation(query_x)
        score = score + victim.score_representation(rep)[:, item].sum()
    grads = torch.autograd.grad(score, params, allow_unused=True)
    head = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None]
    return [p for p, _ in head], [g for _, g in head]


def _position_influence(victim, head, head_grad, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-⟨∇θ CE(position), ∇θ f⟩`` for every position (hidden state ``h`` [P, D], next item ``targets`` [P])."""
    logits = victim.score_representation(h)
    probe = torch.zeros_like(logits, requires_grad=True)
    back = torch.autograd.grad(logits, head, grad_outputs=probe, create_graph=True)  # Jᵀ probe, linear in probe
    along = torch.autograd.grad(sum((b * g).sum() for b, g in zip(back, head_grad, strict=True)), probe)[0]  # J ∇f
    with torch.no_grad():
        masked = logits.detach().clone()
        masked[:, 0] = float("-inf")
        residual = torch.softmax(masked, dim=-1)
        residual[torch.arange(len(targets)), targets] -= 1.0  # p − e_y: ∂CE/∂logits
        return -(residual * along).sum(-1)


def influence(victim, data: Split | SequenceData, items, *, query_users=None, top_k: int = 50, batch_users: int = 64,
              learning_rate: float | None = None) -> Influence:
    """Rank the training users of ``data`` by their TracIn influence on the scores of ``items``.

    Args:
        victim: a white-box victim (``hidden_states``, ``score_representation``, ``parameters``);
            its ``checkpoints_`` (``fit(keep_checkpoints=K)``) are used when present, else its
            final weights alone.
        data: the training data the victim was fitted on (a :class:`Split`: its ``train``).
        items: an item id, or several (their influences add up: a campaign's targets together).
        query_users: training-user indices whose scores are summed (for every item); default, per
            item, every user whose top-``top_k`` list (seen items excluded) shows it.
        learning_rate: the step size ``η`` of every checkpoint (default: the victim's ``lr``).
        batch_users: users per batch of positions (memory: ``batch_users × max_len × items`` floats).

    Raises :class:`~recguard.errors.CapabilityError` for a victim without hidden states, and
    :class:`~recguard.errors.ConfigError` for an unknown item or when no query user is left.
    """
    train = data.train if isinstance(data, Split) else data
    for need in ("hidden_states", "score_representation", "parameters"):
        if not callable(getattr(victim, need, None)):
            raise CapabilityError(f"training-data influence needs the victim's {need}() (the white_box capability); "
                                  f"{type(victim).__name__} has none. Wrap the model with TorchVictim and declare it")
    wanted = [items] if isinstance(items, (int, np.integer)) and not isinstance(items, bool) else list(items)
    for item in wanted:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)) or not 1 <= int(item) <= train.num_items:
            raise ConfigError(f"must be item ids in 1..{train.num_items}, got {item!r}", param="items")
    wanted = sorted({int(i) for i in wanted})
    if not wanted:
        raise ConfigError("name at least one item", param="items")
    t0 = time.perf_counter()
    module = victim.module
    checkpoints = list(getattr(victim, "checkpoints_", None) or [])
    states = [(epoch, state) for epoch, state in checkpoints] or [(None, None)]
    lr = float(learning_rate if learning_rate is not None else getattr(getattr(victim, "config", None), "lr", 1.0))
    if query_users is None:
        with eval_mode(module):
            queries = _query_users(victim, train, wanted, top_k)
    else:
        chosen = np.unique(np.asarray(query_users, dtype=np.int64).reshape(-1))
        if not len(chosen):
            raise ConfigError("names no user; leave it out for the users whose lists show the items", param="query_users")
        if chosen.min() < 0 or chosen.max() >= train.num_users:
            raise ConfigError(f"must be training-user indices in 0..{train.num_users - 1}", param="query_users")
        queries = {item: chosen for item in wanted}
    skipped = [i for i in wanted if not len(queries[i])]
    queries = {i: q for i, q in queries.items() if len(q)}
    if not queries:
        raise ConfigError(f"no user's top-{top_k} list shows item(s) {', '.join(map(str, wanted))}; pass query_users or a "
                          "larger top_k", param="query_users")
    width = victim.max_len + 1
    starts, lengths = train.offsets[:-1], np.diff(train.offsets)
    per_checkpoint = np.zeros((len(states), train.num_users), dtype=np.float64)
    positions = 0
    query_x = [(item, torch.from_numpy(pad_from_csr(train.items, starts[q], lengths[q], victim.max_len)).to(victim.device))
               for item, q in queries.items()]
    for k, (_, state) in enumerate(states):
        scores = per_checkpoint[k]
        with _weights(module, state), eval_mode(module):
            head, head_grad = _head_gradient(victim, query_x)
            for start in range(0, train.num_users, batch_users):
                rows = np.arange(start, min(start + batch_users, train.num_users))
                x = torch.from_numpy(pad_from_csr(train.items, starts[rows], lengths[rows], width)).to(victim.device)
                inp, tgt = x[:, :-1], x[:, 1:]
                keep = (inp > 0) & (tgt > 0)
                if not keep.any():
                    continue
                with torch.no_grad():
                    h = victim.hidden_states(inp)[keep]
                per_position = _position_influence(victim, head, head_grad, h, tgt[keep]).double().cpu().numpy()
                owner = np.broadcast_to(rows[:, None], keep.shape)[keep.cpu().numpy()]
                np.add.at(scores, owner, lr * per_position)
                positions += len(per_position)
    if not np.isfinite(per_checkpoint).all():
        raise NonFiniteError("training-data influence is not finite; the victim's weights or scores diverged")
    scores = per_checkpoint.sum(0)
    return Influence(items=sorted(queries), query_users=queries, scores=scores, checkpoints=[e for e, _ in checkpoints],
                     per_checkpoint=per_checkpoint,
                     info={"learning_rate": lr, "positions": positions, "time_s": time.perf_counter() - t0,
                           "skipped_items": skipped, "loss": "full-softmax cross-entropy", "variant": "TracIn-CP, last layer",
                           "sign_agreement": sign_agreement(per_checkpoint, scores)})


def sign_agreement(per_checkpoint: np.ndarray, scores: np.ndarray, share: float = 0.01) -> float:
    """Of the ``share`` of users with the largest ``|scores|``, the fraction whose influence has one sign
    (or is 0) at every checkpoint: 1.0 when the ranking's leaders hold at every stage of training."""
    top = np.argsort(-np.abs(scores), kind="stable")[: max(1, int(np.ceil(share * len(scores))))]
    signs = np.sign(per_checkpoint[:, top])
    return float(((signs >= 0).all(0) | (signs <= 0).all(0)).mean())
