"""Adapters: audit a user's own PyTorch model (:class:`TorchVictim`) or expose a victim only
through its top-k lists (:class:`BlackBoxVictim`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._finite import check_module, check_scores
from .._io import atomic_directory, to_json
from .._rng import RNGLike, derive_seed, torch_seeded
from ..data import SequenceData, Split
from ..errors import ArtifactError, CapabilityError, ConfigError, QueryBudgetExceeded
from ._base import as_batch, mask_seen_, read_artifact, resolve_device

__all__ = ["TorchVictim", "BlackBoxVictim", "topk"]

FitFn = Callable[..., Any]


def topk(victim, seqs, k: int, exclude_seen: bool = True, batch_size: int = 1024) -> np.ndarray:
    """Top-``k`` item ids ``[B, k]`` from ``victim.score`` (seen items and padding excluded)."""
    if not 1 <= k <= victim.num_items:
        raise ConfigError(f"k must be in 1..{victim.num_items}, got {k}", param="k")
    x = as_batch(seqs, victim.max_len, victim.num_items)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        s = check_scores(victim.score(xb), victim)
        if exclude_seen:
            mask_seen_(s, xb)
        out.append(torch.topk(s, k, dim=1).indices.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, k), dtype=np.int64)


class TorchVictim:
    """Wrap your own ``nn.Module`` so recguard can audit it.

    The module maps a left-padded LongTensor ``[B, L]`` (0 = padding, most recent item
    last) to next-item scores ``[B, num_items + 1]``. Optional extras make it white-box:
    a method ``representation(x) -> [B, D]`` and ``item_embeddings() -> [num_items + 1, D]``.

    Args:
        module: the model.
        num_items: catalogue size N (items are 1..N).
        max_len: longest history passed to the module.
        fit_fn: ``fit_fn(module, split, user_weights, rng) -> None`` trains the module in place;
            without it, :meth:`fit` raises :class:`~recguard.errors.CapabilityError`.
            ``user_weights`` has one weight per user of ``split.train`` (None = all 1); honour it
            so that defenses that reweight users work.
    """

    architecture = "torch"

    def __init__(self, module: nn.Module, *, num_items: int, max_len: int = 200, fit_fn: FitFn | None = None, device: str = "auto"):
        if not isinstance(module, nn.Module):
            raise ConfigError(f"expected a torch.nn.Module, got {type(module).__name__}", param="module")
        if num_items < 1 or max_len < 1:
            raise ConfigError("num_items and max_len must be positive", param="num_items" if num_items < 1 else "max_len")
        self._device = resolve_device(device)
        self.module_ = module.to(self._device)
        self.num_items = int(num_items)
        self.max_len = int(max_len)
        self.fit_fn = fit_fn
        self.seed_: int | None = None

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def module(self) -> nn.Module:
        return self.module_

    def __repr__(self) -> str:
        return f"TorchVictim({type(self.module_).__name__}, num_items={self.num_items}, max_len={self.max_len})"

    def fit(self, data: SequenceData | Split, *, user_weights=None, rng: RNGLike = None, progress: bool | None = None) -> TorchVictim:
        if self.fit_fn is None:
            raise CapabilityError("this TorchVictim has no fit_fn; pass fit_fn=... to let recguard retrain it")
        split = data if isinstance(data, Split) else data.split()
        seed = derive_seed(rng)
        self.seed_ = seed
        with torch_seeded(seed):
            self.module_.train()
            self.fit_fn(self.module_, split, user_weights, np.random.default_rng(seed))
            self.module_.eval()
        check_module(self.module_, f"{type(self.module_).__name__} after fit_fn")
        return self

    @torch.no_grad()
    def score(self, seqs) -> torch.Tensor:
        x = as_batch(seqs, self.max_len, self.num_items).to(self.device)
        was = self.module_.training
        self.module_.eval()
        try:
            out = self.module_(x)
        finally:
            self.module_.train(was)
        if not isinstance(out, torch.Tensor) or out.shape != (x.shape[0], self.num_items + 1):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CapabilityError(f"module returned {shape}; expected scores of shape [B, num_items + 1] = "
                                  f"[{x.shape[0]}, {self.num_items + 1}]")
        out = out.float().clone()
        out[:, 0] = float("-inf")
        return check_scores(out, self)

    def recommend(self, seqs, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        return topk(self, seqs, k, exclude_seen)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """The module's scores with autograd enabled (for gradient-based attacks and attributions)."""
        return self.module_(x)

    def representation(self, seqs) -> torch.Tensor:
        fn = getattr(self.module_, "representation", None)
        if fn is None:
            raise CapabilityError("the wrapped module has no representation(x) method; it is not white-box")
        with torch.no_grad():
            return fn(as_batch(seqs, self.max_len, self.num_items).to(self.device))

    def item_embeddings(self) -> torch.Tensor:
        fn = getattr(self.module_, "item_embeddings", None)
        if fn is None:
            raise CapabilityError("the wrapped module has no item_embeddings() method; it is not white-box")
        return fn().detach()

    def layers(self) -> dict[str, nn.Module]:
        return {name: m for name, m in self.module_.named_modules() if name}

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the module's weights + ``config.json`` atomically (same rules as ``SASRec.save``)."""
        from safetensors.torch import save_file

        check_module(self.module_, f"{type(self.module_).__name__} (not saved)")

        meta = {
            "format": "recguard-victim", "format_version": 1, "architecture": "torch",
            "module_class": f"{type(self.module_).__module__}.{type(self.module_).__qualname__}",
            "recguard_version": __version__, "num_items": self.num_items, "max_len": self.max_len,
            "seed": self.seed_, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.module_.state_dict().items()}
        with atomic_directory(directory, kind="victim", overwrite=overwrite) as tmp:
            save_file(state, str(tmp / "weights.safetensors"))
            (tmp / "config.json").write_text(to_json(meta))
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path, *, module: nn.Module, fit_fn: FitFn | None = None, device: str = "auto") -> TorchVictim:
        """Load weights saved by :meth:`save` into ``module`` (a freshly built instance of your model)."""
        meta, state = read_artifact(directory)
        if meta["architecture"] != "torch":
            raise ArtifactError(f"{directory}: not a TorchVictim artifact (architecture {meta['architecture']!r}); use recguard.load")
        ml = meta.get("max_len")
        if isinstance(ml, bool) or not isinstance(ml, int) or ml < 1:
            raise ArtifactError(f"{Path(directory) / 'config.json'}: 'max_len' must be a positive integer, got {ml!r}")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"{directory}: weights do not fit {type(module).__name__}: {exc}") from None
        v = cls(module, num_items=meta["num_items"], max_len=meta["max_len"], fit_fn=fit_fn, device=device)
        v.seed_ = meta.get("seed")
        return v


class BlackBoxVictim:
    """Expose a victim only through top-``k`` lists, counting queries.

    One query = one submitted sequence. With ``query_budget`` set, a call that would
    exceed it raises :class:`~recguard.errors.QueryBudgetExceeded` before anything is
    served, so the caller keeps everything obtained so far.
    """

    def __init__(self, victim, *, k: int = 100, query_budget: int | None = None, exclude_seen: bool = True):
        if not 1 <= k <= victim.num_items:
            raise ConfigError(f"must be in 1..{victim.num_items}, got {k}", param="k")
        if query_budget is not None and query_budget < 0:
            raise ConfigError(f"must be >= 0, got {query_budget}", param="query_budget")
        self._victim = victim
        self.k = int(k)
        self.query_budget = query_budget
        self.exclude_seen = exclude_seen
        self.queries_used = 0

    @property
    def num_items(self) -> int:
        return self._victim.num_items

    @property
    def max_len(self) -> int:
        return self._victim.max_len

    @property
    def queries_left(self) -> int | None:
        return None if self.query_budget is None else self.query_budget - self.queries_used

    def recommend(self, seqs, k: int | None = None, exclude_seen: bool | None = None) -> np.ndarray:
        """Top-k lists ``[B, k]`` (k ≤ the API's k). Costs one query per sequence."""
        k = self.k if k is None else k
        if k > self.k:
            raise CapabilityError(f"this API returns at most {self.k} items per query, asked for {k}")
        x = as_batch(seqs, self.max_len, self.num_items)
        n = int(x.shape[0])
        if self.query_budget is not None and self.queries_used + n > self.query_budget:
            raise QueryBudgetExceeded(
                f"query budget exhausted: {self.queries_used} of {self.query_budget} used, {n} more requested",
                used=self.queries_used, budget=self.query_budget,
            )
        self.queries_used += n
        return topk(self._victim, x, k, self.exclude_seen if exclude_seen is None else exclude_seen)

    def score(self, seqs):
        raise CapabilityError("a BlackBoxVictim exposes only top-k lists (recommend), not scores")

    def __repr__(self) -> str:
        return f"BlackBoxVictim(k={self.k}, queries_used={self.queries_used}, budget={self.query_budget})"
