"""Seed handling: every random choice takes ``rng`` (int | numpy Generator | None).

The library never touches global seeds. Torch work runs inside
:func:`torch_seeded`, which forks torch's global RNG state, seeds it from the
caller's generator and restores it afterwards, so dropout and weight
initialisation are reproducible without leaking into the user's own RNG stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

RNGLike = int | np.random.Generator | None


def as_generator(rng: RNGLike) -> np.random.Generator:
    """Return a numpy Generator for ``rng`` (an int seed, a Generator, or None = fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(None if rng is None else int(rng))
    from .errors import ConfigError

    raise ConfigError(f"expected an int seed, a numpy.random.Generator or None, got {type(rng).__name__}", param="rng")


def derive_seed(rng: RNGLike) -> int:
    """Draw a 63-bit integer seed from ``rng`` (used to seed torch and to record provenance)."""
    return int(as_generator(rng).integers(0, 2**63 - 1))


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU (and CUDA) RNG seeded to ``seed``; restore the global state after."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
