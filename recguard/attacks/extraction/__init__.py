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

__all__ = ["extract", "ExtractionResult", "Transcript", "generate", "distill", "ranking_loss", "agreement"]


@dataclass
class ExtractionResult:
    surrogate: object
    transcript: Transcript
    queries: int
    info: dict = field(default_factory=dict)


def extract(
    blackbox,
    *,
    mode: str = "data-free",
    num_sequences: int = 5000,
    length: int | None = None,
    real_sequences: Sequence[Sequence[int]] | None = None,
    random_share: float = 0.1,
    surrogate: Any = "sasrec",
    surrogate_config: dict | None = None,
    epochs: int = 30,
    repair: float | None = None,
    rng: RNGLike = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
) -> ExtractionResult:
    """Steal a model through its top-k API.

    Args:
        blackbox: a :class:`~recguard.victims.BlackBoxVictim` (or anything with ``recommend``,
            ``num_items``, ``max_len``, ``k``, ``queries_used``).
        mode: ``data-free`` (random starts) or ``few-shot`` (continue ``real_sequences``).
        num_sequences, length, random_share: query generation (see :func:`generate`).
        surrogate, surrogate_config: what to distil into: an architecture name (``max_len``
            defaults to the black box's), a ``MODULE:FACTORY`` string (called as
            ``factory(num_items, **surrogate_config)``), or an unfitted victim.
        repair: weight of the bidirectional repair terms (default 0: on our small tests they lowered
            Agreement@1 — see docs/extraction.md; measure before turning them on).
        checkpoint: transcript file; an interrupted run resumes its queries from it.
    """
    from ...victims import build_victim
    from ...victims._factory import is_factory_path

    if mode not in ("data-free", "few-shot"):
        raise ConfigError(f"must be 'data-free' or 'few-shot', got {mode!r}", param="mode")
    if mode == "few-shot" and not real_sequences:
        raise ConfigError("few-shot extraction needs real_sequences (the fraction of real data the attacker holds)",
                          param="real_sequences")
    gen = as_generator(rng)
    t0 = time.perf_counter()
    tr = generate(blackbox, num_sequences=num_sequences, length=length, seeds=real_sequences if mode == "few-shot" else None,
                  random_share=random_share, rng=gen, progress=progress, checkpoint=checkpoint)
    t1 = time.perf_counter()
    if isinstance(surrogate, str):
        cfg = dict(surrogate_config or {}) if is_factory_path(surrogate) else {"max_len": blackbox.max_len, **(surrogate_config or {})}
        sur = build_victim(surrogate, num_items=blackbox.num_items, **cfg)
    else:
        sur, surrogate = surrogate, getattr(surrogate, "architecture", type(surrogate).__name__)
    rep = 0.0 if repair is None else float(repair)
    distill(sur, tr, blackbox.num_items, epochs=epochs, repair=rep, rng=gen, progress=progress)
    t2 = time.perf_counter()
    info = {"mode": mode, "num_sequences": num_sequences, "pairs": tr.pairs, "queries": tr.queries, "k": int(blackbox.k),
            "surrogate": surrogate, "repair": rep, "query_s": t1 - t0, "distill_s": t2 - t1,
            "budget_exhausted": tr.meta.get("budget_exhausted", False), **{f"distill_{k}": v for k, v in sur.fit_info_.items()}}
    return ExtractionResult(sur, tr, tr.queries, info)


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
