"""The one training loop shared by every recguard victim.

Length-bucketed (default) or random batches, per-user loss weights, AdamW, early
stopping on validation NDCG@10 (full ranking, seen items filtered), a progress
bar, and seeded randomness that never touches the caller's global RNG state.
"""

from __future__ import annotations

import copy
import sys
import time

import numpy as np
import torch

from .._finite import check_loss, check_module
from .._rng import RNGLike, as_generator, derive_seed, torch_seeded
from ..data import Split
from ..data._core import _pad_from_csr
from ..errors import ConfigError, DataError
from ._contract import as_update
from ._layers import reinitialise

__all__ = ["train", "batches", "make_optimizer"]


# Bumped whenever a change alters what training produces at a given seed (2: FastDropout and
# the logsumexp-reusing loss, 2026-11-26; 3: SASRec initialised N(0, 0.02); 4: validation scores
# length-sorted, trimmed batches, and the sampled losses, 2026-12-01). Audit cells record it, so a resumed audit never
# pairs models trained by different code.
TRAINING_REVISION = 4

#: From this catalogue size on, sampled losses update the item table sparsely (lazy Adam).
SPARSE_ROWS_FROM = 50_000


class BestState:
    """The module's weights at its best validation score so far, and the number of
    evaluations since it last improved (for patience)."""

    def __init__(self) -> None:
        self.score, self.epoch, self.state, self.bad = -1.0, 0, None, 0

    def update(self, score: float, epoch: int, target) -> None:
        """Record ``target``'s weights (a victim or a module) when ``score`` is the best so far."""
        if score > self.score:
            self.score, self.epoch, self.state, self.bad = score, epoch, copy.deepcopy(_module(target).state_dict()), 0
        else:
            self.bad += 1

    def restore(self, target) -> bool:
        """Load the best weights into ``target`` (a victim or a module); False when nothing was ever evaluated."""
        if self.state is None:
            return False
        _module(target).load_state_dict(self.state)
        return True


def _module(target) -> torch.nn.Module:
    return target if isinstance(target, torch.nn.Module) else target.module


def batches(lengths: np.ndarray, batch_size: int, gen: np.random.Generator, bucket: int = 64) -> list[np.ndarray]:
    """Shuffled user-index batches; users in a batch have similar lengths (sorted within
    shuffled chunks of ``bucket`` batches), which keeps padding small."""
    perm = gen.permutation(len(lengths))
    out: list[np.ndarray] = []
    chunk = batch_size * bucket
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = gen.permutation(len(out))
    return [out[i] for i in order]


def _check_weights(user_weights, n_users: int) -> np.ndarray:
    if user_weights is None:
        return np.ones(n_users, dtype=np.float32)
    w = np.asarray(user_weights, dtype=np.float64).reshape(-1)
    if len(w) != n_users:
        raise ConfigError(f"has {len(w)} entries but the training data has {n_users} users", param="user_weights")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigError("must be finite and >= 0", param="user_weights")
    return w.astype(np.float32)


class _Optimizers:
    """Several optimisers stepped as one (the item table's sparse Adam beside AdamW)."""

    def __init__(self, *opts: torch.optim.Optimizer) -> None:
        self.opts = opts

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()


def make_optimizer(module: torch.nn.Module, cfg, sparse_table: torch.nn.Parameter | None = None):
    """AdamW (betas 0.9/0.98) over ``module``'s parameters, with the fused kernel where torch has
    one: one pass over each tensor instead of a dozen, which at 200k items (a 12.8M-float item
    table updated every step) took sampled-loss training from 2.9k to 5.2k positions/s.

    With ``sparse_table`` (the item table of a sampled loss, whose gradients are then sparse),
    that table gets lazy Adam (``torch.optim.SparseAdam``: only the rows a batch touched, its
    input items, targets and negatives, move) and the rest AdamW, so a step's cost no longer
    grows with the catalogue."""
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    params = [p for p in module.parameters() if p is not sparse_table]
    try:
        dense = torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # a device without the fused kernel
        dense = torch.optim.AdamW(params, **kw)
    if sparse_table is None:
        return dense
    return _Optimizers(dense, torch.optim.SparseAdam([sparse_table], lr=cfg.lr, betas=(0.9, 0.98)))


def training_optimizer(victim, module: torch.nn.Module, num_items: int, adversarial: bool = False):
    """The optimiser ``train`` uses for ``module``, and the item table it updates sparsely (or None).

    On a large catalogue a sampled loss touches few item rows per step: their gradients stay
    sparse (no dense [N, D] gradient and optimiser pass per step) unless weight decay or APR's
    shift need the whole table. Below :data:`SPARSE_ROWS_FROM` items the dense update costs
    little, and lazy Adam cost quality (Beauty: test NDCG@10 0.0429 against 0.0451)."""
    cfg = victim.config
    table = getattr(module, "item_emb", None)
    sparse_rows = (victim.objective.loss != "ce" and num_items >= SPARSE_ROWS_FROM and not adversarial
                   and not cfg.weight_decay and isinstance(table, torch.nn.Embedding))
    if sparse_rows:
        table.sparse = victim.objective.sparse = True
    return make_optimizer(module, cfg, sparse_table=table.weight if sparse_rows else None), (table if sparse_rows else None)


class _Shift(torch.nn.Module):
    """A parametrization adding a (detached) perturbation to a weight: APR's adversarial shift."""

    def __init__(self) -> None:
        super().__init__()
        self.delta: torch.Tensor | None = None

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.delta is None else w + self.delta


def train(
    victim, split: Split, *, user_weights=None, item_weights=None, rng: RNGLike = None, progress: bool | None = None,
    on_epoch_end=None, adversarial: tuple[float, float] | None = None,
) -> None:
    """Fit ``victim`` (a :class:`SequentialVictim`) on ``split.train``; early-stop on ``split`` validation.

    ``item_weights`` (a tensor of N+1 weights on the victim's device, or None) multiplies every
    loss term by the weight of its target item.

    ``on_epoch_end(epoch, victim)`` runs after every epoch (model in eval mode, before that
    epoch's validation; its time is not counted in ``train_s``). It returns None to carry on,
    or new user weights, :data:`~recguard.victims.STOP`, or an
    :class:`~recguard.victims.EpochUpdate` (weights, stop, reset_selection): how in-training
    defenses such as LoRec act, and how a caller stops on a time budget.

    ``adversarial=(eps, lam)`` trains APR-style (He et al., SIGIR'18): each step also evaluates the
    loss with the item embeddings shifted along the row-normalised gradient of the loss (the
    worst-case perturbation of each item), of norm eps times the mean item-embedding norm, and
    adds lam times that loss.
    """
    from ..metrics import evaluate

    cfg = victim.config
    data = split.train
    if data.num_interactions == 0:
        raise DataError("no training interactions")
    weights = _check_weights(user_weights, data.num_users)
    gen_np = as_generator(rng)
    seed = derive_seed(gen_np)
    victim.seed_ = seed
    victim.num_items = data.num_items
    lengths = data.lengths
    window = cfg.max_len + 1  # inputs and next-item targets
    take = np.minimum(lengths, window)
    trainable = np.flatnonzero((lengths >= 2) & (weights > 0))
    if len(trainable) == 0:
        raise DataError("no user has >= 2 training items with a positive weight; nothing to train on")
    device = victim.device
    from ._objective import resolve_objective

    counts = np.bincount(data.items, minlength=data.num_items + 1)[1:] if cfg.sampler == "popularity" else None
    victim.objective_ = resolve_objective(cfg, data.num_items, counts, device=device)
    w_all = torch.from_numpy(weights)
    callback_s = 0.0
    show = sys.stderr.isatty() if progress is None else progress
    history: list[dict] = []
    t0 = time.perf_counter()
    with torch_seeded(seed):
        gen_t = torch.Generator(device=device)
        gen_t.manual_seed(seed % (2**63 - 1))
        module = victim._build(data.num_items)
        if cfg.init_std is not None:
            reinitialise(module, float(cfg.init_std))
        module = module.to(device)
        victim.module_ = module
        shift = None
        if adversarial is not None:
            from torch.nn.utils import parametrize

            shift = _Shift()
            parametrize.register_parametrization(module.item_emb, "weight", shift)
            emb_param = module.item_emb.parametrizations.weight.original
        opt, table = training_optimizer(victim, module, data.num_items, shift is not None)
        sparse_rows = table is not None
        best = BestState()
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, desc=f"train {victim.architecture}", unit="epoch", file=sys.stderr, dynamic_ncols=True)
        starts = data.offsets[:-1]
        train_s = 0.0
        for epoch in range(1, cfg.epochs + 1):
            t_ep = time.perf_counter()
            module.train()
            total, count = 0.0, 0
            for idx in batches(take[trainable], cfg.batch_size, gen_np, bucket=64 if cfg.batching == "length" else 1):
                users = trainable[idx]
                lb = int(take[users].max())
                x = torch.from_numpy(_pad_from_csr(data.items, starts[users], lengths[users], lb)).to(device)
                loss = victim._train_loss(module, x, w_all[users].to(device), gen_t, item_weights)
                if shift is not None:
                    eps, lam = adversarial
                    (g,) = torch.autograd.grad(loss, emb_param, retain_graph=True)
                    scale = emb_param.detach()[1:].norm(dim=1).mean()  # eps is relative to the typical embedding norm
                    shift.delta = eps * scale * torch.nn.functional.normalize(g, dim=1)
                    loss = loss + lam * victim._train_loss(module, x, w_all[users].to(device), gen_t, item_weights)
                    shift.delta = None
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += check_loss(float(loss.detach()), f"training {victim!r}", epoch=epoch, lr=cfg.lr)
                count += 1
            train_s += time.perf_counter() - t_ep
            entry = {"epoch": epoch, "loss": total / max(1, count), "train_s": train_s, "time_s": time.perf_counter() - t0}
            stop = False
            if on_epoch_end is not None:
                t_cb = time.perf_counter()
                module.eval()
                update = as_update(on_epoch_end(epoch, victim))
                if update.user_weights is not None:
                    weights = _check_weights(update.user_weights, data.num_users)
                    w_all = torch.from_numpy(weights)
                    trainable = np.flatnonzero((lengths >= 2) & (weights > 0))
                    if len(trainable) == 0:
                        raise DataError(f"the user weights given after epoch {epoch} leave no user with a positive weight")
                    entry["reweighted"] = True
                if update.reset_selection:
                    best = BestState()
                    entry["selection_reset"] = True
                stop = update.stop
                callback_s += time.perf_counter() - t_cb
            last = epoch == cfg.epochs or stop
            if len(split.eval_users) and (epoch % cfg.eval_every == 0 or last):
                module.eval()
                ndcg = evaluate(victim, split, which="valid", ks=(10,))["NDCG@10"]
                entry["valid_ndcg@10"] = ndcg
                best.update(ndcg, epoch, module)
            history.append(entry)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.4f}", best_ndcg=f"{max(best.score, 0):.4f}")
            if stop or (cfg.patience and best.bad >= cfg.patience):
                break
        if bar is not None:
            bar.close()
        restored = best.restore(module)
        module.eval()
        if sparse_rows:  # dense gradients again for whoever differentiates the model later
            table.sparse = victim.objective_.sparse = False
        if shift is not None:
            from torch.nn.utils import parametrize

            parametrize.remove_parametrizations(module.item_emb, "weight", leave_parametrized=False)
    check_module(module, f"{victim!r} after training")
    victim.history_ = history
    victim.fit_info_ = {
        "epochs_run": len(history),
        "best_epoch": best.epoch if restored else len(history),
        "best_valid_ndcg@10": best.score if restored else None,
        "wall_time_s": time.perf_counter() - t0,
        "train_time_s": train_s,
        "train_users": int(len(trainable)),
        "callback_time_s": callback_s,
        "seed": seed,
        "device": str(device),
        "objective": victim.objective_.describe(),
    }
