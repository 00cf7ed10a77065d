"""LLM4Dec (Zhang et al., SIGIR'24, PROTOCOLS §3): an MLP detector on user-text embeddings,
trained positive-unlabeled on the defender's simulated fakes; flagged users are removed before
the victim trains. Differences from the public code, on purpose: the detector's epochs are fixed
in advance instead of picked on test labels."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from .._finite import check_loss
from .._rng import derive_seed, torch_seeded
from ..data import Split
from ..errors import ConfigError, DataError
from ._base import DefenseOutcome, DetectorDefense
from .decision import DECISION_REVISION, DEFAULT_FLAG_SHARE, DEFAULT_RULE, RULES, Decision, top_mask
from .textdefense import DetectorHead, TextDefense, pu_loss, refresh_batchnorm

__all__ = ["LLM4Dec", "OWN_RULES"]

#: LLM4Dec's own decision rules (the others come from the shared decision layer)
OWN_RULES = ("paper", "prior")


class LLM4Dec(TextDefense, DetectorDefense):
    """MLP detector on user-text embeddings, trained positive-unlabeled on the defender's simulated
    fakes; flagged users get weight 0.

    Decision rules (``rule``), none chosen on any injected user's label:

    - ``"paper"``: flag p ≥ ``threshold`` (0.5). At 1% known fakes a PU head is rarely that
      confident, so this rule often flags nobody.
    - ``"prior"``: Elkan & Noto's (KDD'08) correction. Under PU training the head
      estimates P(labelled | x) = c · P(fake | x), with c = P(labelled | fake); c is estimated
      as the mean p over simulated fakes *held out* from training (``holdout``), and a user is
      flagged when p / c ≥ 0.5, at most ``max_flag_share`` of the users (the highest p).
    - ``"mixture"`` (default), ``"top"``, ``"outlier"``, ``"simulated"``: the shared decision
      layer (:class:`~recguard.defenses.decision.Decision`) on p, under the false-positive
      budget ``max_flag_share``; ``weights="soft"`` discounts instead of removing.

    Args (besides the shared ones: known, known_budget, encoder, user_text, ...):
        epochs: fixed passes over the labelled users (never chosen on injected labels).
        threshold: decision threshold on p for the paper's rule.
    """

    name = "llm4dec"
    revision = DECISION_REVISION

    def __init__(self, *, epochs: int = 30, threshold: float = 0.5, rule: str = DEFAULT_RULE, holdout: float = 0.2,
                 max_flag_share: float = DEFAULT_FLAG_SHARE, z: float = 3.0, weights: str = "hard", **kw):
        super().__init__(**kw)
        if not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"must be a positive integer, got {epochs!r}", param="epochs")
        if rule not in (*OWN_RULES, *RULES):
            raise ConfigError(f"must be one of {', '.join(dict.fromkeys((*OWN_RULES, *RULES)))}, got {rule!r}", param="rule")
        if not 0 < holdout < 1:
            raise ConfigError(f"must be in (0, 1), got {holdout!r}", param="holdout")
        self.decision = Decision(rule="paper" if rule in OWN_RULES else rule, max_flag_share=max_flag_share, z=z, weights=weights)
        self.epochs, self.threshold, self.rule = epochs, float(threshold), rule
        self.holdout, self.max_flag_share = float(holdout), float(max_flag_share)

    def settings(self) -> dict:
        return {**super().settings(), "rule": self.rule, "max_flag_share": self.max_flag_share}

    def detect(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
        train = split.train
        t0 = time.perf_counter()
        known = self.simulate_known(train, rng, make_victim().max_len)
        t1 = time.perf_counter()
        eu, ek = self.text_embeddings(train, known)
        t2 = time.perf_counter()
        gen = np.random.default_rng(derive_seed(rng))
        n_hold = max(1, int(round(self.holdout * len(ek)))) if self.rule != "paper" and len(ek) > 1 else 0
        order = gen.permutation(len(ek))
        ek_hold, ek_fit = ek[order[:n_hold]], ek[order[n_hold:]]
        x = torch.from_numpy(np.vstack([eu, ek_fit]))
        y = torch.cat([torch.zeros(len(eu)), torch.ones(len(ek_fit))])
        pw = self.pos_weight(len(eu), len(ek_fit))
        with torch_seeded(derive_seed(gen)):
            head = DetectorHead(x.shape[1])
            opt = self.make_optimizer(head)
            head.train()
            for _ in range(self.epochs):
                perm = gen.permutation(len(x))
                for s in range(0, len(perm), self.batch_size):
                    idx = perm[s : s + self.batch_size]
                    if len(idx) < 2:  # BatchNorm needs two rows
                        continue
                    loss = pu_loss(head(x[idx]), y[idx], self.lam1, pw)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            refresh_batchnorm(head, [(x[s : s + 4096],) for s in range(0, len(x), 4096)])
            head.eval()
            with torch.no_grad():
                p = torch.sigmoid(head(torch.from_numpy(eu))).numpy().astype(np.float64)
                p_hold = torch.sigmoid(head(torch.from_numpy(ek_hold))).numpy().astype(np.float64) if n_hold else None
            check_loss(float(p.sum()), "LLM4Dec's detector head", lr=self.lr)
        info: dict = {}
        own = None
        if self.rule == "paper" or (self.rule == "prior" and p_hold is None):
            own = p >= self.threshold
        elif self.rule == "prior":
            c = float(p_hold.mean())  # P(labelled | fake), estimated on simulated fakes the head never saw
            own = (p >= c / 2.0) & top_mask(p, self.decision.budget(len(p)))
            info = {"label_frequency_c": c, "prior_threshold": c / 2.0}
        decided = self.decision.decide(p, simulated=p_hold, paper_flags=own)
        flagged = decided.flagged
        if flagged.all():
            raise DataError(
                f"LLM4Dec flagged all {len(p)} training users as fake; the detector did not "
                "separate the simulated fakes from the data. Check the text encoder and titles, or train longer (epochs)"
            )
        threshold = self.threshold if self.rule == "paper" else decided.threshold
        info.update(decided.info)
        t3 = time.perf_counter()
        return DefenseOutcome(
            user_weights=decided.weights, scores=p, flagged=flagged, threshold=threshold,
            info={**info, **self.settings(), "known_fakes": len(known), "known_held_out": n_hold, "encode_time_s": t2 - t1,
                  "detector_time_s": t3 - t2, "defense_time_s": t3 - t0, "encoder_stats": dict(self.encoder.stats),
                  "flagged_users": int(flagged.sum())},
            simulated_scores=p_hold,
        )


