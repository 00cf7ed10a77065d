"""Seed handling: every random choice takes ``rng`` (int | numpy Generator | None).

Keyed randomness (:func:`query_keys`, :func:`keyed_uniform`): draws that are a function of a
seed and of the data they are for (a served query), so the same input always gets the same draw,
whatever the batching.

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


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def query_keys(x: np.ndarray, seed: int) -> np.ndarray:
    """One 64-bit key per row of the padded batch ``x`` ``[B, L]``: a hash of ``seed`` and the row's items."""
    keys = np.full(len(x), np.uint64(seed % 2**64), dtype=np.uint64)
    for column in np.asarray(x, dtype=np.int64).T.astype(np.uint64):
        keys = mix64(keys ^ column)
    return keys


def keyed_uniform(keys: np.ndarray, width: int) -> np.ndarray:
    """``[B, width]`` uniforms in (0, 1), the ``j``-th of row ``b`` a function of ``keys[b]`` and ``j`` only."""
    with np.errstate(over="ignore"):
        counters = mix64(np.arange(1, width + 1, dtype=np.uint64) * _GOLDEN)
    bits = mix64(keys[:, None] ^ counters[None, :]) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) / float(2**53)
