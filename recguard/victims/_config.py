"""Frozen configuration dataclasses for victims (``to_dict`` / ``from_dict``; unknown keys are an error)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from .._params import check_field_types
from ..errors import ConfigError

T = TypeVar("T", bound="BaseConfig")
#: Training precisions: float32 throughout, or the forward pass under bfloat16 autocast.
PRECISIONS = ("float32", "bfloat16")

@dataclass(frozen=True)
class BaseConfig:
    """Fields shared by every trainable sequential victim.

    Attributes:
        hidden: embedding / hidden size.
        max_len: longest history the model reads (older items are dropped).
        dropout: dropout rate.
        epochs: maximum training epochs.
        batch_size: sequences per batch.
        lr, weight_decay: AdamW optimiser settings.
        patience: stop after this many validations without a better NDCG@10 (0 = never stop early).
        eval_every: validate every this many epochs.
        device: ``"auto"`` (GPU when torch sees one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        batching: ``"length"`` (users of similar length share a batch: little padding, fastest)
            or ``"random"`` (plain shuffled batches, as in most published training code).
        init_std: ``None`` keeps each architecture's own initialisation; a float re-draws every
            Linear and Embedding weight from N(0, init_std) with zero biases and padding rows
            (0.02 is the GPT-2 / RecBole / Klenitskiy & Vasilev choice).
        loss: ``"auto"`` (full softmax below the measured catalogue-size crossover, the sampled
            loss above it), ``"ce"``, ``"sampled_ce"`` (shared negatives, logQ correction),
            ``"gbce"`` (gSASRec's generalised BCE) or ``"bce"`` (per-prediction negatives);
            formulas in :mod:`recguard.victims._objective` and ``docs/victims.md``.
        num_negatives: negatives per batch (shared losses) or per prediction (``bce``);
            ``None`` = 1,024 (``sampled_ce``), 256 (``gbce``) or 1 (``bce``).
        sampler: proposal of the negatives, ``"uniform"``, ``"popularity"`` (training counts + 1),
            ``"mixed"`` (half the batch's positives, half uniform) or ``"mixed_logq"`` (eSASRec's mix:
            half the batch's distinct positives, half uniform, every logit corrected by −log popularity);
            the loss corrects for it.
        negatives_per: ``"batch"`` (sampled softmax shares one set of negatives across the batch)
            or ``"prediction"`` (each prediction draws its own, as RecTools and eSASRec do).
        sampled_correction: ``"all"`` (sampled softmax corrects every logit, the positive's included,
            by its log expected count) or ``"negatives"`` (the negatives only: their corrected sum
            estimates the full softmax's normaliser, and the positive's logit stays exact).
        softmax_temperature: ``ce`` and ``sampled_ce`` divide every training score by it before the
            softmax (1: the plain softmax; below 1 sharper); rankings do not depend on it.
        gbce_t: gBCE's calibration t in [0, 1] (0.75 as in gSASRec).
        keep_checkpoints: checkpoints ``fit`` keeps for training-data influence unless its own
            ``keep_checkpoints`` says otherwise (0: none).
        adam_beta2: the optimiser's second-moment decay (0.98, as in the Transformer paper; the
            SASRec-CE paper's code keeps Adam's 0.999).
        gro_lambda: weight of GRO's swap loss, a training-time defense against model extraction
            (:mod:`recguard.victims._gro`; 0: off; causal models only). The paper used 1 on ML-1M.
        gro_k: length of the top-k lists GRO's student imitates (the API's list length).
        gro_positions: next-item positions per batch that take part in GRO (drawn at random).
        precision: ``"float32"`` or ``"bfloat16"``: the training step's forward pass under bfloat16
            autocast (matrix products in bfloat16; softmax, LayerNorm, the loss and the weights stay
            float32). Pays on GPUs and on CPUs with bfloat16 matrix units (AMX); validation, scoring
            and every audit read the model in float32.
    """

    hidden: int = 64
    max_len: int = 200
    dropout: float = 0.2
    epochs: int = 200
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int = 5
    eval_every: int = 2
    device: str = "auto"
    batching: str = "length"
    init_std: float | None = None
    loss: str = "auto"
    num_negatives: int | None = None
    sampler: str = "uniform"
    negatives_per: str = "batch"
    sampled_correction: str = "all"
    softmax_temperature: float = 1.0
    gbce_t: float = 0.75
    keep_checkpoints: int = 0
    adam_beta2: float = 0.98
    gro_lambda: float = 0.0
    gro_k: int = 100
    gro_positions: int = 256
    precision: str = "float32"

    def __post_init__(self) -> None:
        check_field_types(self)
        from ._objective import check_objective_fields

        check_objective_fields(self)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}", param="precision")
        if self.batching not in ("length", "random"):
            raise ConfigError(f"must be 'length' or 'random', got {self.batching!r}", param="batching")
        if not 0.0 <= float(self.adam_beta2) < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.adam_beta2!r}", param="adam_beta2")
        if self.init_std is not None and not (isinstance(self.init_std, (int, float)) and float(self.init_std) > 0):
            raise ConfigError(f"must be None or a positive float, got {self.init_std!r}", param="init_std")
        if not (math.isfinite(float(self.gro_lambda)) and float(self.gro_lambda) >= 0):
            raise ConfigError(f"must be a finite number >= 0 (0: GRO off), got {self.gro_lambda!r}", param="gro_lambda")
        if self.gro_k < 2:
            raise ConfigError(f"must be an integer >= 2 (the API's list length), got {self.gro_k!r}", param="gro_k")
        for name in ("hidden", "max_len", "epochs", "batch_size", "eval_every", "gro_positions"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"must be a positive integer, got {v!r}", param=name)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.dropout!r}", param="dropout")
        if not float(self.lr) > 0:
            raise ConfigError(f"must be > 0, got {self.lr!r}", param="lr")
        if int(self.patience) < 0:
            raise ConfigError(f"must be >= 0, got {self.patience!r}", param="patience")
        if self.keep_checkpoints < 0:  # an integer already (check_field_types)
            raise ConfigError(f"must be a whole number >= 0, got {self.keep_checkpoints!r}", param="keep_checkpoints")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__} settings must be a table of KEY = VALUE, got {type(d).__name__}", param="config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)} for {cls.__name__}; valid keys: {', '.join(sorted(known))}",
                param=unknown[0],
            )
        return cls(**d)

    def replace(self: T, **changes: Any) -> T:
        cls = type(self)
        return cls.from_dict({**self.to_dict(), **changes})
