"""LoRec (Zhang et al., SIGIR'24), following PROTOCOLS §3.

LoRec trains a small transformer (the LCT) on the *frozen* victim's per-position [item
embedding ‖ hidden state] while the victim trains, aligned to the user-text embedding, and
learns what fake users look like from a *known* attack the defender simulates on its own
training data (default: Random at 1%; see :mod:`recguard.defenses.textdefense`). Every update
moves a per-user score ``a_u``; from the calibration start on, the victim's loss is weighted by
the shared decision layer's weights (``rule="paper"``: the published ``sigmoid(a_u) / sigmoid(3)``).
No text model is needed to score users once the LCT is trained.

Differences from the public LoRec code, on purpose: detector epochs are fixed in advance
instead of picked on test labels; users are never dropped for repeated items; target metrics
index the right user (see ``recguard.metrics``).
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
from ..data import pad_from_csr
from ..errors import ConfigError, DataError
from ..victims import EpochUpdate
from ..victims import TransformerBlock, attention_mask
from ._base import DefenseOutcome
from .decision import DECISION_REVISION, DEFAULT_FLAG_SHARE, DEFAULT_RULE, Decision
from .textdefense import DetectorHead, TextDefense, pu_loss, refresh_batchnorm

__all__ = ["LCT", "LoRec", "LoRecDetect", "lct_batches", "update_scores", "lorec_weights", "LCT_REVISION"]

A0 = 3.0  # every user's starting score
# Bumped when LoRec's numbers change for the same seed (history in CHANGELOG.md); audit cells of LoRec carry it.
LCT_REVISION = 4
SCHEDULES = ("every-epoch", "paper")
MODES = ("calibrate", "detect-retrain")


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



# ------------------------------------------------------------------------ LoRec
class LoRec(TextDefense):
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
        epochs = getattr(victim, "max_epochs", None)
        if epochs is None and self.schedule_name == "paper" and (self.calibration_start is None or self.update_every is None):
            raise ConfigError(f"LoRec scales its calibration schedule to the victim's epochs, which {victim!r} does not declare: "
                              "pass TorchVictim(max_epochs=...) or give LoRec calibration_start and update_every", param="lorec")
        run = CalibrationRun(self, train, known, np.vstack([eu, ek]), n_fit=n + m if fit_split is not split else n,
                             lct_max_len=int(self.lct_max_len or victim.max_len), schedule=self.schedule(epochs or 1), rng=rng)
        victim.fit(fit_split, rng=seed, progress=progress, on_epoch_end=run.on_epoch_end)
        start, every_before, every_after = run.schedule
        state = run.state
        info = {**self.settings(), "known_fakes": m, "known_injected": run.n_fit > n, "encode_time_s": encode_s,
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

    def decide(self, state: dict, n: int):
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
        scores, weights, flagged, decided = self.decide(state, n)
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


class CalibrationRun:
    """One LoRec training's calibration, called back by the victim at every epoch's end.

    The LCT's rows are the training users, then the defender's known fakes (labels 0 and 1); its
    input at every position is the frozen victim's [item embedding ‖ hidden state] (plus the
    optional ``norm``/``entropy`` features), aligned to the user-text embedding ``text``. Every
    update (on the schedule: every ``before`` epochs until ``start``, then every ``after``) trains
    the LCT for ``passes`` passes, scores every user and moves the per-user scores ``a``; from
    ``start`` on the decision's weights go back to the victim. ``state`` keeps the scores
    (``a``, ``p_sum``), the update log and the time spent.
    """

    def __init__(self, lorec: LoRec, train: SequenceData, known: list[np.ndarray], text: np.ndarray, *, n_fit: int,
                 lct_max_len: int, schedule: tuple[int, int, int], rng: np.random.Generator):
        self.lorec, self.n, self.m, self.n_fit, self.lmax = lorec, train.num_users, len(known), n_fit, lct_max_len
        self.schedule = schedule
        seqs = [np.asarray(train[u]) for u in range(self.n)] + known  # LCT rows: training users, then known fakes
        self.lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        self.flat = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.labels = torch.cat([torch.zeros(self.n), torch.ones(self.m)])
        self.text = torch.from_numpy(text)
        self.gen = np.random.default_rng(derive_seed(rng))
        self.lct_seed = derive_seed(self.gen)
        self.pos_weight = lorec.pos_weight(self.n, self.m)
        order = np.argsort(self.lengths, kind="stable")  # similar lengths per batch: little padding
        self.chunks = [order[s : s + lorec.batch_size] for s in range(0, len(order), lorec.batch_size)]
        self.positions = int(np.minimum(self.lengths, lct_max_len).sum())
        self.state: dict = {"lct": None, "opt": None, "a": np.full(n_fit, A0), "p_sum": np.zeros(n_fit), "updates": [], "time": 0.0}

    def features(self, vic, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """[item embedding ‖ hidden state] of the frozen victim at every position, and the valid mask."""
        lb = int(min(self.lmax, self.lengths[idx].max()))
        x = torch.from_numpy(pad_from_csr(self.flat, self.starts[idx], self.lengths[idx], lb)).to(vic.device)
        kinds = self.lorec.lct_features
        with torch.no_grad():
            h = vic.hidden_states(x)
            e = vic.item_embeddings().to(h.device)[x]
            extra = []
            if "norm" in kinds:
                extra.append(h.norm(dim=-1, keepdim=True) / math.sqrt(h.shape[-1]))
            if "entropy" in kinds:
                logp = torch.log_softmax(vic.score_representation(h.reshape(-1, h.shape[-1]))[:, 1:].float(), dim=-1)
                ent = -(logp.exp() * logp).sum(-1).reshape(h.shape[0], h.shape[1], 1)
                extra.append(ent / math.log(max(2, logp.shape[-1])))
        f = torch.cat([e, h, *extra], dim=-1).float() * (x > 0).unsqueeze(-1)
        if f.shape[-1] % 2:  # the LCT's two heads split the width: pad an odd one with a zero column
            f = F.pad(f, (0, 1))
        return f, x > 0  # on the victim's device, like the LCT

    def training_batches(self):
        """Every labelled fake plus a fresh sample of label-0 users (see :func:`lct_batches`)."""
        n, per_pass = self.n, self.lorec.unlabeled_per_pass
        take = np.ones(n + self.m, dtype=bool)
        if per_pass is not None and per_pass < n:
            take[:n] = False
            take[self.gen.choice(n, size=per_pass, replace=False)] = True
        return lct_batches(self.chunks, take, self.lorec.batch_size, self.gen)

    def merged(self, parts, feats):
        """One batch from (chunk, rows) parts: their cached features, left-padded to a common length."""
        picked = [(*feats(ci), rows) for ci, rows in parts]  # (features, valid mask, rows) per chunk
        width = max(f.shape[1] for f, _, _ in picked)
        batch = torch.cat([F.pad(f[rows], (0, 0, width - f.shape[1], 0)) for f, _, rows in picked])
        valid = torch.cat([F.pad(v[rows], (width - v.shape[1], 0)) for _, v, rows in picked])
        return batch, valid, np.concatenate([self.chunks[ci][rows] for ci, rows in parts])

    def due(self, epoch: int) -> bool:
        start, before, after = self.schedule
        if epoch < start:
            return epoch % before == 0
        return (epoch - start) % after == 0

    def feature_cache(self, vic) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
        """The frozen victim's features per chunk, computed once per update when they fit in memory."""
        cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def feats(ci: int):
            if ci in cache:
                return cache[ci]
            f = self.features(vic, self.chunks[ci])
            if self.positions * f[0].shape[-1] * 4 <= self.lorec.feature_cache_mb * 2**20:
                cache[ci] = f
            return f

        return feats

    def lct(self, vic) -> tuple[LCT, torch.optim.Optimizer]:
        """The calibrator and its optimiser, built at the first update (its width follows the victim's features)."""
        state = self.state
        if state["lct"] is None:
            d_in = int(self.features(vic, self.chunks[0][:2])[0].shape[-1])
            state["lct"] = LCT(d_in, self.text.shape[1], max_len=self.lmax).to(vic.device)
            state["opt"] = self.lorec.make_optimizer(state["lct"])
            state["text"], state["labels"] = self.text.to(vic.device), self.labels.to(vic.device)
        return state["lct"], state["opt"]

    def fit_and_score(self, vic, epoch: int) -> np.ndarray:
        """Train the LCT for its passes and return every LCT row's probability of being fake."""
        lorec, feats = self.lorec, self.feature_cache(vic)
        lct, opt = self.lct(vic)
        text_d, labels_d = self.state["text"], self.state["labels"]
        lct.train()
        for _ in range(lorec.passes):
            for parts in self.training_batches():
                f, valid, idx = self.merged(parts, feats)
                if len(idx) < 2:  # BatchNorm needs two rows
                    continue
                h = lct(f, valid)
                z = F.gelu(lct.text_proj(text_d[idx]))
                loss = (pu_loss(lct.head(h), labels_d[idx], lorec.lam1, self.pos_weight)
                        - lorec.lam2 * F.cosine_similarity(h, z, dim=-1).mean())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        lct.eval()
        rows = self.n + self.m
        cls = torch.zeros(rows, lct.cls.shape[-1], device=vic.device)
        with torch.no_grad():
            for ci in range(len(self.chunks)):
                f, valid = feats(ci)
                cls[self.chunks[ci]] = lct(f, valid)
            refresh_batchnorm(lct.head, [(cls[s : s + 4096],) for s in range(0, rows, 4096)])
            p_all = torch.sigmoid(lct.head(cls)).cpu().numpy().astype(np.float64)
        check_loss(float(p_all.sum()), "LoRec's calibrator (LCT)", epoch=epoch, lr=lorec.lr)
        return p_all

    def reweight(self, epoch: int, vic) -> np.ndarray | None:
        """An update when one is due: the new scores, and from the calibration start the decision's weights."""
        if not self.due(epoch):
            return None
        tu = time.perf_counter()
        state, n = self.state, self.n
        with torch_seeded(self.lct_seed + epoch):
            p = self.fit_and_score(vic, epoch)[: self.n_fit]  # every user the victim trains on
        state["a"], applied = update_scores(state["a"], p)
        state["p_sum"] += p
        state["updates"].append({"epoch": epoch, "applied": applied, "flagged_now": int((p > p.mean()).sum()),
                                 "down_weighted": int((lorec_weights(state["a"][:n]) < 1).sum()),
                                 "known_down_weighted": int((lorec_weights(state["a"][n:]) < 1).sum())})
        state["time"] += time.perf_counter() - tu
        if epoch < self.schedule[0]:
            return None
        _, weights, flagged, _ = self.lorec.decide(state, n)
        state["updates"][-1]["weighted_down"] = int(flagged[:n].sum())
        return weights

    def on_epoch_end(self, epoch: int, vic) -> EpochUpdate:
        # weights enter the loss from the calibration start; until then no validation may choose
        # the returned checkpoint or count toward patience, so the calibration is never bypassed
        weights = self.reweight(epoch, vic)
        calibrating = self.lorec.mode == "calibrate"
        return EpochUpdate(user_weights=weights if self.lorec.apply_weights and calibrating else None,
                           reset_selection=epoch <= self.schedule[0] and calibrating)


class LoRecDetect(LoRec):
    """LoRec's calibrator as a detector: ``LoRec(mode="detect-retrain")`` under its own name, so an
    audit can compare it with in-training calibration (``lorec``) in one grid."""

    name = "lorec-detect"
    revision = LCT_REVISION * 100 + DECISION_REVISION

    def __init__(self, *, mode: str = "detect-retrain", **kw):
        super().__init__(mode=mode, **kw)
