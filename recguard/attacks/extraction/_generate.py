"""Query generation for model extraction (PROTOCOLS §4): the attacker's transcript.

Autoregressive and batched: all sequences grow together, one item per step, so every
step is one batched call to the black box. Every prefix submitted is one query, and the
top-k list it returned is stored next to it — each (prefix, list) is a training pair.

* data-free: sequences start from a uniformly random item;
* few-shot: sequences start from a prefix (random cut) of a real sequence the attacker
  was given, and are then continued with victim-guided items.

Next items are drawn uniformly from the returned list, except that with probability
``random_share`` a uniformly random unseen item is used instead (top-k sampling alone
collapses onto a few popular items after a few dozen steps).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from ..._rng import RNGLike, as_generator
from ...errors import ArtifactError, ConfigError, QueryBudgetExceeded

__all__ = ["Transcript", "generate"]


@dataclass
class Transcript:
    """What the attacker collected.

    Attributes:
        seqs: ``[n, L]`` item ids, left-aligned (position t holds the t-th item; 0 after the end).
        lists: ``[n, L, k]`` the list returned for the prefix ``seqs[i, : t + 1]``; rows past the
            end (or never queried because the budget ran out) are 0.
        lengths: ``[n]`` queried prefix count per sequence.
        real_prefix: ``[n]`` how many leading items of each sequence are real (few-shot), else 0.
        queries: queries spent.
    """

    seqs: np.ndarray
    lists: np.ndarray
    lengths: np.ndarray
    real_prefix: np.ndarray
    queries: int
    meta: dict

    @property
    def pairs(self) -> int:
        return int(self.lengths.sum())

    def save(self, path: str | Path) -> None:
        """Atomic safetensors file (+ JSON metadata inside the header)."""
        import json

        from ..._io import atomic_write_arrays

        atomic_write_arrays(path, {"seqs": self.seqs.astype(np.int32), "lists": self.lists.astype(np.int32),
                                   "lengths": self.lengths.astype(np.int64), "real_prefix": self.real_prefix.astype(np.int64)},
                            metadata={"queries": str(self.queries), "meta": json.dumps(self.meta)})

    @classmethod
    def load(cls, path: str | Path) -> Transcript:
        import json

        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"{path}: transcript not found")
        try:
            with safe_open(str(path), framework="numpy") as f:
                md = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
            return cls(t["seqs"].astype(np.int64), t["lists"].astype(np.int64), t["lengths"], t["real_prefix"],
                       int(md.get("queries", 0)), json.loads(md.get("meta", "{}")))
        except Exception as exc:
            raise ArtifactError(f"{path}: not a recguard extraction transcript ({exc})") from None


def generate(
    blackbox,
    *,
    num_sequences: int,
    length: int | None = None,
    seeds: Sequence[Sequence[int]] | None = None,
    random_share: float = 0.1,
    batch_size: int = 512,
    rng: RNGLike = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
) -> Transcript:
    """Query ``blackbox`` (anything with ``recommend(seqs) -> [B, k]``, ``num_items``, ``max_len``, ``k``).

    Args:
        num_sequences: sequences to grow (each costs up to ``length`` queries).
        length: items per sequence (default: the black box's ``max_len``).
        seeds: real sequences for few-shot; each generated sequence starts from a random
            prefix (1 .. len-1 items, at most ``length - 1``) of a randomly chosen seed.
        random_share: probability that the next item is uniformly random instead of from the list.
        checkpoint: a file to save the transcript to after every step; if it exists, generation
            resumes from it (same settings required).

    A :class:`~recguard.errors.QueryBudgetExceeded` from the black box ends generation early:
    the transcript keeps every pair obtained so far and ``meta["budget_exhausted"]`` is set;
    with ``checkpoint``, a later call (e.g. with a fresh budget) continues where it stopped.
    """
    gen = as_generator(rng)
    n_items = int(blackbox.num_items)
    length = int(length or blackbox.max_len)
    k = int(blackbox.k)
    _check_settings(num_sequences, length, random_share)
    n = int(num_sequences)
    settings = {"num_sequences": n, "length": length, "k": k, "random_share": float(random_share),
                "mode": "few-shot" if seeds is not None else "data-free"}
    if checkpoint is not None and Path(checkpoint).exists():
        tr = Transcript.load(checkpoint)
        if {key: tr.meta.get(key) for key in settings} != settings:
            raise ConfigError(f"{checkpoint}: a transcript with other settings exists; delete it or use another path", param="checkpoint")
        if tr.meta.get("done"):
            return tr
        seqs, lists, lengths, real = tr.seqs, tr.lists, tr.lengths, tr.real_prefix
        queries, step0, base = tr.queries, int(tr.meta["next_step"]), int(tr.meta["base_seed"])
    else:
        base = int(gen.integers(0, 2**63 - 1))
        seqs, lists, lengths, real = _starts(np.random.default_rng([base, 0]), n, length, k, n_items, seeds)
        queries, step0 = 0, 0
    # step t queries the prefix of length t + 1 of every sequence whose prefix is that long
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=length, initial=step0, desc=f"query ({settings['mode']})", unit="step", file=sys.stderr, dynamic_ncols=True)
    exhausted = False
    t = step0
    t0 = time.perf_counter()
    for t in range(step0, length):
        served, exhausted = _query_step(blackbox, t, (seqs, lists, lengths, real), base, random_share, batch_size)
        queries += served
        if exhausted:
            break
        if bar is not None:
            bar.update(1)
        if checkpoint is not None:
            Transcript(seqs, lists, lengths, real, queries,
                       {**settings, "next_step": t + 1, "done": t + 1 == length, "base_seed": base}).save(checkpoint)
    if bar is not None:
        bar.close()
    # a budget-cut run is resumable: its step t is redone (same per-step draws) by a later call
    next_step = t if exhausted else length
    meta = {**settings, "budget_exhausted": exhausted, "generate_s": time.perf_counter() - t0, "next_step": next_step,
            "done": not exhausted, "base_seed": base}
    tr = Transcript(seqs, lists, lengths, real, queries, meta)
    if checkpoint is not None:
        tr.save(checkpoint)
    return tr


def _check_settings(num_sequences, length: int, random_share: float) -> None:
    if not isinstance(num_sequences, (int, np.integer)) or num_sequences < 1:
        raise ConfigError(f"must be a positive integer, got {num_sequences!r}", param="num_sequences")
    if length < 2:
        raise ConfigError(f"must be >= 2, got {length}", param="length")
    if not 0.0 <= random_share < 1.0:
        raise ConfigError(f"must be in [0, 1), got {random_share!r}", param="random_share")


def _starts(gen: np.random.Generator, n: int, length: int, k: int, n_items: int, seeds) -> tuple:
    """Empty (sequences, lists, lengths, real-prefix lengths) with each sequence's start: a random
    item (data-free) or a random piece of a real sequence (few-shot)."""
    seqs = np.zeros((n, length), dtype=np.int64)
    lists = np.zeros((n, length, k), dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    real = np.zeros(n, dtype=np.int64)
    if seeds is None:
        seqs[:, 0] = gen.integers(1, n_items + 1, size=n)
        return seqs, lists, lengths, real
    pool = [np.asarray(s, dtype=np.int64) for s in seeds if len(s) >= 2]
    if not pool:
        raise ConfigError("few-shot needs real sequences with at least 2 items", param="seeds")
    pick = gen.integers(0, len(pool), size=n)
    for i, j in enumerate(pick):
        s = pool[j]
        cut = int(gen.integers(1, min(len(s), length - 1) + 1))
        start = int(gen.integers(0, len(s) - cut + 1))
        seqs[i, :cut] = s[start : start + cut]
        real[i] = cut
    return seqs, lists, lengths, real


def _query_step(blackbox, t: int, arrays: tuple, base: int, random_share: float, batch_size: int) -> tuple[int, bool]:
    """Step ``t``: query every prefix of length t + 1, record the lists and grow each sequence by one
    item (in place). Returns (queries served, whether the budget ran out)."""
    seqs, lists, lengths, real = arrays
    n, length = seqs.shape
    k, n_items = lists.shape[2], int(blackbox.num_items)
    gen = np.random.default_rng([base, t + 1])  # one stream per step: a resumed run draws the same items
    # all of a step's draws up front, so batch size does not change them
    choice_all = gen.integers(0, k, size=n)
    rnd_all = gen.random(n) < random_share
    cand_all = gen.integers(1, n_items + 1, size=(n, 8))
    rows = np.arange(n)
    served = 0
    for s in range(0, n, batch_size):
        idx = rows[s : s + batch_size]
        try:
            got = np.asarray(blackbox.recommend(seqs[idx, : t + 1]))
        except QueryBudgetExceeded:
            return served, True
        served += len(idx)
        lists[idx, t] = got[:, :k]
        lengths[idx] = t + 1
        if t + 1 < length:
            grow = idx[real[idx] <= t + 1]  # real prefixes keep their own next item
            nxt = got[np.searchsorted(idx, grow), choice_all[grow] % got.shape[1]]
            rnd = rnd_all[grow]
            if rnd.any():
                nxt[rnd] = _random_unseen(seqs[grow[rnd], : t + 1], cand_all[grow[rnd]])
            seqs[grow, t + 1] = nxt
    return served, False


def _random_unseen(prefixes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per row, the first of its random candidates that the row has not used yet (else the last one)."""
    fresh = ~(candidates[:, :, None] == prefixes[:, None, :]).any(-1)  # [r, c]
    first = np.where(fresh.any(1), fresh.argmax(1), candidates.shape[1] - 1)
    return candidates[np.arange(len(candidates)), first]
