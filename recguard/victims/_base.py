"""The victim protocol, the shared white-box base class, scoring helpers and artifacts."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._version import __version__
from .._finite import check_module, check_scores, check_tensors, score_rows
from .._io import atomic_directory, read_json, to_json
from .._rng import RNGLike
from ..data import SequenceData, Split, pad_sequences
from ..errors import ArtifactError, ConfigError, NotFittedError
from ._config import BaseConfig

__all__ = ["Victim", "WhiteBoxVictim", "SequentialVictim", "as_batch", "resolve_device", "topk", "register", "eval_mode",
           "term_weights", "check_item_weights"]

SeqsLike = Any  # np.ndarray | torch.Tensor | Sequence[Sequence[int]]


@runtime_checkable
class Victim(Protocol):
    """What recguard needs from any recommender it audits (black-box capabilities).

    ``score(seqs)`` takes left-padded item sequences ``[B, L]`` (0 = padding, most
    recent item last) and returns ``[B, num_items + 1]`` scores whose column 0 is
    ``-inf``. ``recommend`` returns the top-k item ids ``[B, k]``. ``fit`` retrains from
    scratch; audits call it once per cell.
    """

    num_items: int
    max_len: int

    def score(self, seqs: SeqsLike) -> torch.Tensor: ...

    def recommend(self, seqs: SeqsLike, k: int = 10, exclude_seen: bool = True) -> np.ndarray: ...

    def fit(self, data: SequenceData | Split, *, user_weights: np.ndarray | None = None, rng: RNGLike = None) -> Victim: ...

    def clone(self) -> Victim: ...


@runtime_checkable
class WhiteBoxVictim(Victim, Protocol):
    """A victim whose internals are visible. The full surface, with shapes, is in
    :mod:`recguard.victims._contract`; which parts a victim offers is ``capabilities()``."""

    causal: bool

    def representation(self, seqs: SeqsLike) -> torch.Tensor: ...

    def differentiable_representation(self, x: torch.Tensor) -> torch.Tensor: ...

    def score_representation(self, rep: torch.Tensor) -> torch.Tensor: ...

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor: ...

    def item_embeddings(self) -> torch.Tensor: ...

    def capabilities(self) -> frozenset[str]: ...


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when torch sees a GPU, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'", param="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA was requested but torch sees no GPU; use device='auto' or 'cpu'", param="device")
    return dev


def as_batch(seqs: SeqsLike, max_len: int, num_items: int | None = None) -> torch.Tensor:
    """Any sequence batch → left-padded int64 tensor ``[B, <= max_len]`` (most recent ``max_len`` items)."""
    if isinstance(seqs, torch.Tensor):
        t = seqs.to(torch.int64)
    elif isinstance(seqs, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(seqs, dtype=np.int64))
    else:
        t = torch.from_numpy(pad_sequences(list(seqs), max_len))
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ConfigError(f"sequences must be a [batch, length] matrix, got shape {tuple(t.shape)}", param="seqs")
    if t.shape[1] > max_len:
        t = t[:, -max_len:]
    if num_items is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) > num_items):
        raise ConfigError(f"item ids must be in 0..{num_items} (0 = padding)", param="seqs")
    return t


def check_item_weights(item_weights, num_items: int) -> np.ndarray | None:
    """``item_weights`` as N+1 finite weights >= 0 (float32), or None."""
    if item_weights is None:
        return None
    iw = np.asarray(item_weights, dtype=np.float64).reshape(-1)
    if len(iw) != num_items + 1 or not np.all(np.isfinite(iw)) or np.any(iw < 0):
        raise ConfigError(f"needs {num_items + 1} finite weights >= 0 (one per item id 0..N)", param="item_weights")
    return iw.astype(np.float32)


def check_adversarial(adversarial) -> tuple[float, float] | None:
    """``(eps, lam)`` as two finite numbers > 0, or None."""
    if adversarial is None:
        return None
    try:
        eps, lam = (float(v) for v in adversarial)
    except (TypeError, ValueError):
        raise ConfigError(f"must be a pair (eps, lam), got {adversarial!r}", param="adversarial") from None
    if not (np.isfinite(eps) and np.isfinite(lam) and eps > 0 and lam > 0):
        raise ConfigError(f"eps and lam must be finite and > 0, got {adversarial!r}", param="adversarial")
    return eps, lam


def term_weights(w: torch.Tensor, targets: torch.Tensor, item_weights: torch.Tensor | None) -> torch.Tensor:
    """Per-term loss weights: the user's weight times the target item's weight (if any)."""
    return w if item_weights is None else w * item_weights[targets]


def prediction_terms(h: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, keep: torch.Tensor,
                     item_weights: torch.Tensor | None, dense: bool | None = None):
    """The loss terms at the ``keep`` positions ([B, L] bool) of states ``h`` [B, L, D] whose items are
    ``targets`` [B, L], for users of ``weights`` [B]: ``(h [P, D], targets [P], w [P])``.

    Compact (``dense=False``, the default on a CPU): only the kept positions, P = ``keep.sum()``.
    Dense (``dense=True``, the default on a GPU): every position, P = B·L, the others with weight 0 and
    item 1 as a stand-in target. Selecting by a mask sizes the result by a count only the device knows,
    so on a GPU the host would wait for the device at every step; a weight-0 term adds exactly nothing
    to the loss or to any gradient of :class:`~recguard.victims._objective.Objective`.
    """
    w = weights[:, None].expand_as(targets)
    if h.is_cuda if dense is None else dense:
        t = torch.where(keep, targets, torch.ones_like(targets)).reshape(-1)
        return h.reshape(-1, h.shape[-1]), t, term_weights(w.reshape(-1), t, item_weights) * keep.reshape(-1)
    t = targets[keep]
    return h[keep], t, term_weights(w[keep], t, item_weights)


@contextlib.contextmanager
def eval_mode(target, training: bool = False):
    """Run a block with a victim's module (or a module) in eval mode (``training=True``: train
    mode), restoring its mode afterwards."""
    module = target if isinstance(target, nn.Module) else target.module
    was = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(was)


def mask_seen_(scores: torch.Tensor, seqs: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """In place: set the scores of items present in ``seqs`` (and padding) to ``-inf``.

    ``keep`` ([B] item ids) are left unmasked (the held-out target when it repeats a seen item).
    """
    if keep is not None:
        saved = scores.gather(1, keep.view(-1, 1))
    scores.scatter_(1, seqs.to(scores.device), float("-inf"))
    if keep is not None:
        scores.scatter_(1, keep.view(-1, 1), saved)
    scores[:, 0] = float("-inf")
    return scores


_REGISTRY: dict[str, type[SequentialVictim]] = {}


def topk(victim, seqs, k: int, exclude_seen: bool = True, batch_size: int | None = None) -> np.ndarray:
    """Top-``k`` item ids ``[B, k]`` from ``victim.score`` (seen items and padding excluded);
    scored in user batches whose score matrix stays within 16 MB by default (``score_rows``)."""
    if not 1 <= k <= victim.num_items:
        raise ConfigError(f"k must be in 1..{victim.num_items}, got {k}", param="k")
    if batch_size is None:
        batch_size = score_rows(victim.num_items)
    x = as_batch(seqs, victim.max_len, victim.num_items)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        s = check_scores(victim.score(xb), victim)
        if exclude_seen:
            mask_seen_(s, xb)
        out.append(torch.topk(s, k, dim=1).indices.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, k), dtype=np.int64)


def register(cls: type[SequentialVictim]) -> type[SequentialVictim]:
    _REGISTRY[cls.architecture] = cls
    return cls


class SequentialVictim:
    """Base class of recguard's trainable white-box victims (SASRec, BERT4Rec, GRU4Rec).

    ``__init__`` stores the config; ``fit`` learns ``module_`` (the torch model) and
    ``num_items``. Subclasses define ``architecture``, ``Config``, ``new_module(num_items)``
    (an untrained ``nn.Module`` with ``hidden_states``/``represent``/``logits``-style methods the
    subclass reads) and ``training_loss(module, batch, weights, gen, item_weights)``.
    """

    architecture: ClassVar[str] = ""
    Config: ClassVar[type[BaseConfig]] = BaseConfig
    causal: ClassVar[bool] = True  # position t sees only items up to t (BERT4Rec: False)
    aligned_layers: ClassVar[bool] = True  # layers() has sub-modules whose outputs align with the input

    def __init__(self, config: BaseConfig | None = None, **overrides: Any):
        if config is None:
            config = self.Config.from_dict(overrides)
        elif overrides:
            config = config.replace(**overrides)
        if not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}", param="config")
        self.config = config
        self.module_: nn.Module | None = None
        self.num_items = 0
        self.seed_: int | None = None
        self.data_fingerprint_: str | None = None
        self.history_: list[dict] = []
        self.fit_info_: dict = {}
        #: ``(epoch, state_dict)`` checkpoints kept by ``fit(keep_checkpoints=K)`` (training-data influence)
        self.checkpoints_: list[tuple[int, dict]] = []
        self.dataset_spec_: dict | None = None
        self.objective_ = None
        self._device = resolve_device(config.device)

    @property
    def objective(self):
        """The training objective (:class:`~recguard.victims._objective.Objective`) that ``fit``
        resolved from ``config.loss`` for this catalogue; resolved on demand otherwise."""
        obj = self.objective_
        if obj is None or obj.num_items != self.num_items:
            from ._objective import resolve_objective

            obj = self.objective_ = resolve_objective(self.config, self.num_items, device=self.device)
        return obj

    # ----------------------------------------------------------------- model hooks
    def new_module(self, num_items: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_loss(self, module: nn.Module, batch: torch.Tensor, weights: torch.Tensor, gen: torch.Generator,
                    item_weights: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _next_item_terms(module: nn.Module, batch: torch.Tensor, weights: torch.Tensor, item_weights: torch.Tensor | None,
                         **state_args):
        """States, targets (ids) and weights of every next-item prediction in ``batch``.

        ``batch`` [B, L+1] is left-padded; input position t predicts item t+1 wherever
        both are real items. Returns ``h`` [P, D], ``targets`` [P], ``w`` [P] (user weight
        times the target item's weight, when ``fit`` got ``item_weights``), laid out as
        :func:`prediction_terms` lays them out on the batch's device. ``state_args`` go to
        ``module.hidden_states`` (SASRec's item table under item dropout).
        """
        inp, tgt = batch[:, :-1], batch[:, 1:]
        return prediction_terms(module.hidden_states(inp, **state_args), tgt, weights, (tgt > 0) & (inp > 0), item_weights)

    # ------------------------------------------------------------------ properties
    @property
    def max_len(self) -> int:
        return self.config.max_len

    @property
    def device(self) -> torch.device:
        return self._device

    def _require_fitted(self) -> nn.Module:
        if self.module_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not trained yet: call fit(data) or recguard.load(dir)")
        return self.module_

    def __repr__(self) -> str:
        state = f"num_items={self.num_items}" if self.module_ is not None else "unfitted"
        return f"{type(self).__name__}({state}, hidden={self.config.hidden}, max_len={self.config.max_len})"

    # -------------------------------------------------------------------- training
    def fit(
        self,
        data: SequenceData | Split,
        *,
        user_weights: np.ndarray | Sequence[float] | None = None,
        item_weights: np.ndarray | Sequence[float] | None = None,
        rng: RNGLike = None,
        progress: bool | None = None,
        on_epoch_end=None,
        adversarial: tuple[float, float] | None = None,
        keep_checkpoints: int | None = None,
    ) -> SequentialVictim:
        """Train on ``data`` (leave-one-out: train part, early stopping on validation NDCG@10).

        Args:
            data: a :class:`SequenceData` (split here) or a ready :class:`Split`.
            user_weights: one weight ≥ 0 per user of ``data`` (or of ``split.train``), multiplying
                that user's loss terms; a user with weight 0 has no influence at all.
            item_weights: one weight ≥ 0 per item id 0..N multiplying every loss term whose
                target is that item (e.g. inverse propensities for MNAR-debiased training).
            rng: seed or ``numpy.random.Generator``; the same seed gives the same model.
            progress: show a progress bar (default: when stderr is a terminal).
            on_epoch_end: ``on_epoch_end(epoch, victim)`` after every epoch; returns None, new
                user weights, :data:`~recguard.victims.STOP` or an
                :class:`~recguard.victims.EpochUpdate` (in-training defenses such as LoRec,
                time budgets, logging).
            adversarial: ``(eps, lam)``: APR adversarial training of the item embeddings (the
                ``apr`` defense).
            keep_checkpoints: keep that many checkpoints, evenly spaced over training and ending
                with the returned weights, in ``checkpoints_`` (``(epoch, state_dict)`` pairs on the
                CPU) for training-data influence (:func:`recguard.probes.influence`); default: the
                config's ``keep_checkpoints`` (0).
        """
        from ._objective import COUNTED_SAMPLERS, resolve_objective
        from ._train import train

        split = data if isinstance(data, Split) else data.split()
        iw = check_item_weights(item_weights, split.train.num_items)
        n_items = split.train.num_items
        counts = np.bincount(split.train.items, minlength=n_items + 1)[1:] if self.config.sampler in COUNTED_SAMPLERS else None
        self.objective_ = resolve_objective(self.config, n_items, counts, device=self.device)
        if keep_checkpoints is None:
            keep_checkpoints = self.config.keep_checkpoints
        if isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or keep_checkpoints < 0:
            raise ConfigError(f"must be a whole number of checkpoints >= 0, got {keep_checkpoints!r}", param="keep_checkpoints")
        fitted = train(self, split, user_weights=user_weights, item_weights=None if iw is None else torch.tensor(iw, device=self.device),
                       rng=rng, progress=progress, on_epoch_end=on_epoch_end, adversarial=check_adversarial(adversarial),
                       keep_checkpoints=keep_checkpoints)
        self.seed_, self.history_, self.fit_info_ = fitted.seed, fitted.history, fitted.info
        self.checkpoints_ = fitted.record.checkpoints
        self.data_fingerprint_ = split.full.fingerprint()
        return self

    # ------------------------------------------------------------ the white-box contract
    def capabilities(self) -> frozenset[str]:
        """Every capability of :data:`~recguard.victims.CAPABILITIES` (GRU4Rec has no input-aligned
        layers: it runs right-aligned)."""
        from ._contract import CAPABILITIES

        return frozenset(c for c in CAPABILITIES if c != "layers" or self.aligned_layers)

    @property
    def max_epochs(self) -> int:
        """The most epochs ``fit`` trains (LoRec scales its calibration schedule to it)."""
        return self.config.epochs

    def clone(self) -> SequentialVictim:
        """An independent, unfitted victim with the same settings (``fit`` builds a fresh module
        anyway); fitting it never changes this one."""
        return type(self)(self.config)

    def build(self, num_items: int, init_std: float | None = None) -> nn.Module:
        """A fresh, untrained module for ``num_items`` items (its weights redrawn from N(0, ``init_std``)
        when given), moved to the victim's device and installed as ``module``: what ``fit`` and
        distillation train."""
        from ._layers import reinitialise

        self.num_items = int(num_items)
        module = self.new_module(self.num_items)
        if init_std is not None:
            reinitialise(module, float(init_std))
        self.module_ = module.to(self.device)
        return self.module_

    @torch.no_grad()
    def representation(self, seqs: SeqsLike) -> torch.Tensor:
        """User state ``[B, hidden]`` that the scores are computed from (last position), eval mode."""
        module = self._require_fitted()
        x = as_batch(seqs, self.max_len, self.num_items).to(self.device)
        with eval_mode(module):
            return module.represent(x)

    def differentiable_representation(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`representation` with autograd on and the module's mode kept (``x`` a left-padded
        LongTensor on :attr:`device`)."""
        return self._require_fitted().represent(x)

    def score_representation(self, rep: torch.Tensor) -> torch.Tensor:
        """The scoring head: ``[B, num_items + 1]`` scores from states ``[B, D]`` (differentiable;
        the padding column is not masked)."""
        return self._require_fitted().logits(rep)

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` states at every position of left-padded ``x`` (differentiable, module mode kept)."""
        return self._require_fitted().hidden_states(x)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, num_items + 1]`` with autograd enabled (no padding mask); the module's
        current train/eval mode is kept. ``x`` is a left-padded int64 tensor on ``self.device``."""
        return self.score_representation(self.differentiable_representation(x))

    @torch.no_grad()
    def score(self, seqs: SeqsLike) -> torch.Tensor:
        """Scores ``[B, num_items + 1]`` for the next item; column 0 (padding) is ``-inf``."""
        out = self.score_representation(self.representation(seqs))
        out[:, 0] = float("-inf")
        return check_scores(out, self)

    def item_embeddings(self) -> torch.Tensor:
        """Output item embedding matrix ``[num_items + 1, hidden]`` (row 0 = padding)."""
        return self._require_fitted().output_embeddings().detach()

    def input_embedding_layer(self) -> nn.Module:
        """The ``nn.Embedding`` that embeds the input ids (gradient attacks and attributions
        differentiate with respect to its output)."""
        return self._require_fitted().item_emb

    def layers(self) -> dict[str, nn.Module]:
        """Sub-modules whose output is ``[B, L, D]`` aligned with the left-padded input (probe
        sites: ``item_embedding``, ``block.0`` ..., ``final_norm``/``output``)."""
        return dict(self._require_fitted().named_layers())

    @property
    def module(self) -> nn.Module:
        """The ``nn.Module`` holding the parameters (for optimisers and train/eval mode)."""
        return self._require_fitted()

    def parameters(self):
        """The module's trainable parameters (what distillation optimises)."""
        return self._require_fitted().parameters()

    def recommend(self, seqs: SeqsLike, k: int = 10, exclude_seen: bool = True) -> np.ndarray:
        """Top-``k`` item ids ``[B, k]`` per sequence (seen items excluded by default)."""

        self._require_fitted()
        return topk(self, seqs, k, exclude_seen)

    # ------------------------------------------------------------------- artifacts
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``weights.safetensors`` + ``config.json`` atomically to ``directory`` (and
        ``checkpoints.safetensors`` when training kept checkpoints: ``fit(keep_checkpoints=K)``).

        ``directory`` must not exist, be empty, or (with ``overwrite=True``) hold a victim saved
        by recguard and nothing else; anything else is refused with
        :class:`~recguard.errors.OutputExistsError` and left untouched."""
        from safetensors.torch import save_file

        module = self._require_fitted()
        check_module(module, f"{type(self).__name__} (not saved)")
        directory = Path(directory)
        meta = {
            "format": "recguard-victim",
            "format_version": 1,
            "architecture": self.architecture,
            "recguard_version": __version__,
            "torch_version": torch.__version__,
            "config": self.config.to_dict(),
            "num_items": self.num_items,
            "seed": self.seed_,
            "data_fingerprint": self.data_fingerprint_,
            "dataset": self.dataset_spec_,
            "training": self.fit_info_,
            "history": self.history_,
            "checkpoint_epochs": [int(e) for e, _ in self.checkpoints_],
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        state = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
        kept = {f"{e}/{k}": v.contiguous() for e, st in self.checkpoints_ for k, v in st.items()}
        with atomic_directory(directory, kind="victim", overwrite=overwrite) as tmp:
            save_file(state, str(tmp / "weights.safetensors"))
            if kept:
                save_file(kept, str(tmp / "checkpoints.safetensors"))
            (tmp / "config.json").write_text(to_json(meta))
        return directory

    @classmethod
    def from_artifact(cls, meta: dict, state: dict[str, torch.Tensor], device: str | None, where: Path) -> SequentialVictim:
        cfg_path = where / "config.json"
        cfg = meta.get("config")
        if not isinstance(cfg, dict):
            raise ArtifactError(f"{cfg_path}: 'config' must be an object of {cls.__name__} settings, got {type(cfg).__name__}")
        cfg = dict(cfg)
        if device is not None:
            cfg["device"] = device
        try:
            config = cls.Config.from_dict(cfg)
        except ConfigError as exc:
            raise ArtifactError(f"{cfg_path}: bad 'config': {exc}") from None
        victim = cls(config)
        victim.num_items = meta["num_items"]
        try:
            with torch.device("meta"):  # shapes first, without allocating what a corrupt config asks for
                shell = victim.new_module(victim.num_items)
        except (RuntimeError, ValueError, OverflowError) as exc:
            raise ArtifactError(f"{cfg_path}: the weights do not match a {cls.architecture} with these settings "
                                f"(they describe an impossible model: {exc})") from None
        want = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if want != got:
            diff = sorted(set(want) ^ set(got)) or [k for k in want if want[k] != got[k]]
            k = diff[0]
            raise ArtifactError(f"{where / 'weights.safetensors'}: the weights do not match a {cls.architecture} with the "
                                f"settings in config.json ({len(diff)} tensor(s) differ, e.g. {k!r}: config expects "
                                f"{want.get(k, 'nothing')}, file holds {got.get(k, 'nothing')})")
        module = victim.new_module(victim.num_items)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"{where}: weights do not match a {cls.architecture} with this config: {exc}") from None
        victim.module_ = module.to(victim.device).eval()
        victim.checkpoints_ = read_checkpoints(where, meta, want)
        return restore_provenance(victim, meta)


def read_checkpoints(where: Path, meta: dict, shapes: dict[str, tuple]) -> list[tuple[int, dict]]:
    """The ``(epoch, state_dict)`` checkpoints saved beside a victim (``checkpoints.safetensors``), or
    ``[]``; each must hold exactly the model's tensors (``shapes``) and only finite values."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = where / "checkpoints.safetensors"
    epochs = meta.get("checkpoint_epochs") or []
    if not path.exists():
        if epochs:
            raise ArtifactError(f"{path}: missing, but config.json lists checkpoints of epochs {epochs}")
        return []
    if not isinstance(epochs, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
        raise ArtifactError(f"{where / 'config.json'}: 'checkpoint_epochs' must be a list of epoch numbers, got {epochs!r}")
    try:
        flat = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: cannot read safetensors ({exc})") from None
    out = []
    for epoch in epochs:
        state = {k: flat.get(f"{epoch}/{k}") for k in shapes}
        if any(v is None or tuple(v.shape) != shapes[k] for k, v in state.items()):
            raise ArtifactError(f"{path}: the checkpoint of epoch {epoch} does not hold this model's tensors")
        check_tensors(state, f"{path} (epoch {epoch})")
        out.append((int(epoch), state))
    return out


def restore_provenance(victim, meta: dict):
    """Seed, data fingerprint, dataset, training record and history of a saved victim, back on ``victim``."""
    victim.seed_ = meta.get("seed")
    victim.data_fingerprint_ = meta.get("data_fingerprint")
    victim.dataset_spec_ = meta.get("dataset")
    victim.fit_info_ = meta.get("training") or {}
    victim.history_ = meta.get("history") or []
    return victim


# config.json keys every saved victim has, with their types (None allowed where recguard writes null)
_META_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "num_items": ((int,), False), "seed": ((int,), True), "data_fingerprint": ((str,), True),
    "dataset": ((dict,), True), "training": ((dict,), True), "history": ((list,), True),
}


def read_artifact(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config.json contents, state dict)`` of a saved victim, with clear errors.

    ``config.json`` must be a recguard victim's (format stamp, an architecture, a positive
    ``num_items`` that the weights can hold, keys of the right types) and every weight must be
    finite (a diverged model is refused)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(directory)
    cfg_path, w_path = d / "config.json", d / "weights.safetensors"
    if not d.is_dir():
        raise ArtifactError(f"{d}: not a directory; expected a saved victim (weights.safetensors + config.json)")
    for p in (cfg_path, w_path):
        if not p.exists():
            raise ArtifactError(f"{p}: missing; this directory is not a complete recguard artifact")
    meta = read_json(cfg_path, ArtifactError)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{cfg_path}: must hold a JSON object (a saved victim's settings), got {type(meta).__name__}")
    if meta.get("format") != "recguard-victim":
        raise ArtifactError(f"{cfg_path}: not a recguard victim artifact (no \"format\": \"recguard-victim\" stamp)")
    if not isinstance(meta.get("architecture"), str):
        raise ArtifactError(f"{cfg_path}: 'architecture' must be a string such as \"sasrec\", got {meta.get('architecture')!r}")
    for key, (types, nullable) in _META_TYPES.items():
        if key not in meta:
            if nullable:
                continue
            raise ArtifactError(f"{cfg_path}: missing key {key!r}; this is not a complete victim artifact")
        v = meta[key]
        if (v is None and not nullable) or (v is not None and (isinstance(v, bool) or not isinstance(v, types))):
            raise ArtifactError(f"{cfg_path}: {key!r} must be {' or '.join(t.__name__ for t in types)}"
                                f"{' or null' if nullable else ''}, got {v!r}")
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{w_path}: cannot read safetensors ({exc})") from None
    rows = max((t.shape[0] for t in state.values() if t.dim() >= 1), default=0)
    # recguard's own architectures hold an item table of num_items + 1 (or + 2) rows; a wrapped
    # model's layout is its own business, so only a positive count is required of it
    if meta["num_items"] < 1 or (meta["architecture"] != "torch" and meta["num_items"] >= rows):
        raise ArtifactError(f"{cfg_path}: num_items {meta['num_items']} is impossible for these weights (their largest "
                            f"table has {rows} rows, i.e. at most {rows - 1} items); the artifact is corrupt")
    check_tensors(state, str(w_path))
    return meta, state


def architectures() -> dict[str, type[SequentialVictim]]:
    """recguard's trainable victim classes by architecture name (``sasrec``, ``bert4rec``, ``gru4rec``)."""
    return dict(_REGISTRY)

