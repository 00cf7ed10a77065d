"""The one epoch loop of recguard: epochs, epoch-end updates, validation, selection of the best
weights and early stopping, with a progress bar and timings.

The built-in victims' training (:func:`recguard.victims.train`) and model extraction's
distillation both run their epochs through :class:`Trainer`; what an epoch does (the batches,
the loss, an adversarial step) is the caller's ``run_epoch``. A :class:`TrainingRecord` comes
back; the trainer never writes onto a victim.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._contract import EpochUpdate, as_update

__all__ = ["Trainer", "TrainingRecord", "BestState", "EpochEnd"]


def _module(target) -> torch.nn.Module:
    return target if isinstance(target, torch.nn.Module) else target.module


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


class EpochEnd:
    """An ``on_epoch_end`` callback as every training loop runs it: with the module in eval mode
    (its mode restored after), timed, its answer read as an :class:`~recguard.victims.EpochUpdate`
    whose user weights, if any, have passed ``check_weights``.

    Args:
        callback: ``callback(epoch)`` returning None, user weights, ``STOP`` or an ``EpochUpdate``.
        module: the ``nn.Module`` being trained.
        check_weights: validates new user weights (raises a clear error) and returns them as an array.
    """

    def __init__(self, callback: Callable[[int], Any], module: torch.nn.Module,
                 check_weights: Callable[[Any], np.ndarray] | None = None):
        self.callback, self.module, self.check_weights = callback, module, check_weights
        self.time_s = 0.0

    def __call__(self, epoch: int) -> EpochUpdate:
        t0 = time.perf_counter()
        was = self.module.training
        self.module.eval()
        try:
            update = as_update(self.callback(int(epoch)))
        finally:
            self.module.train(was)
        if update.user_weights is not None and self.check_weights is not None:
            update = EpochUpdate(self.check_weights(update.user_weights), update.stop, update.reset_selection)
        self.time_s += time.perf_counter() - t0
        return update


@dataclass
class TrainingRecord:
    """What one run of :class:`Trainer` did.

    Attributes:
        history: one entry per epoch (``epoch``, ``loss``, ``train_s``, ``time_s``, the validation
            score under the trainer's ``score_key`` when validated, ``reweighted``/``selection_reset``
            when an epoch-end update did so).
        best_epoch: the epoch whose weights were kept (the last epoch when nothing was validated).
        best_score: the best validation score (None when nothing was validated).
        train_time_s: time in ``run_epoch`` only; callback_time_s: in the epoch-end callback;
        wall_time_s: the whole run.
        checkpoints: ``(epoch, state_dict on the CPU)`` of up to ``keep_checkpoints`` epochs, evenly
            spaced over the epochs up to the kept one (the last of them is the kept weights), for
            training-data influence (TracIn); empty unless the trainer was asked to keep them.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    train_time_s: float = 0.0
    callback_time_s: float = 0.0
    wall_time_s: float = 0.0
    checkpoints: list[tuple[int, dict]] = field(default_factory=list)


def _cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


class CheckpointKeeper:
    """The module's weights after every ``stride``-th epoch, at most ``2 × keep`` of them (the stride
    doubles when full, so what is kept stays evenly spaced over any number of epochs)."""

    def __init__(self, keep: int):
        self.keep, self.stride, self.kept = int(keep), 1, []

    def __call__(self, epoch: int, module: torch.nn.Module) -> None:
        if self.keep <= 0 or epoch % self.stride:
            return
        self.kept.append((epoch, _cpu_copy(module.state_dict())))
        if len(self.kept) > 2 * self.keep:
            self.stride *= 2
            self.kept = [(e, st) for e, st in self.kept if e % self.stride == 0]

    def select(self, last_epoch: int, final_state: dict) -> list[tuple[int, dict]]:
        """``keep`` evenly spaced checkpoints up to ``last_epoch``, ending with ``final_state`` (the kept weights)."""
        if self.keep <= 0:
            return []
        before = [(e, st) for e, st in self.kept if e < last_epoch]
        picks = np.unique(np.linspace(0, len(before) - 1, self.keep - 1).round().astype(int)) if before and self.keep > 1 else []
        return [before[i] for i in picks] + [(last_epoch, _cpu_copy(final_state))]


class Trainer:
    """Runs epochs until ``epochs``, an epoch-end ``stop`` or ``patience`` validations without a gain.

    Each epoch: ``run_epoch(epoch)`` (mean loss; it puts the module in train mode itself), then
    ``on_epoch_end(epoch)`` with the module in eval mode (None, new user weights, ``STOP`` or an
    :class:`~recguard.victims.EpochUpdate`; new weights go to ``on_weights(weights, epoch)``), then,
    every ``eval_every`` epochs and at the last one, ``validate()`` in eval mode. The weights of
    the best validation are restored at the end.

    Args:
        epochs, patience, eval_every: the schedule (``patience=0``: never stop early).
        progress: show a progress bar on stderr (None: when stderr is a terminal).
        desc: the bar's label; score_key: the history key of the validation score; score_label:
            its name on the bar.
        keep_checkpoints: keep this many checkpoints in the record (``TrainingRecord.checkpoints``).
    """

    def __init__(self, *, epochs: int, patience: int = 0, eval_every: int = 1, progress: bool | None = False,
                 desc: str = "train", score_key: str = "valid", score_label: str = "best", keep_checkpoints: int = 0):
        self.epochs, self.patience, self.eval_every = int(epochs), int(patience or 0), max(1, int(eval_every))
        self.keep_checkpoints = int(keep_checkpoints)
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.desc, self.score_key, self.score_label = desc, score_key, score_label

    def run(self, target, run_epoch: Callable[[int], float], *, validate: Callable[[], float] | None = None,
            on_epoch_end: Callable[[int], Any] | None = None,
            on_weights: Callable[[np.ndarray, int], None] | None = None) -> TrainingRecord:
        """Train ``target`` (a module, or a victim whose ``module`` it is) and return the record."""
        module = _module(target)
        record, best = TrainingRecord(), BestState()
        t0 = time.perf_counter()
        bar = self._bar()
        epoch_end = None if on_epoch_end is None else EpochEnd(on_epoch_end, module)
        keeper = CheckpointKeeper(self.keep_checkpoints)
        for epoch in range(1, self.epochs + 1):
            t_ep = time.perf_counter()
            loss = run_epoch(epoch)
            record.train_time_s += time.perf_counter() - t_ep
            keeper(epoch, module)
            entry = {"epoch": epoch, "loss": loss, "train_s": record.train_time_s, "time_s": time.perf_counter() - t0}
            update = EpochUpdate() if epoch_end is None else epoch_end(epoch)
            if update.user_weights is not None:
                if on_weights is None:
                    raise ValueError("an epoch-end update returned user weights, but this training takes none")
                on_weights(update.user_weights, epoch)
                entry["reweighted"] = True
            if update.reset_selection:
                best = BestState()
                entry["selection_reset"] = True
            record.callback_time_s = 0.0 if epoch_end is None else epoch_end.time_s
            if validate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs or update.stop):
                module.eval()
                entry[self.score_key] = score = validate()
                best.update(score, epoch, module)
            record.history.append(entry)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({"loss": f"{loss:.4f}", self.score_label: f"{max(best.score, 0):.4f}"})
            if update.stop or (self.patience and best.bad >= self.patience):
                break
        if bar is not None:
            bar.close()
        restored = best.restore(module)
        module.eval()
        record.best_epoch = best.epoch if restored else len(record.history)
        record.best_score = best.score if restored else None
        record.checkpoints = keeper.select(record.best_epoch, module.state_dict())
        record.wall_time_s = time.perf_counter() - t0
        return record

    def _bar(self):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.epochs, desc=self.desc, unit="epoch", file=sys.stderr, dynamic_ncols=True)
