"""The decision layer shared by every detector-based defense: per-user suspicion scores in,
flags and loss weights out.

A detector (PCA-select, LLM4Dec, LoRec's calibrator, or one of yours) only *ranks* users.
How deep to cut into that ranking is a separate decision, and the one that failed to carry
over between catalogues when it was placed from the defender's simulated fakes: a simulated
attack need not look like the real one. :class:`Decision` therefore never places the cut
from simulated fakes. It reads the score distribution itself, under an explicit
false-positive budget:

- ``rule="top"``: flag the ``max_flag_share`` most suspicious users, always. It honours the
  budget by construction (at most that share of genuine users is flagged) and is the
  *scorer ceiling* rule: the removal a scorer reaches when its top x% are dropped.
- ``rule="mixture"``: fit a two-component Gaussian mixture to the scores (seeded) and flag
  the users whose posterior of the upper component is at least 0.5, at most
  ``max_flag_share`` of them (the highest). A small upper component flags fewer users than
  the budget; a broad one (every scorer's, on Amazon Office) leaves the budget to decide, so
  the rule then flags exactly the budget, like ``top``.
- ``rule="group"``: flag a *dense group at the top* of the ranking, or nobody. A campaign's fakes
  are many users with nearly the same (high) score, so the top of the ranking holds a stretch
  where the scores are packed far closer than the tail of a genuine population packs them. The
  rule reads the Rényi-normalised spacings ``r · (s_(r) − s_(r+1))`` of the sorted scores (for a
  tail of exponential type they are draws of one scale whatever the rank) over the top
  ``2 × budget`` ranks, finds the cut ``k`` (between :data:`GROUP_MIN_SHARE` of the users and the
  budget) where "the spacings within the top ``k`` have a smaller mean than those below the
  ``k``-th" is best supported (the log-likelihood ratio of two exponential means against one; the
  spacing at the edge counts with the tail, so a wide edge supports a cut exactly there), and
  flags the top ``k`` users only when the group is at least ``1 / density_ratio`` times denser
  than the tail below it and
  the log-likelihood ratio is at least :data:`GROUP_MIN_EVIDENCE`. On data without a campaign it
  flags nobody, so a defense that decides this way costs nothing on clean data. A detector may
  pass ``confirm``, its own check of the candidate group (PCA-select: do nearly all of them hold
  an item that few others hold?); a confirmed candidate is flagged even when it is not dense
  enough, as the members the check names within the budget (PCA-select: every user within the
  budget who holds that item), which also completes a dense group whose cut fell inside it.
- ``rule="outlier"``: flag robust outliers, more than ``z`` scaled median absolute deviations
  above the median, at most ``max_flag_share`` of them.
- ``rule="paper"``: the detector's published rule, computed by the detector and passed in as
  ``paper_flags`` (kept so the faithful version stays measurable).
- ``rule="simulated"``: the cut that keeps 90% of the defender's simulated fakes, at most
  ``max_flag_share`` of the users: the rule recguard used before this layer, kept selectable
  because it is the one that did not carry over (its evidence is in ``docs/defenses.md``).

``weights="hard"`` gives flagged users weight 0 and everyone else 1; ``weights="soft"`` gives
every user ``1 − P(suspicious)`` from the mixture's posterior (only users within the
false-positive budget lose weight), so a borderline user is discounted rather than removed.

The defender's simulated fakes, when a detector has them, are used for two things only:
the *direction* (which side of the score is suspicious, a detector's own business) and a
*separation check*: the ROC-AUC of simulated fakes against the data, recorded in
``info["simulated_separation_auc"]`` so a report can say when a scorer did not even separate
its own simulation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["Decision", "Decided", "RULES", "WEIGHTS", "DEFAULT_RULE", "DEFAULT_FLAG_SHARE", "DECISION_REVISION", "top_mask",
           "dense_top_group", "GROUP_MIN_SHARE", "GROUP_MIN_EVIDENCE"]

RULES = ("top", "mixture", "group", "outlier", "paper", "simulated")
#: bumped when a decision's outcome changes for the same scores (detector defenses carry it in their revision)
DECISION_REVISION = 2
#: the rule every detector uses unless told otherwise (chosen on Amazon Office alone; docs/defenses.md)
DEFAULT_RULE = "mixture"
#: the false-positive budget unless told otherwise: a campaign of up to 3% of the users can be removed whole,
#: and with a 1% campaign present at most about 2% of the genuine users are flagged (docs/defenses.md)
DEFAULT_FLAG_SHARE = 0.03
WEIGHTS = ("hard", "soft")
#: the smallest group ``rule="group"`` cuts, as a share of the users (at least 5 users): a few users with equal
#: scores (identical histories are common in sparse data) are not a campaign
GROUP_MIN_SHARE = 0.002
#: the log-likelihood ratio ``rule="group"`` needs before it flags anyone (e^10 ≈ 22,000 to 1 for the group)
GROUP_MIN_EVIDENCE = 10.0


@dataclass
class Decided:
    """What :meth:`Decision.decide` returns: ``flagged`` (bool per user), ``weights`` (loss weight
    per user, 0 = removed), the score ``threshold`` at or above which users were flagged (None
    when nobody was), and ``info`` for the report."""

    flagged: np.ndarray
    weights: np.ndarray
    threshold: float | None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """Turns suspicion scores (higher = more suspicious) into flags and loss weights.

    Args:
        rule: ``"top"``, ``"mixture"`` (default), ``"group"``, ``"outlier"``, ``"paper"`` or ``"simulated"`` (see the module).
        max_flag_share: the false-positive budget: never flag more than this share of the users
            (so never more than this share of the genuine ones). In (0, 0.5]; default 0.03.
        z: robust z-score cut of the ``outlier`` rule.
        density_ratio: how much denser than the tail a top group must be for ``rule="group"`` to flag
            it (its mean normalised spacing over the tail's), in (0, 1); default 0.1 (chosen on Amazon Office).
        weights: ``"hard"`` (flagged → 0) or ``"soft"`` (1 − mixture posterior within the budget).
        seed: seeds the mixture fit.
    """

    rule: str = DEFAULT_RULE
    max_flag_share: float = DEFAULT_FLAG_SHARE
    z: float = 3.0
    weights: str = "hard"
    seed: int = 0
    density_ratio: float = 0.1

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError(f"must be one of {', '.join(RULES)}, got {self.rule!r}", param="rule")
        if self.weights not in WEIGHTS:
            raise ConfigError(f"must be 'hard' or 'soft', got {self.weights!r}", param="weights")
        share = self.max_flag_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < float(share) <= 0.5:
            raise ConfigError(f"must be a share of users in (0, 0.5], e.g. 0.02; got {share!r}", param="max_flag_share")
        if isinstance(self.z, bool) or not isinstance(self.z, (int, float)) or not float(self.z) > 0:
            raise ConfigError(f"must be > 0, got {self.z!r}", param="z")
        ratio = self.density_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < float(ratio) < 1:
            raise ConfigError(f"must be in (0, 1), e.g. 0.1 (a group ten times denser than the tail); got {ratio!r}",
                              param="density_ratio")

    def settings(self) -> dict:
        return {"rule": self.rule, "max_flag_share": float(self.max_flag_share), "weights": self.weights,
                **({"z": float(self.z)} if self.rule == "outlier" else {}),
                **({"density_ratio": float(self.density_ratio)} if self.rule == "group" else {})}

    def budget(self, n: int) -> int:
        """The most users this decision may flag among ``n``."""
        return int(np.floor(float(self.max_flag_share) * n + 1e-9))

    def decide(self, scores, *, simulated=None, paper_flags=None,
               confirm: Callable[[np.ndarray, np.ndarray], dict] | None = None) -> Decided:
        """Flags and weights for ``scores`` (one per user, higher = more suspicious).

        ``simulated``: the same scorer's scores of the defender's simulated fakes (only for the
        separation check); ``paper_flags``: the detector's published decision (``rule="paper"``);
        ``confirm``: under ``rule="group"``, called with the indices of the candidate group (the
        best cut, dense enough or not) and those of every user within the budget, most suspicious
        first; it returns a dict whose ``"confirmed"`` says whether the candidate is a group (flag
        it even when the density test did not accept it), and whose optional ``"members"``
        (indices within the budget) then replace it as the group (recorded in
        ``info["group"]["confirmation"]``, without the members). An unconfirmed candidate that
        the density test accepted is flagged as it is.
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not np.isfinite(s).all():
            raise DataError(f"{int((~np.isfinite(s)).sum())} of {len(s)} suspicion scores are not finite; the detector diverged")
        n, cap = len(s), self.budget(len(s))
        info: dict = {**self.settings(), "users": n, "budget_users": cap}
        if simulated is not None and len(simulated) and n:
            info["simulated_separation_auc"] = separation_auc(np.asarray(simulated, dtype=np.float64), s)
        posterior, within = None, top_mask(s, cap)  # the budget: the cap most suspicious users
        if self.rule == "paper":
            if paper_flags is None:
                raise ConfigError("this detector has no published decision rule; choose top, mixture, group or outlier", param="rule")
            flagged = np.asarray(paper_flags, dtype=bool).reshape(-1).copy()
        elif self.rule == "simulated":
            if simulated is None or not len(simulated):
                raise ConfigError("rule 'simulated' needs the scores of the defender's simulated fakes", param="rule")
            flagged = within & (s >= float(np.quantile(np.asarray(simulated, dtype=np.float64), 0.1)))
        elif self.rule == "top":
            flagged = within
        elif self.rule == "outlier":
            med = float(np.median(s)) if n else 0.0
            mad = 1.4826 * float(np.median(np.abs(s - med))) if n else 0.0
            robust_z = (s - med) / (mad if mad > 0 else max(float(np.std(s)), 1e-12))
            flagged = within & (robust_z >= float(self.z))
        elif self.rule == "group":
            size, group = dense_top_group(s, cap, density_ratio=float(self.density_ratio))
            candidate = group["candidate_users"]
            flagged = top_mask(s, size)
            if confirm is not None and candidate and group["log_likelihood_ratio"] >= GROUP_MIN_EVIDENCE:
                ranked = np.argsort(-s, kind="stable")[:cap]
                verdict = dict(confirm(ranked[:candidate], ranked))
                members = verdict.pop("members", None)
                if verdict.get("confirmed"):
                    flagged = top_mask(s, candidate) if members is None else np.isin(np.arange(n), members) & within
                group["confirmation"] = {**verdict, "flagged_users": int(flagged.sum())}
            info["group"] = group
        else:
            posterior, fit = mixture_posterior(s, self.seed)
            info["mixture"] = fit
            flagged = within & (posterior >= 0.5)
        info["flagged_users"] = int(flagged.sum())
        info["flagged_share"] = float(flagged.mean()) if n else 0.0
        threshold = float(s[flagged].min()) if flagged.any() else None
        if self.weights == "soft":
            if posterior is None:
                posterior, info["mixture"] = mixture_posterior(s, self.seed)
            # within the budget a user keeps 1 − P(upper component); outside it, full weight
            weights = np.where(within, 1.0 - posterior, 1.0)
        else:
            weights = np.where(flagged, 0.0, 1.0)
        return Decided(flagged=flagged, weights=weights, threshold=threshold, info=info)


def top_mask(s: np.ndarray, k: int) -> np.ndarray:
    """A boolean mask of the ``k`` highest scores (ties broken by position, stable)."""
    out = np.zeros(len(s), dtype=bool)
    if k > 0:
        out[np.argsort(-s, kind="stable")[:k]] = True
    return out


def dense_top_group(s: np.ndarray, cap: int, *, density_ratio: float = 0.1) -> tuple[int, dict]:
    """The size of the dense group at the top of ``s`` (0 when there is none) within ``cap`` users,
    and what decided it: the best cut, its density ratio and its log-likelihood ratio (see
    ``rule="group"`` in the module)."""
    n = len(s)
    depth = min(2 * cap, n - 1)
    smallest = max(5, int(np.ceil(GROUP_MIN_SHARE * n)))
    if cap < smallest or depth <= cap:
        return 0, {"candidate_users": 0, "reason": f"a budget of {cap} users is below the smallest group ({smallest})"}
    top = np.sort(s)[::-1][: depth + 1]
    spacing = (top[:-1] - top[1:]) * np.arange(1, depth + 1)  # Rényi-normalised: one scale on an exponential-type tail
    spacing = np.maximum(spacing, max(float(spacing.mean()), 1e-300) * 1e-9)  # tied scores: a tiny, not a zero, spacing
    total = np.cumsum(spacing)
    k = np.arange(smallest, cap + 1)
    # spacings within the group (ranks 1..k-1) against the rest (k..depth): the edge below the k-th user, however wide,
    # counts with the tail, so a wide edge supports a cut exactly there
    inner_sum, outer_sum = total[k - 2], total[-1] - total[k - 2]
    inner, outer = inner_sum / (k - 1), outer_sum / (depth - k + 1)
    overall = total[-1] / depth
    evidence = (k - 1) * np.log(overall / inner) + (depth - k + 1) * np.log(overall / outer)
    evidence = np.where(inner < outer, evidence, -np.inf)
    best = int(np.argmax(evidence))
    ratio = float(inner[best] / outer[best])
    llr = float(evidence[best]) if np.isfinite(evidence[best]) else 0.0  # no cut where the top is denser: no evidence
    found = bool(llr >= GROUP_MIN_EVIDENCE and ratio <= density_ratio)
    info = {"candidate_users": int(k[best]), "density_ratio": ratio, "log_likelihood_ratio": llr, "found": found}
    return (int(k[best]) if found else 0), info


def separation_auc(simulated: np.ndarray, data: np.ndarray) -> float:
    """P(a simulated fake scores above a user of the data), ties counting one half: how well the
    scorer separates the defender's own simulation from the data (0.5 = not at all)."""
    from scipy.stats import rankdata

    both = np.concatenate([simulated, data])
    ranks = rankdata(both)
    m, n = len(simulated), len(data)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def mixture_posterior(s: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """P(upper component | score) under a two-component 1-D Gaussian mixture fitted to ``s``
    (standardised first; seeded, 3 initialisations), and the fit's means, weights and spreads.

    The upper component is the one with the higher mean. Scores with a single distinct value
    (nothing to separate) get posterior 0."""
    from sklearn.mixture import GaussianMixture

    n = len(s)
    if n < 4 or np.ptp(s) == 0:
        return np.zeros(n), {"components": 0}
    mu, sd = float(s.mean()), float(s.std()) or 1.0
    x = ((s - mu) / sd)[:, None]
    gm = GaussianMixture(2, n_init=3, random_state=int(seed), reg_covar=1e-4).fit(x)
    upper = int(np.argmax(gm.means_.ravel()))
    post = gm.predict_proba(x)[:, upper]
    means = gm.means_.ravel() * sd + mu
    spreads = np.sqrt(gm.covariances_.ravel()) * sd
    return post, {"upper_mean": float(means[upper]), "lower_mean": float(means[1 - upper]),
                  "upper_weight": float(gm.weights_[upper]), "upper_sd": float(spreads[upper]), "lower_sd": float(spreads[1 - upper])}
