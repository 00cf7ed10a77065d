"""LLM4Dec and LoRec (Zhang et al., SIGIR'24), following PROTOCOLS §3.

Both learn what fake users look like from a *known* attack that the defender
simulates on its own training data (default: Random at 1%). Labels are
positive-unlabeled: the simulated fakes are 1, every user of the (possibly already
poisoned) training data is 0. The injected users' true labels are never read here,
so no epoch, threshold or setting can be tuned on them.

* **LLM4Dec** scores each user's text embedding with an MLP and drops users with
  p ≥ 0.5 before the victim is trained.
* **LoRec** trains a small transformer (the LCT) on the *frozen* victim's per-position
  [item embedding ‖ hidden state] while the victim trains, aligned to the user-text
  embedding; every update moves a per-user score ``a_u`` and, from the calibration
  start on, the victim's loss is weighted by ``sigmoid(a_u) / sigmoid(3)``. No text
  model is needed to score users once the LCT is trained.

Differences from the public LoRec code, on purpose: detector epochs are fixed in
advance instead of picked on test labels; users are never dropped for repeated
items; target metrics index the right user (see ``recguard.metrics``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._finite import check_loss
from .._rng import derive_seed, torch_seeded
from ..data import SequenceData, Split
from ..data._core import _pad_from_csr
from ..errors import ConfigError, DataError
from ..victims._contract import EpochUpdate
from ..victims._layers import TransformerBlock, attention_mask
from ._base import Defense, DefenseOutcome
from .decision import DECISION_REVISION, DEFAULT_FLAG_SHARE, DEFAULT_RULE, RULES, Decision, top_mask
from .text import TextEncoder, domain_for, item_texts, user_prompt, user_prompts

__all__ = [
    "DetectorHead", "LCT", "LLM4Dec", "LoRec", "LoRecDetect", "lct_batches", "update_scores", "lorec_weights", "pu_loss",
    "refresh_batchnorm", "TextEncoder", "user_prompt", "user_prompts", "item_texts",
]

A0 = 3.0  # every user's starting score
# Bumped when LoRec's numbers change for the same seed (2: the LCT's last block computes the
# CLS row alone, which draws different dropout masks; 3: the every-epoch schedule and the
# sampled label-0 rows are the defaults; 4: the weights come from the shared decision layer);
# audit cells of LoRec carry it.
LCT_REVISION = 4
SCHEDULES = ("every-epoch", "paper")
OWN_RULES = ("paper", "prior")
MODES = ("calibrate", "detect-retrain")  # LLM4Dec's own decision rules (the rest come from the shared decision layer)



# ------------------------------------------------------------------------ pieces
class DetectorHead(nn.Module):
    """LLM4Dec's MLP: Linear→GELU, [Dropout→Linear→GELU]×n, Linear(→128)→BatchNorm→Dropout→GELU→Linear(→1).

    Returns logits ``[B]`` (apply a sigmoid for probabilities)."""

    def __init__(self, d_in: int, hidden: int = 256, n_hidden: int = 1, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.GELU()]
        for _ in range(n_hidden):
            layers += [nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()]
        layers += [nn.Linear(hidden, 128), nn.BatchNorm1d(128), nn.Dropout(dropout), nn.GELU(), nn.Linear(128, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@torch.no_grad()
def refresh_batchnorm(module: nn.Module, batches) -> None:
    """Set BatchNorm running statistics to the exact average over ``batches`` (calls of
    ``module``'s forward given each batch's args), so eval-mode predictions do not depend on
    how many optimiser steps the running averages had to settle (few, on small data)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was = module.training
    module.eval()
    saved = [(bn, bn.momentum) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    try:
        for args in batches:
            module(*args)
    finally:
        for bn, mom in saved:
            bn.momentum = mom
        module.train(was)


def pu_loss(logits: torch.Tensor, y: torch.Tensor, lam1: float = 0.5, pos_weight: float = 1.0) -> torch.Tensor:
    """Mean of BCE(p, y) + λ1·[y = 0]·H(p), H the binary entropy of p = sigmoid(logits);
    ``pos_weight`` multiplies the BCE of label-1 rows."""
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if pos_weight != 1.0:
        bce = bce * torch.where(y > 0, torch.full_like(y, pos_weight), torch.ones_like(y))
    p = torch.sigmoid(logits)
    ent = p * F.softplus(-logits) + (1 - p) * F.softplus(logits)  # -p·log p - (1-p)·log(1-p), stable
    return (bce + lam1 * (y == 0).float() * ent).mean()


def update_scores(a: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, bool]:
    """One LoRec update of the user scores ``a`` from detector probabilities ``p``.

    S = {u : p_u > mean p}. If |S| < N/3: a_u -= 1 on S and a_u += |S|/(N-|S|) elsewhere
    (the sum of ``a`` is preserved); otherwise the update is skipped. Returns the new
    scores and whether the update was applied.
    """
    a = np.asarray(a, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if a.shape != p.shape:
        raise ConfigError(f"scores have shape {a.shape} but probabilities {p.shape}", param="p")
    n = len(a)
    s = p > p.mean()
    k = int(s.sum())
    if n == 0 or k >= n / 3:
        return a.copy(), False
    out = a.copy()
    out[s] -= 1.0
    out[~s] += k / (n - k)
    return out, True


def lorec_weights(a: np.ndarray) -> np.ndarray:
    """Loss weights from scores: sigmoid(a)/sigmoid(3), snapped to 1 when strictly between 0.5 and 1."""
    a = np.asarray(a, dtype=np.float64)
    w = (1 / (1 + np.exp(-a))) / (1 / (1 + math.exp(-A0)))
    w[(w > 0.5) & (w < 1.0)] = 1.0
    return w


def _sinusoid(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class LCT(nn.Module):
    """LoRec's calibrator: CLS + 2 pre-LN transformer blocks over [item embedding ‖ hidden state].

    ``forward(feats [B, L, d_in], valid [B, L])`` returns the CLS state ``[B, d_in]``;
    ``head`` turns it into a fraud logit, ``text_proj`` maps text embeddings into its space.
    """

    def __init__(self, d_in: int, d_text: int, *, blocks: int = 2, heads: int = 2, ffn: int = 128, dropout: float = 0.1,
                 max_len: int = 512):
        super().__init__()
        if d_in % heads:
            raise ConfigError(f"input width {d_in} is not divisible by {heads} heads", param="lct_heads")
        self.cls = nn.Parameter(torch.randn(1, 1, d_in) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(d_in, heads, dropout, ffn, activation="gelu") for _ in range(blocks))
        self.norm = nn.LayerNorm(d_in)
        self.head = DetectorHead(d_in, hidden=d_in, dropout=dropout)
        self.text_proj = nn.Linear(d_text, d_in)
        self.register_buffer("pe", _sinusoid(max_len + 1, d_in), persistent=False)

    def forward(self, feats: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, l, d = feats.shape
        # positions count back from the most recent item (1) so left padding does not shift them; CLS = 0
        pos = self.pe[torch.arange(l, 0, -1, device=feats.device)]
        h = torch.cat([self.cls.expand(b, 1, d), feats + pos[None]], dim=1)
        keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=feats.device), valid], dim=1)
        mask = attention_mask(keep, causal=False)
        for blk in self.blocks[:-1]:
            h = blk(h, mask)
        # only the CLS state is read: the last block computes its query row alone
        return self.norm(self.blocks[-1].forward_first(h, keep))


def lct_batches(chunks: list[np.ndarray], take: np.ndarray, batch_size: int, gen: np.random.Generator) -> list[list]:
    """One pass of LCT training batches over the rows ``take`` marks: chunks (arrays of row ids
    of similar length, whose features are cached together) are visited in random order, and the
    taken rows of consecutive chunks are merged until a batch holds ``batch_size`` rows. Each
    batch is a list of (chunk index, positions within that chunk)."""
    out: list[list] = []
    buf: list = []
    size = 0
    for ci in gen.permutation(len(chunks)):
        rows = np.flatnonzero(take[chunks[ci]])
        if len(rows):
            buf.append((int(ci), rows))
            size += len(rows)
        if size >= batch_size:
            out.append(buf)
            buf, size = [], 0
    if buf:
        out.append(buf)
    return out


# ------------------------------------------------------------------ shared base
class _TextDefense(Defense):
    """What LLM4Dec and LoRec share: the simulated known attack and the user-text embeddings."""

    reads_text = True

    def __init__(
        self,
        *,
        known: str | Sequence[str] = "random",
        known_budget: float = 0.01,
        known_targets: str | Sequence[int] = "unpopular",
        num_known_targets: int = 5,
        known_groups: int = 1,
        encoder: str = "minilm",
        encoder_options: dict | None = None,
        user_text: str = "prompt",
        domain: str | None = None,
        id_tokens: bool = False,
        item_text: str = "title",
        lam1: float = 0.5,
        lr: float = 1e-2,
        weight_decay: float = 5e-4,
        batch_size: int = 256,
        balance: bool = False,
        progress: bool = False,
    ):
        families = tuple(f.strip() for f in (known.replace("+", ",").split(",") if isinstance(known, str) else known))
        bad = [f for f in families if f not in ("random", "popular", "bandwagon", "segment")] or ([] if families else [known])
        if bad:
            raise ConfigError(
                f"known attack must be random, popular or segment, or several joined by '+' (attacks the defender can "
                f"simulate without a model), got {known!r}", param="known",
            )
        if item_text not in ("title", "title+categories"):
            raise ConfigError(f"must be 'title' or 'title+categories', got {item_text!r}", param="item_text")
        if not 0 < float(known_budget) <= 0.5:
            raise ConfigError(f"must be in (0, 0.5], got {known_budget!r}", param="known_budget")
        if user_text not in ("prompt", "items"):
            raise ConfigError(f"must be 'prompt' (LoRec's text, encoded whole) or 'items' (mean of title embeddings), got {user_text!r}",
                              param="user_text")
        self.known_families, self.known, self.known_budget = families, "+".join(families), float(known_budget)
        self.item_text = item_text
        self.known_targets, self.num_known_targets = known_targets, int(num_known_targets)
        if isinstance(known_groups, bool) or not isinstance(known_groups, int) or known_groups < 1:
            raise ConfigError(f"must be a positive integer, got {known_groups!r}", param="known_groups")
        self.known_groups = known_groups
        self.encoder_name, self.encoder_options = encoder, dict(encoder_options or {})
        self.user_text, self.domain, self.id_tokens = user_text, domain, bool(id_tokens)
        self.lam1, self.lr, self.weight_decay, self.batch_size = float(lam1), float(lr), float(weight_decay), int(batch_size)
        self.balance = bool(balance)
        self.progress = progress
        self._encoder: TextEncoder | None = None

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.encoder_name, **self.encoder_options)
        return self._encoder

    def settings(self) -> dict:
        """Options and, once texts were built, how many items each text source described."""
        return {"text_sources": getattr(self, "text_sources_", None), "known": self.known, "item_text": self.item_text,
                **({"known_groups": self.known_groups} if self.known_groups > 1 else {}),
                "known_budget": self.known_budget, "encoder": self.encoder_name, "user_text": self.user_text, "balance": self.balance}

    def simulate_known(self, train: SequenceData, rng: np.random.Generator, max_len: int) -> list[np.ndarray]:
        """Fake sequences of the defender's own simulated attack (labels 1). LLM4Dec only learns from
        them; LoRec also adds them to the victim's training data when ``inject_known`` is set. With
        several known families the budget is shared equally among them, each with its own targets;
        with ``known_groups`` > 1 each family's share is split again into that many groups, each
        promoting targets of its own, so a detector cannot learn one campaign's target items."""
        from ..attacks.poisoning import make_attack

        out: list[np.ndarray] = []
        share = self.known_budget / (len(self.known_families) * self.known_groups)
        for family in self.known_families:
            for _ in range(self.known_groups):
                attack = make_attack(family, budget=share, targets=self.known_targets, num_targets=self.num_known_targets,
                                     max_profile_length=max_len)
                res = attack.poison(train, rng=rng)
                out += [np.asarray(res.data[u]) for u in res.fake_users]
        return out

    def text_embeddings(self, train: SequenceData, known: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of every training user's text and of the known fakes' text."""
        self.text_sources_: dict = {}
        titles = item_texts(train.meta, train.num_items, id_tokens=self.id_tokens, counts=self.text_sources_,
                            categories=self.item_text == "title+categories")
        domain = self.domain or domain_for(train.name)
        enc = self.encoder
        if self.user_text == "items":
            item_emb = enc.encode(titles[1:], progress=self.progress)
            item_emb = np.vstack([np.zeros((1, item_emb.shape[1]), np.float32), item_emb])

            def pool(seq):
                return item_emb[np.asarray(seq, dtype=np.int64)].mean(0)

            eu = np.stack([pool(train[u]) for u in range(train.num_users)])
            ek = np.stack([pool(s) for s in known]) if known else np.zeros((0, item_emb.shape[1]), np.float32)
            return eu.astype(np.float32), ek.astype(np.float32)
        texts = user_prompts(train, titles, domain)
        texts_k = user_prompts(known, titles, domain)
        emb = enc.encode(texts + texts_k, progress=self.progress)
        return emb[: len(texts)], emb[len(texts) :]

    def pos_weight(self, n_unlabeled: int, n_known: int) -> float:
        """Weight of a known fake's BCE term: unlabeled/known when ``balance`` (both sides then weigh
        the same in total), else 1 as in the paper. Balancing makes p near 0.5 for ambiguous users,
        so LoRec's rule (flag p > mean only while fewer than N/3 are flagged) skips most updates."""
        return n_unlabeled / n_known if self.balance and n_known else 1.0

    def _optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)


# ---------------------------------------------------------------------- LLM4Dec
class LLM4Dec(_TextDefense):
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

    def apply(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
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
            opt = self._optimizer(head)
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


# ------------------------------------------------------------------------ LoRec
class LoRec(_TextDefense):
    """LLM-enhanced calibration while the victim trains (PROTOCOLS §3).

    The published variant is ``LoRec(rule="paper", schedule="paper", unlabeled_per_pass=None)``.

    Args (besides the shared ones):
        lam2: weight of the alignment term −mean cos(h_CLS, GELU(W e_text)).
        passes: passes over the users per update (2 in the paper).
        schedule: ``"every-epoch"`` (default): an update after every epoch, weights in the
            loss from the first, so a victim that stops early is calibrated for as long as it
            trains and trains as long as it would without LoRec. ``"paper"``: the paper's
            300-epoch schedule scaled to the victim's ``epochs`` (start at 10%, updates every
            5/300 of them before and 10/300 after), which only suits a victim trained for all
            its epochs: with early stopping it forces training past the clean optimum (measured:
            that alone raised the Random lift on Amazon Office from 0.033 to 0.051).
        calibration_start: epoch from which weights enter the victim's loss (overrides the schedule).
        update_every: (before, after) the calibration start, in epochs (overrides the schedule).
        unlabeled_per_pass: label-0 users (a fresh seeded sample each pass) the LCT trains on
            beside every labelled fake; ``None`` trains on all of them (the paper). Scoring
            always covers every user. The LCT keeps its state between updates, so over an
            every-epoch schedule it still sees every user many times.
        lct_max_len: most recent positions the LCT reads (default: the victim's ``max_len``).
        inject_known: also train the victim on the defender's simulated fakes (default True, as in
            LoRec): the LCT then compares users the victim has *all* trained on, instead of learning
            "the victim never saw this sequence", which would not transfer to injected fakes. They
            are weighted by the same rule as everyone (and, being labelled, soon down-weighted).
        feature_cache_mb: keep the frozen victim's features in memory within an update when they
            fit in this many MB (saves two of the three victim passes per update).
        lct_features: extra per-position inputs read from the frozen victim, appended to
            [item embedding ‖ hidden state]: ``"norm"`` (the hidden state's L2 norm over √D) and
            ``"entropy"`` (the entropy of the victim's next-item distribution there, over log N).
            Fakes whose items the victim finds easy or surprising stand out; no injected label is read.
        apply_weights: ``False`` runs everything (schedule, calibration, detection scores) but never
            hands the weights to the victim: an ablation that isolates what the schedule alone does.
        mode: ``"calibrate"`` (default, the paper's mechanism): the scores ``a`` reweight the victim
            while it trains. ``"detect-retrain"``: the victim trains once with the calibrator
            running beside it but no weights applied; every user is then scored by its net flags
            over the whole calibration (``3 − a``, ties broken by the mean probability: the same
            score ``calibrate`` reports), the shared decision layer (``rule``, ``max_flag_share``,
            ``weights``) decides, and a fresh victim is trained once on the data as received with
            those weights (the simulated fakes left out).
        rule, max_flag_share, z, weights: how the net flags (``3 − a``, ties broken by the mean
            detector probability) become loss weights, in both modes: the shared decision layer
            (:class:`~recguard.defenses.decision.Decision`; default ``mixture`` within 3% of the
            users), or ``rule="paper"``, LoRec's own rule (weight sigmoid(a)/sigmoid(3), snapped
            to 1 above 0.5), which on Amazon Office down-weighted 16–20% of genuine users.
    """

    name = "lorec"
    requires = ("retrain", "epoch_callback", "hidden_states", "white_box")
    revision = LCT_REVISION

    def __init__(self, *, lam2: float = 1.0, passes: int = 2, schedule: str = "every-epoch", calibration_start: int | None = None,
                 update_every: tuple[int, int] | None = None, unlabeled_per_pass: int | None = 1024,
                 lct_max_len: int | None = None, inject_known: bool = True,
                 feature_cache_mb: float = 1024, lct_features: Sequence[str] = (), apply_weights: bool = True,
                 mode: str = "calibrate", rule: str = DEFAULT_RULE, max_flag_share: float = DEFAULT_FLAG_SHARE, z: float = 3.0,
                 weights: str = "hard", **kw):
        super().__init__(**kw)
        if mode not in MODES:
            raise ConfigError(f"must be one of {', '.join(MODES)}, got {mode!r}", param="mode")
        self.mode, self.rule = mode, rule
        # rule="paper" is LoRec's own score rule; the decision object then only validates the other options
        self.decision = Decision(rule="top" if rule == "paper" else rule, max_flag_share=max_flag_share, z=z, weights=weights)
        if schedule not in SCHEDULES:
            raise ConfigError(f"must be one of {', '.join(SCHEDULES)}, got {schedule!r}", param="schedule")
        if unlabeled_per_pass is not None and (isinstance(unlabeled_per_pass, bool) or not isinstance(unlabeled_per_pass, int)
                                               or unlabeled_per_pass < 1):
            raise ConfigError(f"must be a positive integer or None (all users), got {unlabeled_per_pass!r}",
                              param="unlabeled_per_pass")
        self.schedule_name, self.unlabeled_per_pass = schedule, unlabeled_per_pass
        self.apply_weights = bool(apply_weights)
        self.lct_features = tuple(lct_features if not isinstance(lct_features, str) else lct_features.replace("+", ",").split(","))
        self.lct_features = tuple(f.strip() for f in self.lct_features if f.strip())
        if set(self.lct_features) - {"norm", "entropy"}:
            raise ConfigError(f"must name 'norm' and/or 'entropy', got {lct_features!r}", param="lct_features")
        self.inject_known, self.feature_cache_mb = bool(inject_known), float(feature_cache_mb)
        self.lam2, self.passes = float(lam2), int(passes)
        if calibration_start is not None and (not isinstance(calibration_start, int) or calibration_start < 1):
            raise ConfigError(f"must be a positive integer epoch, got {calibration_start!r}", param="calibration_start")
        if update_every is not None:
            update_every = tuple(int(v) for v in update_every)
            if len(update_every) != 2 or min(update_every) < 1:
                raise ConfigError(f"must be two positive epoch counts (before, after), got {update_every!r}", param="update_every")
        self.calibration_start, self.update_every, self.lct_max_len = calibration_start, update_every, lct_max_len

    def settings(self) -> dict:
        return {**super().settings(), **({"lct_features": list(self.lct_features)} if self.lct_features else {}),
                "inject_known": self.inject_known, "apply_weights": self.apply_weights, "schedule": self.schedule_name,
                "unlabeled_per_pass": self.unlabeled_per_pass, "mode": self.mode,
                "decision": {"rule": "paper"} if self.rule == "paper" else self.decision.settings()}

    def schedule(self, epochs: int) -> tuple[int, int, int]:
        """(calibration start, update interval before it, interval after it) for a victim trained ``epochs`` epochs."""
        if self.schedule_name == "paper":
            start = max(1, round(0.1 * epochs))
            before, after = max(1, round(epochs * 5 / 300)), max(1, round(epochs * 10 / 300))
        else:
            start, before, after = 1, 1, 1
        return self.calibration_start or start, *(self.update_every or (before, after))

    def train(self, split: Split, *, make_victim: Callable, seed: int, rng: np.random.Generator, progress: bool = False):
        train = split.train
        victim = self.victim(make_victim)
        t0 = time.perf_counter()
        known = self.simulate_known(train, rng, victim.max_len)
        t1 = time.perf_counter()
        eu, ek = self.text_embeddings(train, known)
        encode_s = time.perf_counter() - t1
        n, m = train.num_users, len(known)
        # users the victim trains on: the training data, plus the defender's own fakes when injected
        fit_split = (split.with_train(train.append_users([s.tolist() for s in known], [f"defender_known_{i}" for i in range(m)]))
                     if self.inject_known and m else split)
        n_fit = n + m if fit_split is not split else n
        lmax = int(self.lct_max_len or victim.max_len)
        seqs = [np.asarray(train[u]) for u in range(n)] + known  # LCT rows: training users, then known fakes
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        flat = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        labels = torch.cat([torch.zeros(n), torch.ones(m)])
        text = torch.from_numpy(np.vstack([eu, ek]))
        epochs = getattr(victim, "max_epochs", None)
        if epochs is None and self.schedule_name == "paper" and (self.calibration_start is None or self.update_every is None):
            raise ConfigError(f"LoRec scales its calibration schedule to the victim's epochs, which {victim!r} does not declare: "
                              "pass TorchVictim(max_epochs=...) or give LoRec calibration_start and update_every", param="lorec")
        start, every_before, every_after = self.schedule(epochs or 1)
        gen = np.random.default_rng(derive_seed(rng))
        lct_seed = derive_seed(gen)
        pw = self.pos_weight(n, m)
        order = np.argsort(lengths, kind="stable")  # similar lengths per batch: little padding
        chunks = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        positions = int(np.minimum(lengths, lmax).sum())
        state: dict = {"lct": None, "opt": None, "a": np.full(n_fit, A0), "p_sum": np.zeros(n_fit), "updates": [], "time": 0.0}

        def features(vic, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            """[item embedding ‖ hidden state] of the frozen victim at every position, and the valid mask."""
            lb = int(min(lmax, lengths[idx].max()))
            x = torch.from_numpy(_pad_from_csr(flat, starts[idx], lengths[idx], lb)).to(vic.device)
            with torch.no_grad():
                h = vic.hidden_states(x)
                e = vic.item_embeddings().to(h.device)[x]
                extra = []
                if "norm" in self.lct_features:
                    extra.append(h.norm(dim=-1, keepdim=True) / math.sqrt(h.shape[-1]))
                if "entropy" in self.lct_features:
                    logp = torch.log_softmax(vic.score_representation(h.reshape(-1, h.shape[-1]))[:, 1:].float(), dim=-1)
                    ent = -(logp.exp() * logp).sum(-1).reshape(h.shape[0], h.shape[1], 1)
                    extra.append(ent / math.log(max(2, logp.shape[-1])))
            f = torch.cat([e, h, *extra], dim=-1).float() * (x > 0).unsqueeze(-1)
            if f.shape[-1] % 2:  # the LCT's two heads split the width: pad an odd one with a zero column
                f = F.pad(f, (0, 1))
            return f, x > 0  # on the victim's device, like the LCT

        def training_batches():
            """Every labelled fake plus a fresh sample of label-0 users (see :func:`lct_batches`)."""
            take = np.ones(n + m, dtype=bool)
            if self.unlabeled_per_pass is not None and self.unlabeled_per_pass < n:
                take[:n] = False
                take[gen.choice(n, size=self.unlabeled_per_pass, replace=False)] = True
            return lct_batches(chunks, take, self.batch_size, gen)

        def merged(parts, feats):
            """One batch from (chunk, rows) parts: their cached features, left-padded to a common length."""
            picked = [(*feats(ci), rows) for ci, rows in parts]  # (features, valid mask, rows) per chunk
            width = max(f.shape[1] for f, _, _ in picked)
            batch = torch.cat([F.pad(f[rows], (0, 0, width - f.shape[1], 0)) for f, _, rows in picked])
            valid = torch.cat([F.pad(v[rows], (width - v.shape[1], 0)) for _, v, rows in picked])
            return batch, valid, np.concatenate([chunks[ci][rows] for ci, rows in parts])

        def due(epoch: int) -> bool:
            if epoch < start:
                return epoch % every_before == 0
            return (epoch - start) % every_after == 0

        def reweight(epoch: int, vic) -> np.ndarray | None:
            if not due(epoch):
                return None
            tu = time.perf_counter()
            cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

            def feats(ci: int):  # the frozen victim's features, computed once per update when they fit in memory
                if ci in cache:
                    return cache[ci]
                f = features(vic, chunks[ci])
                if positions * f[0].shape[-1] * 4 <= self.feature_cache_mb * 2**20:
                    cache[ci] = f
                return f

            with torch_seeded(lct_seed + epoch):
                if state["lct"] is None:
                    d_in = int(features(vic, chunks[0][:2])[0].shape[-1])
                    state["lct"] = LCT(d_in, text.shape[1], max_len=lmax).to(vic.device)
                    state["opt"] = self._optimizer(state["lct"])
                    state["text"], state["labels"] = text.to(vic.device), labels.to(vic.device)
                text_d, labels_d = state["text"], state["labels"]
                lct, opt = state["lct"], state["opt"]
                lct.train()
                for _ in range(self.passes):
                    for parts in training_batches():
                        f, valid, idx = merged(parts, feats)
                        if len(idx) < 2:  # BatchNorm needs two rows
                            continue
                        h = lct(f, valid)
                        z = F.gelu(lct.text_proj(text_d[idx]))
                        loss = pu_loss(lct.head(h), labels_d[idx], self.lam1, pw) - self.lam2 * F.cosine_similarity(h, z, dim=-1).mean()
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                lct.eval()
                cls = torch.zeros(n + m, lct.cls.shape[-1], device=vic.device)
                with torch.no_grad():
                    for ci in range(len(chunks)):
                        f, valid = feats(ci)
                        cls[chunks[ci]] = lct(f, valid)
                    refresh_batchnorm(lct.head, [(cls[s : s + 4096],) for s in range(0, n + m, 4096)])
                    p_all = torch.sigmoid(lct.head(cls)).cpu().numpy().astype(np.float64)
                p = p_all[:n_fit]  # every user the victim trains on
                check_loss(float(p_all.sum()), "LoRec's calibrator (LCT)", epoch=epoch, lr=self.lr)
            state["a"], applied = update_scores(state["a"], p)
            state["p_sum"] += p
            state["updates"].append({"epoch": epoch, "applied": applied, "flagged_now": int((p > p.mean()).sum()),
                                     "down_weighted": int((lorec_weights(state["a"][:n]) < 1).sum()),
                                     "known_down_weighted": int((lorec_weights(state["a"][n:]) < 1).sum())})
            state["time"] += time.perf_counter() - tu
            if epoch < start:
                return None
            _, weights, flagged, _ = self._decide(state, n)
            state["updates"][-1]["weighted_down"] = int(flagged[:n].sum())
            return weights

        def on_epoch_end(epoch: int, vic) -> EpochUpdate:
            # weights enter the loss from the calibration start; until then no validation may choose
            # the returned checkpoint or count toward patience, so the calibration is never bypassed
            weights = reweight(epoch, vic)
            apply = self.apply_weights and self.mode == "calibrate"
            return EpochUpdate(user_weights=weights if apply else None, reset_selection=epoch <= start and self.mode == "calibrate")

        victim.fit(fit_split, rng=seed, progress=progress, on_epoch_end=on_epoch_end)
        info = {**self.settings(), "known_fakes": m, "known_injected": n_fit > n, "encode_time_s": encode_s,
                "calibrate_time_s": state["time"], "defense_time_s": (t1 - t0) + encode_s + state["time"],
                "schedule": {"kind": self.schedule_name, "start": start, "every": [every_before, every_after]},
                "updates": state["updates"], "encoder_stats": dict(self.encoder.stats)}
        if self.mode == "detect-retrain":
            return self._retrain(split, make_victim, seed, progress, state, n, info, time.perf_counter() - t0)
        _, outcome = self._outcome(state, n, info, weights_to_victim=self.apply_weights)
        return victim, outcome

    @staticmethod
    def _net_flags(state: dict) -> np.ndarray:
        """Suspicion of every user the victim trains on: net flags ``3 − a``, ties broken by the mean detector probability."""
        return (A0 - state["a"]) + 1e-3 * state["p_sum"] / max(1, len(state["updates"]))

    def _decide(self, state: dict, n: int):
        """(scores, weights, flags) for every user the victim trains on, and the decision behind them (None
        under ``rule="paper"``: LoRec's own rule, weight sigmoid(a)/sigmoid(3) snapped to 1 above 0.5).
        The decision layer decides on the n users of the data; the defender's simulated fakes that
        follow them are cut at the same threshold."""
        scores = self._net_flags(state)
        if self.rule == "paper":
            weights = lorec_weights(state["a"])
            return scores, weights, weights < 1.0, None
        decided = self.decision.decide(scores[:n], simulated=scores[n:] if len(scores) > n else None)
        sim_flagged = (scores[n:] >= decided.threshold) if decided.threshold is not None else np.zeros(len(scores) - n, dtype=bool)
        flagged = np.concatenate([decided.flagged, sim_flagged])
        return scores, np.concatenate([decided.weights, np.where(sim_flagged, 0.0, 1.0)]), flagged, decided

    def _outcome(self, state: dict, n: int, info: dict, *, weights_to_victim: bool) -> tuple[np.ndarray, DefenseOutcome]:
        """The final decision over the n users of the data: their weights and the outcome that reports it."""
        scores, weights, flagged, decided = self._decide(state, n)
        return weights[:n], DefenseOutcome(
            user_weights=weights[:n] if weights_to_victim else None, scores=scores[:n], flagged=flagged[:n],
            threshold=None if decided is None else decided.threshold,
            info={**info, **({} if decided is None else decided.info), "flagged_users": int(flagged[:n].sum())},
            simulated_scores=scores[n:] if len(scores) > n else None)

    def _retrain(self, split: Split, make_victim: Callable, seed: int, progress: bool, state: dict, n: int, info: dict,
                 detect_wall_s: float):
        """detect-retrain: decide on the net flags of the whole calibration, then train a fresh victim once."""
        if not state["updates"]:
            raise DataError("LoRec's calibrator never ran (no epoch ended), so it has no scores to decide on; train for at least one epoch")
        weights, outcome = self._outcome(state, n, info, weights_to_victim=True)
        t0 = time.perf_counter()
        victim = self.victim(make_victim).fit(split, user_weights=weights, rng=seed, progress=progress)
        outcome.info.update(defense_time_s=detect_wall_s, retrain_time_s=time.perf_counter() - t0)
        return victim, outcome


class LoRecDetect(LoRec):
    """LoRec's calibrator as a detector: ``LoRec(mode="detect-retrain")`` under its own name, so an
    audit can compare it with in-training calibration (``lorec``) in one grid."""

    name = "lorec-detect"
    revision = LCT_REVISION * 100 + DECISION_REVISION

    def __init__(self, *, mode: str = "detect-retrain", **kw):
        super().__init__(mode=mode, **kw)
