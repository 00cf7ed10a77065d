"""Adapters: audit a user's own PyTorch model (:class:`TorchVictim`) or expose a victim only
through its top-k lists (:class:`BlackBoxVictim`)."""

from __future__ import annotations

import copy

import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .._version import __version__
from .._finite import check_module, check_scores
from .._io import atomic_directory, to_json
from .._rng import RNGLike, derive_seed, torch_seeded
from ..data import SequenceData, Split
from ..errors import ArtifactError, CapabilityError, ConfigError, QueryBudgetExceeded
from ._base import (as_batch, check_adversarial, check_item_weights, eval_mode, read_artifact, resolve_device,
                    restore_provenance, topk)

__all__ = ["TorchVictim", "BlackBoxVictim", "ListsOnly", "topk"]

FitFn = Callable[..., Any]


def _accepts(fn, name: str) -> bool:
    """Whether ``fn`` takes the keyword argument ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) or p.kind == p.VAR_KEYWORD for p in params)


class TorchVictim:
    """Wrap your own ``nn.Module`` so recguard can audit it like its own victims.

    The module maps a left-padded LongTensor ``[B, L]`` (0 = padding, most recent item
    last) to next-item scores ``[B, num_items + 1]``. Each further piece unlocks
    capabilities (``victim.capabilities()`` lists what this one has; docs/custom-models.md
    has the table):

    - module methods ``representation(x) -> [B, D]`` and ``item_embeddings() -> [N+1, D]``
      (white box: probes, the surrogate attack's influence objective), plus
      ``score_representation(rep) -> [B, N+1]`` when scores are not ``rep @ item_embeddings().T``;
    - ``hidden_states(x) -> [B, L, D]``, the state at every position (LoRec, fast distillation,
      probe training on positions);
    - an ``nn.Embedding`` embedding the input ids: named by ``item_embedding`` or found as the
      one embedding with N+1 (or N+2) rows (gradient attacks, captum attributions);
    - ``fit_fn(module, split, user_weights, rng)`` retrains it (every audit cell); with a
      keyword argument ``item_weights`` it can train MNAR-debiased, with ``on_epoch_end`` it
      lets LoRec reweight users between epochs.

    Args:
        module: the model.
        num_items: catalogue size N (items are 1..N).
        max_len: longest history passed to the module.
        fit_fn: trains the module in place, see above. ``user_weights`` has one weight per user
            of ``split.train`` (None = all 1); multiply each user's loss terms by it.
            ``on_epoch_end(epoch)`` returns an :class:`~recguard.victims.EpochUpdate`: use its
            ``user_weights`` (when not None) from the next epoch on, stop when ``stop`` is set,
            and forget earlier validations when ``reset_selection`` is set.
        causal: True when position t of ``hidden_states`` depends only on items up to t.
        item_embedding: name of the sub-module that embeds the input ids.
        layers: names of sub-modules whose output is ``[B, L, D]`` aligned with the input (probe sites).
        max_epochs: the most epochs ``fit_fn`` trains (LoRec scales its schedule to it).
    """

    architecture = "torch"

    def __init__(self, module: nn.Module, *, num_items: int, max_len: int = 200, fit_fn: FitFn | None = None, device: str = "auto",
                 causal: bool = False, item_embedding: str | None = None, layers: Sequence[str] = (), max_epochs: int | None = None):
        if not isinstance(module, nn.Module):
            raise ConfigError(f"expected a torch.nn.Module, got {type(module).__name__}", param="module")
        for name, v in (("num_items", num_items), ("max_len", max_len)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"must be a positive integer, got {v!r}", param=name)
        if max_epochs is not None and (isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1):
            raise ConfigError(f"must be a positive integer or None, got {max_epochs!r}", param="max_epochs")
        if fit_fn is not None and not callable(fit_fn):
            raise ConfigError(f"must be a function fit_fn(module, split, user_weights, rng), got {type(fit_fn).__name__}", param="fit_fn")
        self._device = resolve_device(device)
        self.module_ = module.to(self._device)
        self.num_items = int(num_items)
        self.max_len = int(max_len)
        self.fit_fn = fit_fn
        self.causal = bool(causal)
        self.max_epochs = max_epochs
        names = dict(module.named_modules())
        for name in [*layers, *([item_embedding] if item_embedding else [])]:
            if name not in names or not name:
                raise ConfigError(f"the module has no sub-module {name!r}; it has: {', '.join(n for n in names if n)}",
                                  param="item_embedding" if name == item_embedding else "layers")
        self._layer_names = tuple(layers)
        self._embedding_name = item_embedding
        self.seed_: int | None = None
        self.fit_info_: dict = {}
        self.history_: list[dict] = []
        self.data_fingerprint_: str | None = None
        self.dataset_spec_: dict | None = None

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def module(self) -> nn.Module:
        return self.module_

    def clone(self) -> TorchVictim:
        """An independent copy with the same settings and a copy of the module as it is now: fitting
        the clone never changes this victim (what conformance checks and repeated trainings use)."""
        return TorchVictim(copy.deepcopy(self.module_), num_items=self.num_items, max_len=self.max_len, fit_fn=self.fit_fn,
                           device=str(self.device), causal=self.causal, item_embedding=self._embedding_name,
                           layers=self._layer_names, max_epochs=self.max_epochs)

    def parameters(self):
        return self.module_.parameters()

    def __repr__(self) -> str:
        return f"TorchVictim({type(self.module_).__name__}, num_items={self.num_items}, max_len={self.max_len})"

    # ------------------------------------------------------------------ capabilities
    def _method(self, name: str):
        fn = getattr(self.module_, name, None)
        return fn if callable(fn) else None

    def _embedding(self) -> nn.Module | None:
        if self._embedding_name:
            return self.module_.get_submodule(self._embedding_name)
        found = [m for m in self.module_.modules()
                 if isinstance(m, nn.Embedding) and m.num_embeddings in (self.num_items + 1, self.num_items + 2)]
        return found[0] if len(found) == 1 else None

    def capabilities(self) -> frozenset[str]:
        """What this wrapped model offers (see :data:`~recguard.victims.CAPABILITIES`)."""
        have = {"distill"}
        if self.fit_fn is not None:
            have.add("retrain")
            if _accepts(self.fit_fn, "item_weights"):
                have.add("item_weights")
            if _accepts(self.fit_fn, "on_epoch_end"):
                have.add("epoch_callback")
            if _accepts(self.fit_fn, "adversarial"):
                have.add("adversarial")
        if self._method("representation") and self._method("item_embeddings"):
            have.add("white_box")
        if self._method("hidden_states"):
            have.add("hidden_states")
        if self._embedding() is not None:
            have.add("gradients")
        if self._layer_names:
            have.add("layers")
        return frozenset(have)

    def _need(self, cap: str, who: str) -> None:
        from ._contract import require

        require(self, [cap], who=who)

    # ----------------------------------------------------------------------- training
    def fit(self, data: SequenceData | Split, *, user_weights=None, item_weights=None, rng: RNGLike = None,
            progress: bool | None = None, on_epoch_end=None, adversarial=None) -> TorchVictim:
        """Retrain with ``fit_fn`` (see the class docstring); ``item_weights`` and ``on_epoch_end`` are
        passed on only when given, so a four-argument ``fit_fn`` keeps working without them."""
        from ._train import check_user_weights
        from .trainer import EpochEnd

        self._need("retrain", "fit")
        split = data if isinstance(data, Split) else data.split()
        n_users = split.train.num_users
        uw = None if user_weights is None else check_user_weights(user_weights, n_users)
        extra: dict = {}
        if item_weights is not None:
            self._need("item_weights", "fit(item_weights=...)")
            extra["item_weights"] = check_item_weights(item_weights, split.train.num_items)
        if adversarial is not None:
            self._need("adversarial", "fit(adversarial=...)")
            extra["adversarial"] = check_adversarial(adversarial)
        state = {"epochs": 0, "history": []}
        handler = None
        if on_epoch_end is not None:
            self._need("epoch_callback", "fit(on_epoch_end=...)")
            handler = EpochEnd(lambda epoch: on_epoch_end(epoch, self), self.module_, lambda w: check_user_weights(w, n_users))

            def epoch_end(epoch: int):
                update = handler(epoch)
                state["epochs"] = int(epoch)
                state["history"].append({"epoch": int(epoch), "reweighted": update.user_weights is not None})
                return update

            extra["on_epoch_end"] = epoch_end
        seed = derive_seed(rng)
        self.seed_ = seed
        t0 = time.perf_counter()
        with torch_seeded(seed):
            self.module_.train()
            self.fit_fn(self.module_, split, uw, np.random.default_rng(seed), **extra)
            self.module_.eval()
        wall = time.perf_counter() - t0
        check_module(self.module_, f"{type(self.module_).__name__} after fit_fn")
        self.history_ = state["history"]
        callback_s = 0.0 if handler is None else handler.time_s
        self.fit_info_ = {"wall_time_s": wall, "train_time_s": wall - callback_s, "callback_time_s": callback_s,
                          "epochs_run": state["epochs"] or None, "seed": seed, "device": str(self.device),
                          "train_users": int(n_users if uw is None else (uw > 0).sum())}
        self.data_fingerprint_ = split.full.fingerprint()
        return self

    def build(self, num_items: int) -> nn.Module:
        """The wrapped module re-initialised, as a distillation target: its ``reset_parameters()``
        when it has one, else that of every sub-module that has one (under the caller's seed)."""
        if int(num_items) != self.num_items:
            raise ConfigError(f"this TorchVictim was built for {self.num_items} items, not {num_items}", param="num_items")
        if callable(getattr(self.module_, "reset_parameters", None)):
            self.module_.reset_parameters()
        else:
            for m in self.module_.modules():
                if m is not self.module_ and callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()
        return self.module_

    # ------------------------------------------------------------------------ scoring
    def _batch(self, seqs) -> torch.Tensor:
        return as_batch(seqs, self.max_len, self.num_items).to(self.device)

    def _check_scores_shape(self, out, b: int) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape != (b, self.num_items + 1):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CapabilityError(f"module returned {shape}; expected scores of shape [B, num_items + 1] = "
                                  f"[{b}, {self.num_items + 1}]")
        return out

    @torch.no_grad()
    def score(self, seqs) -> torch.Tensor:
        x = self._batch(seqs)
        with eval_mode(self.module_):
            out = self._check_scores_shape(self.module_(x), x.shape[0])
        out = out.float().clone()
        out[:, 0] = float("-inf")
        return check_scores(out, self)

    def recommend(self, seqs, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        return topk(self, seqs, k, exclude_seen)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """The module's scores with autograd enabled (for gradient-based attacks and attributions)."""
        return self._check_scores_shape(self.module_(x), x.shape[0])

    @torch.no_grad()
    def representation(self, seqs) -> torch.Tensor:
        x = self._batch(seqs)
        with eval_mode(self.module_):
            return self.differentiable_representation(x)

    def differentiable_representation(self, x: torch.Tensor) -> torch.Tensor:
        self._need("white_box", "representation")
        return self.module_.representation(x)

    def score_representation(self, rep: torch.Tensor) -> torch.Tensor:
        self._need("white_box", "score_representation")
        fn = self._method("score_representation")
        out = fn(rep) if fn is not None else rep @ self.module_.item_embeddings().T
        return self._check_scores_shape(out, rep.shape[0])

    def item_embeddings(self) -> torch.Tensor:
        self._need("white_box", "item_embeddings")
        return self.module_.item_embeddings().detach()

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        self._need("hidden_states", "hidden_states")
        return self.module_.hidden_states(x)

    def input_embedding_layer(self) -> nn.Module:
        self._need("gradients", "input_embedding_layer")
        return self._embedding()

    def layers(self) -> dict[str, nn.Module]:
        return {name: self.module_.get_submodule(name) for name in self._layer_names}

    # ---------------------------------------------------------------------- artifacts
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the module's weights + ``config.json`` atomically (same rules as ``SASRec.save``)."""
        from safetensors.torch import save_file

        check_module(self.module_, f"{type(self.module_).__name__} (not saved)")
        meta = {
            "format": "recguard-victim", "format_version": 1, "architecture": "torch",
            "module_class": f"{type(self.module_).__module__}.{type(self.module_).__qualname__}",
            "recguard_version": __version__, "num_items": self.num_items, "max_len": self.max_len, "causal": self.causal,
            "seed": self.seed_, "data_fingerprint": self.data_fingerprint_,
            "factory": getattr(self, "factory_", None),  # MODULE:FACTORY and its config, when built from one
            "dataset": self.dataset_spec_, "training": self.fit_info_, "history": self.history_,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.module_.state_dict().items()}
        with atomic_directory(directory, kind="victim", overwrite=overwrite) as tmp:
            save_file(state, str(tmp / "weights.safetensors"))
            (tmp / "config.json").write_text(to_json(meta))
        return Path(directory)

    def load_weights(self, directory: str | Path) -> TorchVictim:
        """Load the weights of a TorchVictim saved by :meth:`save` into this one's module (same
        model class and catalogue); returns ``self``."""
        meta, state = read_artifact(directory)
        if meta["architecture"] != "torch" or meta["num_items"] != self.num_items:
            raise ArtifactError(f"{directory}: not a TorchVictim artifact for {self.num_items} items")
        try:
            self.module_.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"{directory}: weights do not fit {type(self.module_).__name__}: {exc}") from None
        self.module_.eval()
        return restore_provenance(self, meta)

    @classmethod
    def load(cls, directory: str | Path, *, module: nn.Module, fit_fn: FitFn | None = None, device: str = "auto",
             **options) -> TorchVictim:
        """Load weights saved by :meth:`save` into ``module`` (a freshly built instance of your model);
        ``options`` are the other constructor arguments (``item_embedding``, ``layers``, ...)."""
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
        options.setdefault("causal", bool(meta.get("causal", False)))
        v = cls(module, num_items=meta["num_items"], max_len=ml, fit_fn=fit_fn, device=device, **options)
        return restore_provenance(v, meta)


class ListsOnly:
    """A victim seen only through the lists it serves: the catalogue size and input length of
    the wrapped ``_victim``, no scores and no capability (subclasses define ``recommend``)."""

    _victim: Any

    @property
    def num_items(self) -> int:
        return self._victim.num_items

    @property
    def max_len(self) -> int:
        return self._victim.max_len

    def score(self, seqs):
        raise CapabilityError(f"{type(self).__name__} exposes only its lists (recommend), not scores")

    def capabilities(self) -> frozenset[str]:
        """None: only lists are served."""
        return frozenset()


class BlackBoxVictim(ListsOnly):
    """Expose a victim only through top-``k`` lists, counting queries.

    One query = one submitted sequence. With ``query_budget`` set, a call that would
    exceed it raises :class:`~recguard.errors.QueryBudgetExceeded` before anything is
    served, so the caller keeps everything obtained so far.
    """

    def __init__(self, victim, *, k: int = 100, query_budget: int | None = None, exclude_seen: bool = True):
        most = min(victim.num_items, getattr(victim, "max_list", victim.num_items))
        if not 1 <= k <= most:
            served = f" (the served API answers with at most {most} items)" if most < victim.num_items else ""
            raise ConfigError(f"must be in 1..{most}{served}, got {k}", param="k")
        if query_budget is not None and query_budget < 0:
            raise ConfigError(f"must be >= 0, got {query_budget}", param="query_budget")
        self._victim = victim
        self.k = int(k)
        self.query_budget = query_budget
        self.exclude_seen = exclude_seen
        self.queries_used = 0

    @property
    def wrapped(self):
        """The model behind the API: for measurements on the owner's side (an attacker never reads it)."""
        return self._victim

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
        return np.asarray(self._victim.recommend(x, k=k, exclude_seen=self.exclude_seen if exclude_seen is None else exclude_seen))

    def __repr__(self) -> str:
        return f"BlackBoxVictim(k={self.k}, queries_used={self.queries_used}, budget={self.query_budget})"
