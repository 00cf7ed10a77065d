"""A tiny seeded dataset with a learnable rule, for fast tests."""

from __future__ import annotations

import numpy as np

from ..data import SequenceData

__all__ = ["tiny_dataset"]


def tiny_dataset(num_users: int = 120, num_items: int = 40, length: int = 12, noise: float = 0.1, seed: int = 0) -> SequenceData:
    """``num_users`` sequences of ``length`` items over ``1..num_items``: the next item is
    usually ``previous % num_items + 1`` (a rule any sequential model learns in a few
    epochs), otherwise uniformly random with probability ``noise``. Seeded; no metadata."""
    rng = np.random.default_rng(seed)
    start = rng.integers(1, num_items + 1, size=num_users)
    jump = rng.random((num_users, length)) < noise
    rand = rng.integers(1, num_items + 1, size=(num_users, length))
    seqs = np.zeros((num_users, length), dtype=np.int64)
    seqs[:, 0] = start
    for t in range(1, length):
        seqs[:, t] = np.where(jump[:, t], rand[:, t], seqs[:, t - 1] % num_items + 1)
    return SequenceData.from_sequences(seqs.tolist(), num_items=num_items, name="tiny")
