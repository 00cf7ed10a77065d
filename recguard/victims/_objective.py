"""Training objectives of the sequential victims: which loss, how negatives are drawn, and
the catalogue-size rule that picks one when the configuration says ``loss="auto"``.

Notation: a prediction ``i`` has state ``h_i`` and positive item ``p_i``; ``s_ij = h_i·e_j (+ b_j)``
is the score of item ``j``; ``N`` is the catalogue size; ``w_i`` the term's weight (the user's
weight times the target item's weight), normalised to sum to one over the batch.

``ce``
    Full-softmax cross-entropy, ``Σ_i w_i (log Σ_j exp s_ij − s_ip)`` (the fused, chunked
    ``weighted_softmax_ce``). Exact, and its cost grows with ``N``.

``sampled_ce``
    Sampled softmax with the logQ correction (Bengio & Senécal, IEEE TNN 2008; Jean et al.,
    ACL 2015; Yi et al., RecSys 2019). One set ``S`` of ``M`` negatives is drawn per batch
    (with replacement) from the proposal ``Q`` and shared by every prediction of the batch.
    Each logit is corrected by its expected count ``M·Q(j)``, the positive's too:
    ``ŝ_ij = s_ij − log(M·Q(j))`` and
    ``L_i = log(exp ŝ_ip + Σ_{j∈S, j≠p_i} exp ŝ_ij) − ŝ_ip`` (``sampled_correction="all"``, the
    default: the in-batch form of Yi et al., where the positive is itself a draw). Under the uniform
    proposal the correction cancels, leaving a softmax over the positive and the sample alone.
    ``sampled_correction="negatives"`` corrects the negatives only and keeps the positive's logit
    exact, ``L_i = log(exp s_ip + Σ_{j∈S, j≠p_i} exp ŝ_ij) − s_ip``: the corrected sum is the
    importance-sampling estimate of the full softmax's ``Σ_{j≠p_i} exp s_ij``, so the loss tends to
    full CE's as ``M`` grows, and under the uniform proposal each negative's logit rises by
    ``log(N/M)``. Measured (docs/benchmarks.md): it raised SASRec's test NDCG@10 on Amazon Beauty
    (+0.0009 [0.0006, 0.0012], 4 seeds) and Office (+0.0019 [0.0003, 0.0034], 7 seeds), not
    BERT4Rec's on Office (−0.0027 [−0.0078, +0.0023], 7 seeds), and on a 100k-item catalogue it
    needed 1.8× the epochs for +0.003; so it is not the default.
    Draws that hit the positive ("accidental hits") are removed from that row's sum, so a
    negative is never the positive. With ``negatives_per="prediction"`` every prediction draws
    its own ``M`` negatives instead (as RecTools' and eSASRec's sampled softmax do), at the cost
    of gathering ``P × M`` item rows per batch. Under the popularity proposal the correction
    removes the bias towards penalising popular items.

    ``sampler="mixed"`` draws from two sources at once (the mixed negative sampling of Yang et
    al., WWW 2020; eSASRec mixes the same two): ``M_b = ⌈M/2⌉`` *in-batch* negatives, the
    positives of randomly chosen predictions of the same batch (so item ``j`` comes with
    probability ``q_j``, its share of the training targets), and ``M_u = M − M_b`` uniform
    ones. Each logit is corrected by its expected count under the two draws together,
    ``M_b·q_j + M_u/N`` (the balance heuristic of multiple importance sampling: the union
    of the two samples estimates the softmax's normaliser without bias, with less variance
    than either source's own correction). Popular items are contrasted often, as they are
    in the data; rare ones are still reached through the uniform half.

    ``sampler="mixed_logq"`` mixes as eSASRec does: the in-batch half is drawn uniformly over the
    *distinct* items among the batch's positives, the rest uniformly over the catalogue, and every
    logit, the positive's included, is corrected by ``−log q_j`` (``q_j``: item ``j``'s share of the
    training interactions, counts + 1), whichever source drew it.

``softmax_temperature``
    ``ce`` and ``sampled_ce`` divide every score by ``τ`` before the softmax (``s_ij / τ``, then the
    logQ correction), so ``τ < 1`` sharpens the softmax and puts more of the negatives' gradient on the
    highest-scored ones; 1 (the default) leaves the loss as written above. Only training sees it: a
    ranking by ``s_ij`` is the same at any ``τ``.

``gbce``
    Generalised BCE of gSASRec (Petrov & Macdonald, RecSys 2023), with ``M``
    negatives drawn per prediction, as in gSASRec (shared ones made SASRec collapse on
    Amazon Beauty: every drawn item took every position's negative gradient at once).
    Sampling rate ``α = M / (N − 1)``, calibration ``t ∈ [0, 1]``,
    ``β = α·(t·(1 − 1/α) + 1/α)``, and
    ``L_i = −β·log σ(s_ip) − Σ_{j∈S_i, j≠p_i} c_j·log(1 − σ(s_ij))``.
    ``t = 0`` is plain BCE (``β = 1``); ``t = 1`` gives ``β = α``; the paper's default is
    0.75. The derivation assumes uniform negatives; under the popularity proposal each
    negative term carries the importance weight ``c_j = 1 / (N·Q(j))`` (1 when uniform), so
    the negative sum estimates the uniform one that β is calibrated for.

``bce``
    SASRec's original loss: per prediction, ``num_negatives`` uniform negatives of its own,
    ``softplus(−s_ip) + Σ softplus(s_ij)``.

``auto`` (the default)
    ``ce`` below the device's crossover in :data:`AUTO_SAMPLED_FROM` (8,000 items on a CPU; on
    CUDA, where a full softmax over tens of thousands of items costs little, 200,000); from
    there on :data:`AUTO_SAMPLED_LOSS` with its :data:`DEFAULT_NEGATIVES` negatives. The choice,
    the device and why are recorded in ``victim.fit_info_["objective"]``, in the saved model
    and in every audit cell. Other accelerators (``mps``) follow the CPU rule.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ._layers import weighted_softmax_ce

__all__ = ["LOSSES", "NEGATIVES_PER", "SAMPLED_CORRECTIONS", "SAMPLERS", "AUTO_SAMPLED_FROM", "AUTO_MEASURED", "AUTO_SAMPLED_LOSS",
           "DEFAULT_NEGATIVES", "Objective", "auto_crossover", "resolve_objective"]

LOSSES = ("auto", "ce", "sampled_ce", "gbce", "bce")
NEGATIVES_PER = ("batch", "prediction")
SAMPLED_CORRECTIONS = ("all", "negatives")
SAMPLERS = ("uniform", "popularity", "mixed", "mixed_logq")
#: The samplers that need every item's training count.
COUNTED_SAMPLERS = ("popularity", "mixed", "mixed_logq")
#: The samplers that take half their negatives from the batch's positives, once per batch.
IN_BATCH_SAMPLERS = ("mixed", "mixed_logq")
#: Per device type, catalogues of at least this many items train with the sampled loss when
#: ``loss="auto"``. CPU: the crossover measured on the 2-core development machine
#: (benchmarks/catalogue_scale.py and benchmarks/sampled_losses.py; docs/victims.md). CUDA: full CE
#: stays the default for every catalogue that ``benchmarks/gpu.py`` measured it no slower on
#: (24k items on an H200, issue 29); the 200k figure is that script's largest catalogue and is
#: provisional until the script records the crossover (``AUTO_MEASURED``).
AUTO_SAMPLED_FROM = {"cpu": 8_000, "cuda": 200_000}
#: Whether each device's crossover comes from a recorded measurement (see ``AUTO_SAMPLED_FROM``).
AUTO_MEASURED = {"cpu": True, "cuda": False}
#: The sampled loss ``auto`` picks above the crossover: the one that reached full CE's
#: quality on Amazon Beauty (docs/benchmarks.md).
AUTO_SAMPLED_LOSS = "sampled_ce"
#: Negatives when ``num_negatives`` is not set: per batch for sampled softmax (1,024: on Amazon
#: Beauty 256 reached 82% of full CE's test NDCG@10, 1,024 92%), per prediction for gBCE (256,
#: as in gSASRec) and ``bce`` (1, as in SASRec).
DEFAULT_NEGATIVES = {"sampled_ce": 1024, "gbce": 256, "bce": 1}


def check_objective_fields(cfg) -> None:
    """Validate the loss fields of a victim configuration (``loss``, ``num_negatives``, ``sampler``, ``gbce_t``)."""
    if cfg.loss not in LOSSES:
        raise ConfigError(f"must be one of {', '.join(LOSSES)}, got {cfg.loss!r}", param="loss")
    if cfg.num_negatives is not None and (isinstance(cfg.num_negatives, bool) or not isinstance(cfg.num_negatives, int)
                                          or cfg.num_negatives < 1):
        raise ConfigError(f"must be None (the loss's default) or a positive integer, got {cfg.num_negatives!r}",
                          param="num_negatives")
    if cfg.sampler not in SAMPLERS:
        raise ConfigError(f"must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}", param="sampler")
    if not 0.0 <= float(cfg.gbce_t) <= 1.0:
        raise ConfigError(f"must be in [0, 1], got {cfg.gbce_t!r}", param="gbce_t")
    if cfg.loss == "bce" and cfg.sampler != "uniform":
        raise ConfigError("loss='bce' draws uniform negatives per prediction; use sampler='uniform' "
                          "or 'sampled_ce' / 'gbce', which correct for the popularity proposal", param="sampler")
    if cfg.negatives_per not in NEGATIVES_PER:
        raise ConfigError(f"must be one of {', '.join(NEGATIVES_PER)}, got {cfg.negatives_per!r}", param="negatives_per")
    if cfg.negatives_per == "prediction" and cfg.sampler in IN_BATCH_SAMPLERS:
        raise ConfigError(f"sampler={cfg.sampler!r} takes its in-batch half once per batch; use negatives_per='batch' with it",
                          param="negatives_per")
    if cfg.sampled_correction not in SAMPLED_CORRECTIONS:
        raise ConfigError(f"must be one of {', '.join(SAMPLED_CORRECTIONS)}, got {cfg.sampled_correction!r}",
                          param="sampled_correction")
    if cfg.sampled_correction == "negatives" and (cfg.loss not in ("auto", "sampled_ce") or cfg.sampler == "mixed_logq"):
        raise ConfigError("the negatives-only correction is sampled softmax's estimate of the full normaliser: it needs "
                          "loss='sampled_ce' (or 'auto') and a sampler whose correction is an expected count (not "
                          f"'mixed_logq'); got loss={cfg.loss!r}, sampler={cfg.sampler!r}", param="sampled_correction")
    t = cfg.softmax_temperature  # a finite number already (check_field_types)
    if not float(t) > 0:
        raise ConfigError(f"must be a finite number > 0 (1: the plain softmax), got {t!r}", param="softmax_temperature")
    if float(t) != 1.0 and cfg.loss in ("gbce", "bce"):
        raise ConfigError(f"the temperature scales a softmax; loss={cfg.loss!r} has none: use loss='ce', 'sampled_ce' or "
                          "'auto' with it, or softmax_temperature=1", param="softmax_temperature")
    if cfg.loss == "gbce" and cfg.sampler in IN_BATCH_SAMPLERS:
        raise ConfigError(f"sampler={cfg.sampler!r} shares in-batch negatives across the batch, which gBCE does not (it draws "
                          "per prediction); use loss='sampled_ce' (or 'auto') with it, or sampler='uniform'/'popularity'",
                          param="sampler")


class Objective:
    """A resolved training objective: callable on ``(h, table, targets, w, gen, bias, offset)``.

    ``table[offset + k]`` is item ``k`` (0-based; ``offset=1`` for an embedding matrix whose row
    0 is padding), ``bias`` an optional output bias indexed like ``table``. Returns the
    weighted mean loss of the batch.
    """

    def __init__(self, loss: str, num_items: int, num_negatives: int, sampler: str = "uniform", gbce_t: float = 0.75,
                 counts: np.ndarray | None = None, chosen_by: str = "config", device: torch.device | str = "cpu",
                 negatives_per: str = "batch", sampled_correction: str = "all", temperature: float = 1.0):
        if loss not in LOSSES[1:]:
            raise ConfigError(f"must be one of {', '.join(LOSSES[1:])}, got {loss!r}", param="loss")
        self.loss, self.num_items, self.num_negatives = loss, int(num_items), int(num_negatives)
        self.sampler, self.gbce_t, self.chosen_by = sampler, float(gbce_t), chosen_by
        self.negatives_per = negatives_per if loss == "sampled_ce" else ("batch" if loss == "ce" else "prediction")
        self.probs = None
        self.sampled_correction = sampled_correction if loss == "sampled_ce" else "all"
        self.temperature = float(temperature) if loss in ("ce", "sampled_ce") else 1.0
        # Zero-weight terms are dropped before anything is drawn (a host-device synchronisation on a
        # GPU) on the CPU; on a GPU too for the in-batch samplers, whose pool is the batch's targets, and
        # where each term draws its own negatives, whose gathered rows cost far more than one wait.
        # Otherwise on a GPU they stay: weight 0 removes them from the loss and every gradient, and no
        # draw depends on them (full CE draws nothing; shared negatives ignore the rows). A sparse item
        # table drops them too (``__call__``): its gradient would list their rows, and lazy Adam move them.
        on_gpu = torch.device(device).type == "cuda"
        self.drops_zero_weight_terms = not on_gpu or sampler in IN_BATCH_SAMPLERS or not (loss == "ce" or self.shared)
        self.sparse = False  # gradients of the gathered item rows as sparse tensors (set by the training loop)
        n, m = self.num_items, self.num_negatives
        self.in_batch = 0  # negatives taken from the batch's own positives (IN_BATCH_SAMPLERS)
        if sampler in COUNTED_SAMPLERS:
            if counts is None or len(counts) != num_items:
                raise ConfigError(f"the {sampler} sampler needs the training counts of every item", param="sampler")
        if sampler == "popularity":
            c = np.asarray(counts, dtype=np.float64) + 1.0  # every item stays a possible negative
            self.probs = torch.as_tensor(c / c.sum(), dtype=torch.float32, device=device)
        if sampler == "mixed":
            self.in_batch = (m + 1) // 2
            c = np.asarray(counts, dtype=np.float64)
            share = c / max(c.sum(), 1.0)  # q_j: item j's share of the training targets
            expected = self.in_batch * share + (m - self.in_batch) / n  # M_b·q_j + M_u/N
            self.log_expected = torch.as_tensor(np.log(expected), dtype=torch.float32, device=device)
            self.importance = None
        elif sampler == "mixed_logq":
            self.in_batch = (m + 1) // 2
            c = np.asarray(counts, dtype=np.float64) + 1.0
            self.log_expected = torch.as_tensor(np.log(c / c.sum()), dtype=torch.float32, device=device)  # log q_j, every logit
            self.importance = None
        elif self.probs is None:  # uniform: Q(j) = 1/N
            self.log_expected = None
            self.importance = None
        else:
            self.log_expected = torch.log(m * self.probs)  # log(M·Q(j)), [N]
            self.importance = 1.0 / (n * self.probs)  # c_j = 1/(N·Q(j)), [N]
        alpha = m / max(1, n - 1)
        self.beta = alpha * (self.gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha) if alpha > 0 else 1.0

    def describe(self) -> dict:
        d = {"loss": self.loss, "chosen_by": self.chosen_by, "num_items": self.num_items}
        if self.loss != "ce":
            d["num_negatives"] = self.num_negatives
            d["sampler"] = self.sampler if self.loss != "bce" else "uniform, per prediction"
            d["negatives_shared_per_batch"] = self.shared
            d["negatives_per"] = self.negatives_per
            if self.in_batch:
                d["in_batch_negatives"] = self.in_batch
        if self.loss == "sampled_ce":
            d["sampled_correction"] = self.sampled_correction
        if self.temperature != 1.0:
            d["softmax_temperature"] = self.temperature
        if self.loss == "gbce":
            d["gbce_t"] = self.gbce_t
            d["gbce_beta"] = self.beta
        return d

    @property
    def shared(self) -> bool:
        """Whether one set of negatives serves the whole batch (sampled softmax, by default) or each
        prediction draws its own (gBCE, BCE; sampled softmax with ``negatives_per="prediction"``)."""
        return self.loss == "sampled_ce" and self.negatives_per == "batch"

    def draw(self, gen: torch.Generator, device, rows: int = 0, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Negatives (0-based item rows) drawn with replacement from ``Q``: ``[M]`` shared ones,
        or ``[rows, M]`` when each of ``rows`` predictions draws its own. The mixed sampler takes
        its in-batch half from ``targets`` (the batch's positives) and the rest uniformly."""
        shape = (rows, self.num_negatives) if rows else (self.num_negatives,)
        if self.in_batch:
            pool = torch.unique(targets) if self.sampler == "mixed_logq" else targets  # distinct items, or each positive
            picked = pool[torch.randint(0, len(pool), (self.in_batch,), generator=gen, device=device)]
            rest = torch.randint(0, self.num_items, (self.num_negatives - self.in_batch,), generator=gen, device=device)
            return torch.cat([picked, rest])
        if self.probs is None:
            return torch.randint(0, self.num_items, shape, generator=gen, device=device)
        return torch.multinomial(self.probs, max(1, rows) * self.num_negatives, replacement=True, generator=gen).view(shape)

    def __call__(self, h, table, targets, w, gen, bias=None, offset: int = 1) -> torch.Tensor:
        """The loss of states ``h`` [P, D] against items ``targets`` (0-based, [P]).

        ``table`` holds the item rows from row ``offset`` on (an embedding matrix with its
        padding row first: ``offset=1``); ``bias`` (optional) is indexed like ``table``. The
        sampled losses gather only the rows they use, straight from the full table, so the
        backward writes one dense gradient instead of one per slice and gather (at 200k items
        those zero-filled gradients were half of a step).
        """
        n = self.num_items
        if self.drops_zero_weight_terms or self.sparse:  # a sparse gradient would list their rows, and lazy Adam move them
            keep = w > 0
            if not bool(keep.all()):  # zero-weight terms leave the batch before any negative is drawn, so
                h, targets, w = h[keep], targets[keep], w[keep]  # their data cannot shift other terms' draws
                if len(targets) == 0:
                    return (h.sum() + table.sum()) * 0.0
        if self.temperature != 1.0:  # s_ij / τ = (h_i / τ)·e_j + b_j / τ
            h = h / self.temperature
            bias = None if bias is None else bias / self.temperature
        if self.loss == "ce":
            return weighted_softmax_ce(h, table[offset : offset + n], targets, w,
                                       bias=None if bias is None else bias[offset : offset + n])
        coef = (w / w.sum().clamp_min(1e-12)).to(h.dtype).detach()
        if self.loss == "bce":  # SASRec's: uniform negatives, a draw equal to the positive moves to the next id
            neg = torch.randint(0, n, (len(targets), self.num_negatives), generator=gen, device=targets.device)
            neg = torch.where(neg == targets[:, None], (neg + 1) % n, neg)
            return self._per_prediction(h, table, targets, coef, neg, 1.0, None, bias, offset)
        if self.loss == "gbce":
            # gBCE draws M negatives per prediction, as gSASRec does: with one set shared by the
            # batch, every drawn item took the negative gradient of every position at once and
            # SASRec collapsed on Amazon Beauty (validation NDCG@10 < 0.008 at lr 3e-3 and 1e-3)
            neg = self.draw(gen, h.device, rows=len(targets))  # [P, M]
            negw = (neg != targets[:, None]).to(h.dtype)  # a negative is never the positive
            if self.importance is not None:
                negw = negw * self.importance[neg]
            return self._per_prediction(h, table, targets, coef, neg, self.beta, negw, bias, offset)
        if not self.shared:
            return self._sampled_per_prediction(h, table, targets, coef, gen, bias, offset)
        p = len(targets)
        neg = self.draw(gen, h.device, targets=targets)  # [M], 0-based, shared by the batch
        ids = torch.cat([targets, neg]) + offset
        # F.embedding, not table[ids]: its CPU backward sums repeated ids in a fixed order,
        # while indexing's accumulating backward depends on thread timing (runs would differ)
        rows = F.embedding(ids, table, sparse=self.sparse)  # [P + M, D]
        pos = (h * rows[:p]).sum(-1)  # [P]
        negl = h @ rows[p:].T  # [P, M]
        if bias is not None:
            b = F.embedding(ids, bias.unsqueeze(1)).squeeze(1)
            pos = pos + b[:p]
            negl = negl + b[p:]
        return self._corrected_softmax(pos, negl, targets, neg, coef)

    def _corrected_softmax(self, pos, negl, targets, neg, coef):
        """``Σ_i coef_i (log(exp ŝ_ip + Σ_j exp ŝ_ij) − ŝ_ip)`` over the negatives ``neg`` (``[M]`` shared by
        the batch, or ``[P, M]`` each prediction's own), each logit corrected by its log expected count (the
        positive's too unless ``sampled_correction="negatives"``), and a draw equal to the row's positive
        left out (an accidental hit is never a negative)."""
        hit = neg == targets[:, None]
        if self.log_expected is not None:
            if self.sampled_correction == "all":
                pos = pos - self.log_expected[targets]
            negl = negl - self.log_expected[neg]
        elif self.sampled_correction == "negatives":  # uniform: every negative's expected count is M/N
            negl = negl - math.log(self.num_negatives / self.num_items)
        negl = negl.masked_fill(hit, float("-inf"))
        lse = torch.logsumexp(torch.cat([pos[:, None], negl], dim=1), dim=1)
        return ((lse - pos) * coef).sum()

    def _own_scores(self, h, table, targets, neg, bias, offset):
        """Scores of each prediction's positive ``[P]`` and of its own negatives ``neg`` ``[P, M]``."""
        pos = (h * F.embedding(targets + offset, table, sparse=self.sparse)).sum(-1)
        negl = torch.einsum("pd,pmd->pm", h, F.embedding(neg + offset, table, sparse=self.sparse))
        if bias is not None:
            col = bias.unsqueeze(1)
            pos = pos + F.embedding(targets + offset, col).squeeze(1)
            negl = negl + F.embedding(neg + offset, col).squeeze(-1)
        return pos, negl

    def _sampled_per_prediction(self, h, table, targets, coef, gen, bias, offset):
        """Sampled softmax (with the logQ correction) where each prediction draws its own ``M`` negatives."""
        neg = self.draw(gen, h.device, rows=len(targets))  # [P, M]
        pos, negl = self._own_scores(h, table, targets, neg, bias, offset)
        return self._corrected_softmax(pos, negl, targets, neg, coef)

    def _per_prediction(self, h, table, targets, coef, neg, beta, negw, bias, offset):
        """``Σ_i coef_i (β·softplus(−s_ip) + Σ_m negw_im·softplus(s_i,neg_im))`` with ``neg`` [P, M]
        negatives of each prediction's own (``negw`` None: every weight 1)."""
        pos, negl = self._own_scores(h, table, targets, neg, bias, offset)
        neg_term = F.softplus(negl) if negw is None else F.softplus(negl) * negw
        per = beta * F.softplus(-pos) + neg_term.sum(1)
        return (per * coef).sum()


def auto_crossover(device) -> tuple[str, int, bool]:
    """``(device type the rule follows, catalogue size from which auto samples, whether measured)``."""
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    return kind, AUTO_SAMPLED_FROM[kind], AUTO_MEASURED[kind]


def resolve_objective(cfg, num_items: int, counts: np.ndarray | None = None, device="cpu") -> Objective:
    """The objective a configuration means for a catalogue of ``num_items`` items trained on ``device``."""
    loss, chosen_by = cfg.loss, "config"
    if loss == "auto":
        kind, crossover, measured = auto_crossover(device)
        basis = f"the {'measured' if measured else 'provisional (not yet measured)'} {kind.upper()} crossover"
        if num_items >= crossover:
            loss = AUTO_SAMPLED_LOSS
            chosen_by = f"auto: {num_items:,} items >= {crossover:,}, {basis}"
        else:
            loss = "ce"
            chosen_by = f"auto: {num_items:,} items < {crossover:,}, {basis}"
    m = cfg.num_negatives if cfg.num_negatives is not None else DEFAULT_NEGATIVES.get(loss, 1)
    if loss != "ce" and num_items < 2:
        raise ConfigError(f"a sampled loss needs at least 2 items, the catalogue has {num_items}", param="loss")
    return Objective(loss, num_items, m, cfg.sampler if loss != "bce" else "uniform", cfg.gbce_t, counts, chosen_by, device,
                     negatives_per=cfg.negatives_per, sampled_correction=cfg.sampled_correction,
                     temperature=cfg.softmax_temperature)
