"""What one epoch of a built-in victim's training does, run by the shared
:class:`~recguard.victims.trainer.Trainer`.

Length-bucketed (default) or random batches, per-user loss weights, AdamW (lazy Adam for the
item table of a sampled loss on a large catalogue), optional APR adversarial steps, early
stopping on validation NDCG@10 (full ranking, seen items filtered), and seeded randomness that
never touches the caller's global RNG state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .._finite import check_loss, check_module
from .._rng import RNGLike, as_generator, derive_seed, torch_seeded
from ..data import Split
from ..data import pad_from_csr
from ..errors import ConfigError, DataError
from ._gro import GROStep
from .trainer import BestState, Trainer, TrainingRecord

__all__ = ["train", "batches", "make_optimizer", "Fitted", "BestState", "TRAINING_REVISION"]


# Bumped whenever a change alters what training produces at a given seed (history in CHANGELOG.md).
# Audit cells record it, so a resumed audit never pairs models trained by different code.
TRAINING_REVISION = 6

#: From this catalogue size on, sampled losses update the item table sparsely (lazy Adam).
SPARSE_ROWS_FROM = 50_000


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


def check_user_weights(user_weights, n_users: int) -> np.ndarray:
    """Per-user loss weights as float32 (all 1 for None); a wrong length, a negative or a non-finite
    weight is a :class:`ConfigError`."""
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
    """AdamW (betas 0.9 and the config's ``adam_beta2``, 0.98 by default) over ``module``'s
    parameters, with the fused kernel where torch has one: one pass over each tensor instead of
    a dozen, which at 200k items (a 12.8M-float item table updated every step) took
    sampled-loss training from 2.9k to 5.2k positions/s.

    With ``sparse_table`` (the item table of a sampled loss, whose gradients are then sparse),
    that table gets lazy Adam (``torch.optim.SparseAdam``: only the rows a batch touched, its
    input items, targets and negatives, move) and the rest AdamW, so a step's cost no longer
    grows with the catalogue."""
    betas = (0.9, float(cfg.adam_beta2))
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=betas)
    params = [p for p in module.parameters() if p is not sparse_table]
    try:
        dense = torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # a device without the fused kernel
        dense = torch.optim.AdamW(params, **kw)
    if sparse_table is None:
        return dense
    return _Optimizers(dense, torch.optim.SparseAdam([sparse_table], lr=cfg.lr, betas=betas))


def to_training_device(device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` (a step's batch and user weights, built on the host) on the training ``device``: on a
    GPU through pinned memory without blocking (a pageable copy would make the host wait for the
    device); on a CPU as they are."""
    if torch.device(device).type != "cuda":
        return tensors
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def training_autocast(precision: str, device) -> torch.autocast:
    """The autocast context of one training step's forward pass: bfloat16 when ``precision`` is
    ``"bfloat16"``, else disabled (float32)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def training_optimizer(victim, module: torch.nn.Module, num_items: int, adversarial: bool = False):
    """The optimiser ``train`` uses for ``module``, and the item table it updates sparsely (or None).

    On a large catalogue a sampled loss touches few item rows per step: their gradients stay
    sparse (no dense [N, D] gradient and optimiser pass per step) unless weight decay or APR's
    shift need the whole table, or the module declares that every step reads all of it
    (``reads_whole_item_table``, as SASRec's item dropout does). Below :data:`SPARSE_ROWS_FROM` items the
    dense update costs little, and lazy Adam cost quality (Beauty: test NDCG@10 0.0429 against 0.0451)."""
    cfg = victim.config
    table = getattr(module, "item_emb", None)
    sparse_rows = (victim.objective.loss != "ce" and num_items >= SPARSE_ROWS_FROM and not adversarial
                   and not cfg.weight_decay and not getattr(module, "reads_whole_item_table", False)
                   and isinstance(table, torch.nn.Embedding))
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


@dataclass
class Fitted:
    """What :func:`train` returns for the victim to keep: the trained module (already installed
    by ``victim.build``), the seed it drew, the per-epoch history and the summary ``info``."""

    seed: int
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    record: TrainingRecord | None = None


def train(
    victim, split: Split, *, user_weights=None, item_weights=None, rng: RNGLike = None, progress: bool | None = None,
    on_epoch_end=None, adversarial: tuple[float, float] | None = None, keep_checkpoints: int = 0,
) -> Fitted:
    """Train a fresh module of ``victim`` (a :class:`SequentialVictim`, whose ``objective`` is
    resolved for this catalogue) on ``split.train``; early-stop on ``split`` validation.

    ``item_weights`` (a tensor of N+1 weights on the victim's device, or None) multiplies every
    loss term by the weight of its target item. ``keep_checkpoints``: keep that many checkpoints
    in the returned record (for training-data influence).

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
    state = {"weights": check_user_weights(user_weights, data.num_users)}
    gen_np = as_generator(rng)
    seed = derive_seed(gen_np)
    lengths = data.lengths
    take = np.minimum(lengths, cfg.max_len + 1)  # inputs and next-item targets
    state["trainable"] = np.flatnonzero((lengths >= 2) & (state["weights"] > 0))
    if len(state["trainable"]) == 0:
        raise DataError("no user has >= 2 training items with a positive weight; nothing to train on")
    device = victim.device
    state["w_all"] = torch.from_numpy(state["weights"])
    t0 = time.perf_counter()
    with torch_seeded(seed):
        gen_t = torch.Generator(device=device)
        gen_t.manual_seed(seed % (2**63 - 1))
        module = victim.build(data.num_items, init_std=cfg.init_std)
        shift = _Shift() if adversarial is not None else None
        if shift is not None:
            from torch.nn.utils import parametrize

            parametrize.register_parametrization(module.item_emb, "weight", shift)
            emb_param = module.item_emb.parametrizations.weight.original
        opt, table = training_optimizer(victim, module, data.num_items, shift is not None)
        gro = GROStep.for_victim(victim, data.num_items, make_optimizer)  # None unless gro_lambda > 0
        starts = data.offsets[:-1]

        def step_loss(x, w):
            loss = victim.training_loss(module, x, w, gen_t, item_weights)
            if shift is not None:
                eps, lam = adversarial
                (g,) = torch.autograd.grad(loss, emb_param, retain_graph=True)
                scale = emb_param.detach()[1:].norm(dim=1).mean()  # eps is relative to the typical embedding norm
                shift.delta = eps * scale * torch.nn.functional.normalize(g, dim=1)
                loss = loss + lam * victim.training_loss(module, x, w, gen_t, item_weights)
                shift.delta = None
            if gro is not None:
                loss = loss + gro(module, x, gen_t)
            return loss

        on_gpu = torch.device(device).type == "cuda"

        def run_epoch(epoch: int) -> float:
            module.train()
            # the losses add up on the device and are read once an epoch: a read per step would make
            # the host wait for the GPU at every step (on a CPU each step is still checked as it ends)
            total, count = torch.zeros((), dtype=torch.float64, device=device), 0
            trainable = state["trainable"]
            for idx in batches(take[trainable], cfg.batch_size, gen_np, bucket=64 if cfg.batching == "length" else 1):
                users = trainable[idx]
                x = torch.from_numpy(pad_from_csr(data.items, starts[users], lengths[users], int(take[users].max())))
                x, w = to_training_device(device, x, state["w_all"][users])
                with training_autocast(cfg.precision, device):
                    loss = step_loss(x, w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach().double()
                if not on_gpu:
                    check_loss(float(loss.detach()), f"training {victim!r}", epoch=epoch, lr=cfg.lr)
                count += 1
            return check_loss(float(total) / max(1, count), f"training {victim!r}", epoch=epoch, lr=cfg.lr)

        def reweight(weights, epoch: int) -> None:
            state["weights"] = check_user_weights(weights, data.num_users)
            state["w_all"] = torch.from_numpy(state["weights"])
            state["trainable"] = np.flatnonzero((lengths >= 2) & (state["weights"] > 0))
            if len(state["trainable"]) == 0:
                raise DataError(f"the user weights given after epoch {epoch} leave no user with a positive weight")

        trainer = Trainer(epochs=cfg.epochs, patience=cfg.patience, eval_every=cfg.eval_every, progress=progress,
                          desc=f"train {victim.architecture}", score_key="valid_ndcg@10", score_label="best_ndcg",
                          keep_checkpoints=keep_checkpoints)
        record = trainer.run(
            module, run_epoch,
            validate=(lambda: evaluate(victim, split, which="valid", ks=(10,))["NDCG@10"]) if len(split.eval_users) else None,
            on_epoch_end=None if on_epoch_end is None else (lambda epoch: on_epoch_end(epoch, victim)), on_weights=reweight,
        )
        if table is not None:  # dense gradients again for whoever differentiates the model later
            table.sparse = victim.objective.sparse = False
        if shift is not None:
            from torch.nn.utils import parametrize

            parametrize.remove_parametrizations(module.item_emb, "weight", leave_parametrized=False)
    check_module(module, f"{victim!r} after training")
    info = {
        "epochs_run": len(record.history),
        "best_epoch": record.best_epoch,
        "best_valid_ndcg@10": record.best_score,
        "wall_time_s": time.perf_counter() - t0,
        "train_time_s": record.train_time_s,
        "train_users": int(len(state["trainable"])),
        "callback_time_s": record.callback_time_s,
        "seed": seed,
        "device": str(device),
        "objective": victim.objective.describe(),
    }
    info.update(GROStep.describe(gro))
    return Fitted(seed=seed, history=record.history, info=info, record=record)
