"""Implicit-feedback data with a missing-at-random (MAR) test set, for MNAR debiasing (PROTOCOLS §6).

* **Coat** (Schnabel et al., ICML'16): 290 users × 300 items; ``train.ascii`` holds ratings
  users chose to give (MNAR), ``test.ascii`` ratings of 16 items drawn at random per user
  (MAR). Positive = rating ≥ 4. Read from a local folder, or downloaded once into the cache
  (SHA-256 verified) on machines with internet.
* **Yahoo! R3**: read from a local folder only — its licence forbids redistribution, so
  users obtain ``ydata-ymusic-rating-study-v1_0-train.txt`` / ``-test.txt`` themselves.
* **Semi-synthetic ML-100k** (Saito et al.'s protocol): complete the embedded ML-100k
  rating matrix with a matrix factorisation, turn predicted ratings into relevance
  γ = σ(r̂ − ε), expose items with popularity-driven propensity θ_i = (n_i / max n)^p,
  sample clicks Y ~ Bernoulli(θ·γ) for training and, per user, a uniformly random test set
  labelled R ~ Bernoulli(γ). Seeded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._rng import RNGLike, as_generator
from ..errors import ConfigError, DataError

__all__ = ["MARData", "load_coat", "load_yahoo_r3", "semi_synthetic", "load_mar"]

COAT_URL = "https://www.cs.cornell.edu/~schnabts/mnar/coat.zip"
# SHA-256 of coat.zip as published in a third-party data manifest; not re-checked on this
# (offline) machine — a mismatch is refused, never silently used.
COAT_SHA256 = "6073d0b515ed1f6e830e4fead66dc76ad7991a7553eaa58e228b234a9d19daed"


def fetch_coat() -> Path:
    """Coat in recguard's cache (downloaded once, SHA-256 verified); honours ``RECGUARD_OFFLINE``."""
    import io
    import zipfile

    from .._io import atomic_write_bytes
    from ._registry import cache_dir, fetch_verified

    root = cache_dir() / "coat"
    if (root / "train.ascii").exists() and (root / "test.ascii").exists():
        return root
    hint = f"download {COAT_URL} by hand, unzip it and pass its folder (--path DIR)"
    if os.environ.get("RECGUARD_OFFLINE", "") in ("1", "true", "yes"):
        raise DataError(f"Coat is not in the cache ({root}) and RECGUARD_OFFLINE is set; {hint}")
    payload = fetch_verified(COAT_URL, COAT_SHA256, algorithm="sha256", what="Coat", hint=hint)
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for member in zf.namelist():
            name = Path(member).name
            if name.endswith(".ascii") or name.endswith(".txt"):
                atomic_write_bytes(root / name, zf.read(member))
    return root


@dataclass(frozen=True)
class MARData:
    """Clicks for training and a MAR-sampled, labelled test set.

    Attributes:
        train: ``[n, 2]`` (user, item) pairs with a click (0-based ids).
        test: ``[m, 2]`` (user, item) pairs sampled at random; ``test_relevance`` ``[m]`` their labels.
        propensity: the true exposure probability per item when known (semi-synthetic), else None.
    """

    name: str
    num_users: int
    num_items: int
    train: np.ndarray
    test: np.ndarray
    test_relevance: np.ndarray
    propensity: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.train[:, 1], minlength=self.num_items)

    def click_matrix(self) -> np.ndarray:
        y = np.zeros((self.num_users, self.num_items), dtype=np.float32)
        y[self.train[:, 0], self.train[:, 1]] = 1.0
        return y


def _read_matrix(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: not found", path=str(path))
    rows = []
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append([int(float(v)) for v in line.split()])
        except ValueError:
            raise DataError(f"{path}:{ln}: expected whitespace-separated integer ratings", path=str(path), line=ln) from None
        if rows and len(rows[-1]) != len(rows[0]):
            raise DataError(f"{path}:{ln}: {len(rows[-1])} columns, expected {len(rows[0])}", path=str(path), line=ln)
    m = np.asarray(rows, dtype=np.int64)
    if shape is not None and m.shape != shape:
        raise DataError(f"{path}: matrix is {m.shape}, expected {shape}", path=str(path))
    return m


def load_coat(path: str | os.PathLike, *, threshold: int = 4) -> MARData:
    """Coat from a folder holding ``train.ascii`` and ``test.ascii`` (user × item rating matrices)."""
    root = Path(path)
    if (root / "coat").is_dir() and not (root / "train.ascii").exists():
        root = root / "coat"
    if not (root / "train.ascii").exists():
        raise DataError(f"{root}: no train.ascii; give the folder of the Coat data (train.ascii, test.ascii)", path=str(root))
    tr = _read_matrix(root / "train.ascii")
    te = _read_matrix(root / "test.ascii", tr.shape)
    train = np.argwhere(tr >= threshold)
    test = np.argwhere(te > 0)
    rel = (te[test[:, 0], test[:, 1]] >= threshold).astype(np.float32)
    return MARData("coat", tr.shape[0], tr.shape[1], train, test, rel, info={"threshold": threshold, "path": str(root)})


def load_yahoo_r3(path: str | os.PathLike, *, threshold: int = 4) -> MARData:
    """Yahoo! R3 from a local folder (``*-train.txt`` / ``*-test.txt``: user item rating, 1-based)."""
    root = Path(path)
    trf = sorted(root.glob("*train*.txt"))
    tef = sorted(root.glob("*test*.txt"))
    if not trf or not tef:
        raise DataError(
            f"{root}: no *train*.txt / *test*.txt; Yahoo! R3 cannot be redistributed — request it from Yahoo Webscope "
            "(dataset R3) and pass its folder", path=str(root))

    def read(f: Path) -> np.ndarray:
        rows = []
        for ln, line in enumerate(f.read_text().splitlines(), 1):
            if line.strip():
                try:
                    u, i, r = (int(v) for v in line.split()[:3])
                except ValueError:
                    raise DataError(f"{f}:{ln}: expected 'user item rating'", path=str(f), line=ln) from None
                rows.append((u - 1, i - 1, r))
        return np.asarray(rows, dtype=np.int64)

    a, b = read(trf[0]), read(tef[0])
    nu, ni = int(max(a[:, 0].max(), b[:, 0].max()) + 1), int(max(a[:, 1].max(), b[:, 1].max()) + 1)
    train = a[a[:, 2] >= threshold][:, :2]
    return MARData("yahoo-r3", nu, ni, train, b[:, :2], (b[:, 2] >= threshold).astype(np.float32), info={"path": str(root)})


def semi_synthetic(
    *,
    eps: float = 5.0,
    power: float = 0.5,
    test_per_user: int = 16,
    dim: int = 20,
    rng: RNGLike = 0,
) -> MARData:
    """Saito et al.'s semi-synthetic protocol on the embedded ML-100k (see module docs).

    ``eps`` shifts predicted ratings before the sigmoid (higher = fewer relevant items),
    ``power`` is the exposure exponent p. Same seed → same data.
    """
    import torch

    from .._rng import derive_seed, torch_seeded
    gen = as_generator(rng)
    inter = _ratings_ml100k()
    nu, ni = int(inter[:, 0].max() + 1), int(inter[:, 1].max() + 1)
    with torch_seeded(derive_seed(gen)):
        P = torch.nn.Parameter(torch.randn(nu, dim) * 0.1)
        Q = torch.nn.Parameter(torch.randn(ni, dim) * 0.1)
        bu, bi = torch.nn.Parameter(torch.zeros(nu)), torch.nn.Parameter(torch.zeros(ni))
        mu = float(inter[:, 2].mean())
        opt = torch.optim.Adam([P, Q, bu, bi], lr=0.02)
        u = torch.from_numpy(inter[:, 0]).long()
        i = torch.from_numpy(inter[:, 1]).long()
        r = torch.from_numpy(inter[:, 2]).float()
        for _ in range(200):  # full-batch rating completion (100k ratings)
            pred = mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(1)
            loss = ((pred - r) ** 2).mean() + 1e-3 * (P.pow(2).mean() + Q.pow(2).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            rhat = (mu + bu[:, None] + bi[None, :] + P @ Q.T).clamp(1, 5).numpy()
    gamma = 1.0 / (1.0 + np.exp(-(rhat - eps)))
    counts = np.bincount(inter[:, 1], minlength=ni).astype(np.float64)
    theta_i = np.maximum((counts / counts.max()) ** power, 1e-3)
    clicks = gen.random((nu, ni)) < theta_i[None, :] * gamma
    train = np.argwhere(clicks)
    test_items = np.stack([gen.choice(ni, size=test_per_user, replace=False) for _ in range(nu)])
    test = np.stack([np.repeat(np.arange(nu), test_per_user), test_items.reshape(-1)], axis=1)
    rel = (gen.random(len(test)) < gamma[test[:, 0], test[:, 1]]).astype(np.float32)
    return MARData("ml-100k-semi-synthetic", nu, ni, train, test, rel, propensity=theta_i,
                   info={"eps": eps, "power": power, "mean_relevance": float(gamma.mean()), "clicks": int(len(train))})


def _ratings_ml100k() -> np.ndarray:
    """(user, item, rating) triples of the embedded ML-100k (0-based), from RecBole's .inter file."""
    from ._registry import _offline_hint, _recbole_ml100k

    found = _recbole_ml100k()
    if found is None:
        raise DataError(_offline_hint("ml-100k"))
    inter = found[0]
    rows = []
    for ln, line in enumerate(inter.read_text().splitlines()):
        if ln == 0 or not line.strip():
            continue
        u, i, r = line.split("\t")[:3]
        rows.append((int(u), int(i), float(r)))
    a = np.asarray(rows, dtype=np.float64)
    uids = {v: k for k, v in enumerate(np.unique(a[:, 0]))}
    iids = {v: k for k, v in enumerate(np.unique(a[:, 1]))}
    return np.stack([[uids[x] for x in a[:, 0]], [iids[x] for x in a[:, 1]], a[:, 2]], axis=1).astype(np.int64)


def load_mar(name: str, path: str | os.PathLike | None = None, *, rng: RNGLike = 0) -> MARData:
    """``coat`` / ``yahoo-r3`` (local folder) or ``semi-synthetic`` (embedded ML-100k)."""
    if name == "semi-synthetic":
        return semi_synthetic(rng=rng)
    if name == "coat" and path is None:
        return load_coat(fetch_coat())
    if name in ("coat", "yahoo-r3"):
        if path is None:
            raise ConfigError(f"{name} needs --path to its local folder" + (
                " (download: " + COAT_URL + ")" if name == "coat"
                else " (Yahoo! R3 cannot be redistributed; request it from Yahoo Webscope)"),
                param="path")
        return load_coat(path) if name == "coat" else load_yahoo_r3(path)
    raise ConfigError(f"unknown MAR dataset {name!r}; choose coat, yahoo-r3 or semi-synthetic", param="dataset")
