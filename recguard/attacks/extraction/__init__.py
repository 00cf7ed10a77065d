"""Model extraction from top-k lists (PROTOCOLS §4): data-free and few-shot.

``extract(blackbox, rng=0)`` queries a :class:`~recguard.victims.BlackBoxVictim`, distils a
surrogate of any recguard architecture from the lists it returned and returns an
:class:`ExtractionResult` whose ``surrogate`` is an ordinary saved/loaded victim — it
plugs into the surrogate-guided poisoning attack (the black-box chain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._rng import RNGLike, as_generator
from ...errors import ConfigError
from ._distill import agreement_on, distill, ranking_loss
from ._generate import Transcript, generate

__all__ = ["ExtractionAttack", "extract", "ExtractionResult", "Transcript", "generate", "distill", "ranking_loss", "agreement"]


@dataclass
class ExtractionResult:
    surrogate: object
    transcript: Transcript
    queries: int
    info: dict = field(default_factory=dict)


class ExtractionAttack:
    """Model extraction (PROTOCOLS §4): steal a model through its top-k API alone.

    Threat model ``black-box``: the attacker only queries ``recommend`` (its budget counted by
    the :class:`~recguard.victims.BlackBoxVictim`), so the attack requires no capability of the
    victim. Configured here, applied with :meth:`extract`; the stolen model serves any
    model-guided poisoning attack (``surrogate_source = "extracted"``).

    Args:
        mode: ``data-free`` (random starts) or ``few-shot`` (continue ``real_sequences``).
        num_sequences, length, random_share: query generation (see :func:`generate`).
        real_sequences: the attacker's real sequences (few-shot).
        surrogate, surrogate_config: what to distil into: an architecture name (``max_len``
            defaults to the black box's), a ``MODULE:FACTORY`` string (called as
            ``factory(num_items, **surrogate_config)``), or an unfitted victim.
        epochs: distillation epochs.
        repair: weight of the bidirectional repair terms (default 0: on our small tests they lowered
            Agreement@1 — see docs/extraction.md; measure before turning them on).
    """

    name = "extraction"
    threat_model = "black-box"
    revision: int | None = None

    def __init__(self, *, mode: str = "data-free", num_sequences: int = 5000, length: int | None = None,
                 real_sequences: Sequence[Sequence[int]] | None = None, random_share: float = 0.1, surrogate: Any = "sasrec",
                 surrogate_config: dict | None = None, epochs: int = 30, repair: float | None = None):
        if mode not in ("data-free", "few-shot"):
            raise ConfigError(f"must be 'data-free' or 'few-shot', got {mode!r}", param="mode")
        if mode == "few-shot" and not real_sequences:
            raise ConfigError("few-shot extraction needs real_sequences (the fraction of real data the attacker holds)",
                              param="real_sequences")
        self.mode, self.num_sequences, self.length, self.real_sequences = mode, num_sequences, length, real_sequences
        self.random_share, self.surrogate, self.surrogate_config = random_share, surrogate, surrogate_config
        self.epochs, self.repair = epochs, repair

    def requires(self) -> tuple[str, ...]:
        """Nothing: the victim is only queried through its top-k lists."""
        return ()

    def extract(self, blackbox, *, rng: RNGLike = None, progress: bool | None = None,
                checkpoint: str | Path | None = None) -> ExtractionResult:
        """Query ``blackbox`` (a :class:`~recguard.victims.BlackBoxVictim`, or anything with ``recommend``,
        ``num_items``, ``max_len``, ``k``, ``queries_used``) and distil the surrogate; ``checkpoint``
        is a transcript file an interrupted run resumes its queries from."""
        from ...victims import build_victim, is_factory_path

        gen = as_generator(rng)
        t0 = time.perf_counter()
        tr = generate(blackbox, num_sequences=self.num_sequences, length=self.length,
                      seeds=self.real_sequences if self.mode == "few-shot" else None, random_share=self.random_share, rng=gen,
                      progress=progress, checkpoint=checkpoint)
        t1 = time.perf_counter()
        surrogate = self.surrogate
        if isinstance(surrogate, str):
            config = dict(self.surrogate_config or {})
            sur = build_victim(surrogate, num_items=blackbox.num_items,
                               **(config if is_factory_path(surrogate) else {"max_len": blackbox.max_len, **config}))
        else:
            sur, surrogate = surrogate, getattr(surrogate, "architecture", type(surrogate).__name__)
        rep = 0.0 if self.repair is None else float(self.repair)
        distill(sur, tr, blackbox.num_items, epochs=self.epochs, repair=rep, rng=gen, progress=progress)
        t2 = time.perf_counter()
        info = {"mode": self.mode, "num_sequences": self.num_sequences, "pairs": tr.pairs, "queries": tr.queries,
                "k": int(blackbox.k), "surrogate": surrogate, "repair": rep, "query_s": t1 - t0, "distill_s": t2 - t1,
                "budget_exhausted": tr.meta.get("budget_exhausted", False), **{f"distill_{k}": v for k, v in sur.fit_info_.items()}}
        return ExtractionResult(sur, tr, tr.queries, info)


def extract(blackbox, *, rng: RNGLike = None, progress: bool | None = None, checkpoint: str | Path | None = None,
            **options) -> ExtractionResult:
    """Steal a model through its top-k API: ``ExtractionAttack(**options).extract(blackbox, ...)``
    (see :class:`ExtractionAttack` for the options)."""
    return ExtractionAttack(**options).extract(blackbox, rng=rng, progress=progress, checkpoint=checkpoint)


def agreement(victim, surrogate, seqs, ks: Sequence[int] = (1, 10), batch_size: int = 1024) -> dict:
    """Agreement@k: mean |top-k victim ∩ top-k surrogate| / k over ``seqs`` (seen items excluded,
    real catalogue only — the victim's padding/mask ids never appear in a top-k)."""
    kmax = max(ks)
    if not isinstance(seqs, np.ndarray):
        seqs = list(seqs)
    out = {f"Agreement@{k}": [] for k in ks}
    for s in range(0, len(seqs), batch_size):
        part = seqs[s : s + batch_size]
        a = victim.recommend(part, k=kmax)
        b = surrogate.recommend(part, k=kmax)
        for k in ks:
            out[f"Agreement@{k}"].append(agreement_on(a, b, k) * len(part))
    n = max(1, len(seqs))
    return {key: float(sum(v) / n) for key, v in out.items()}
