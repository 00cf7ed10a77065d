"""Defenses users compare LoRec against: an unsupervised detector that removes suspicious
profiles before training, and adversarial training of the victim.

- :class:`PCASelect` — PCA-VarSelect (Mehta & Nejdl, "Unsupervised strategies for shilling
  detection and robust collaborative filtering", UMUAI 2009). Users are the variables of a PCA
  over the z-scored user × item matrix; fake profiles are highly correlated with each other,
  which sets their contribution to the top principal components apart. On dense explicit
  ratings the paper removes the users that contribute *least*; on sparse implicit sequences a
  group of near-identical fake profiles *is* the largest-variance direction, so they
  contribute most. ``direction="auto"`` (default) decides which from the defender's own
  simulated attack (as LoRec learns from one), never from the injected users. The paper
  removes a given number r of users; here no attack size is known, so the shared decision
  layer (:mod:`recguard.defenses.decision`) decides how many, under a false-positive budget.
- :class:`AdversarialTraining` — APR (He et al., "Adversarial Personalized Ranking for
  Recommendation", SIGIR'18), adapted to sequential victims: each step adds ``lam`` times the
  loss under the worst-case perturbation of each item embedding (of norm ``eps`` times the
  mean item-embedding norm).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..data import Split
from ..errors import ConfigError
from ._base import Defense, DefenseOutcome, DetectorDefense
from .decision import DECISION_REVISION, DEFAULT_FLAG_SHARE, Decision

__all__ = ["PCASelect", "AdversarialTraining", "pca_contributions", "shared_rare_item"]


def pca_contributions(train, components: int = 3, rng=0) -> np.ndarray:
    """Each user's contribution to the top ``components`` principal components of the users
    (users as variables: rows of the row-z-scored binary user × item matrix): the sum of its
    squared loadings, ``[U]``."""
    from scipy.sparse.linalg import LinearOperator, svds

    n_users, n_items = train.num_users, train.num_items
    x = train.holdings()  # repeated items count once
    k = np.asarray(x.sum(1)).ravel()
    mean = k / n_items
    sd = np.sqrt(np.maximum(mean * (1 - mean), 1e-12))
    # z-scored rows = (x - mean) / sd; the SVD of that dense matrix runs through a linear operator
    op = LinearOperator(
        (n_users, n_items), dtype=np.float64,
        matvec=lambda v: (x @ v - mean * v.sum()) / sd,
        rmatvec=lambda u: x.T @ (u / sd) - (mean / sd) @ u * np.ones(n_items),
        matmat=lambda m: (x @ m - np.outer(mean, m.sum(0))) / sd[:, None],
        rmatmat=lambda m: x.T @ (m / sd[:, None]) - np.outer(np.ones(n_items), (mean / sd) @ m),
    )
    # the top left singular vectors of the z-scored matrix = the top eigenvectors of the users' covariance
    u, sv, _ = svds(op, k=min(components, min(n_users, n_items) - 1), random_state=rng)
    # loadings (singular vector × singular value): a group of m near-identical users shares a component whose
    # singular value grows as sqrt(m) while each member's entry shrinks as 1/sqrt(m), so a loading does not depend
    # on the group's size (the paper's raw coefficients would, and a bigger attack would hide better)
    return ((u * sv[None, :]) ** 2).sum(1)


def shared_rare_item(train, users: np.ndarray, ranked: np.ndarray | None = None, *, held_share: float = 0.9,
                     inside_share: float = 0.5) -> dict:
    """Whether ``users`` look like a promotion campaign: is there an item that at least
    ``held_share`` of them hold and of whose holders at least ``inside_share`` are among them?
    A campaign's fakes all hold its targets, which few genuine users hold; the users a scorer
    ranks highest on clean data share popular items at most (on Amazon Office 80% of PCA's top
    users hold one item, but only 35% of its holders are among them). Returns ``confirmed``, the
    item that decided (the most exclusive widely held one, else the most widely held), its
    share among ``users`` and the share of its holders inside; when confirmed and ``ranked`` (the
    users within a decision's budget) is given, ``members``: those of them who hold the item."""
    users = np.asarray(users, dtype=np.int64)
    x = train.holdings()  # column i - 1 is item i
    everywhere = np.asarray(x.sum(0)).ravel()
    within = np.asarray(x[users].sum(0)).ravel()
    held = within / max(1, len(users))
    exclusive = within / np.maximum(everywhere, 1)
    widely = held >= held_share
    confirmed = widely & (exclusive >= inside_share)
    best = int(np.argmax(np.where(widely, exclusive, -1.0))) if widely.any() else int(np.argmax(held))
    out = {"confirmed": bool(confirmed.any()), "item": best + 1, "held_share": float(held[best]),
           "holders_inside": float(exclusive[best]), "users": int(len(users))}
    if out["confirmed"] and ranked is not None:
        ranked = np.asarray(ranked, dtype=np.int64)
        out["members"] = ranked[np.asarray(x[ranked, best].todense()).ravel() > 0]
    return out


class PCASelect(DetectorDefense):
    """PCA-VarSelect: remove (weight 0) the users whose contribution to the top principal components
    sets them apart, decided by the shared :class:`~recguard.defenses.decision.Decision` layer.

    Users are scored on the training data as received. The defender's own simulated fakes
    (``known`` attack at ``known_budget``, added to a *copy* of the data and scored in a PCA of
    their own) only pick the direction (``direction="auto"``) and give the separation check;
    they never place the cut, except under the legacy ``rule="simulated"``.

    Args:
        components: principal components (3 in the paper).
        direction: ``"low"`` (the paper: least contribution is suspicious), ``"high"``, or
            ``"auto"``: the side where the simulated fakes fall.
        rule, max_flag_share, weights: the decision (see :class:`~recguard.defenses.decision.Decision`).
            Default ``"group"``: remove the dense group at the top of the ranking, or nobody when there
            is none (a campaign's fakes load on the top components together; genuine users do not), so
            clean data loses no user. With ``confirm=True`` (default) the candidate group is checked
            with :func:`shared_rare_item` (nearly all of its members hold an item few others hold:
            what a promotion campaign is); confirmed, every user within the budget who holds that
            item is removed, whether or not the group was dense enough. ``rule="paper"`` is the
            paper's own: remove the ``max_flag_share`` most suspicious users, the same as ``"top"``.
        z: the robust z cut of ``rule="outlier"``; density_ratio: how much denser than the tail a group
            must be for ``rule="group"`` (0.1: ten times).
        confirm: under ``rule="group"``, check the candidate group with :func:`shared_rare_item`
            and remove every holder of its item within the budget when confirmed.
    """

    name = "pca"
    #: the decision layer's revision, three higher: PCA-select decides by ``rule="group"`` with its item check unless told
    #: otherwise
    revision = DECISION_REVISION + 3

    def __init__(self, *, components: int = 3, direction: str = "auto", rule: str = "group",
                 max_flag_share: float = DEFAULT_FLAG_SHARE, z: float = 3.0, weights: str = "hard", density_ratio: float = 0.1,
                 known: str = "random", known_budget: float = 0.01, confirm: bool = True):
        if not isinstance(components, int) or components < 1:
            raise ConfigError(f"must be a positive integer, got {components!r}", param="components")
        if direction not in ("auto", "low", "high"):
            raise ConfigError(f"must be 'auto', 'low' or 'high', got {direction!r}", param="direction")
        self.decision = Decision(rule="top" if rule == "paper" else rule, max_flag_share=max_flag_share, z=z, weights=weights,
                                 density_ratio=density_ratio)
        self.components, self.direction, self.rule = components, direction, rule
        self.known, self.known_budget = known, float(known_budget)
        self.confirm = bool(confirm)

    def _log_contributions(self, train, seed: int) -> np.ndarray:
        return np.log(np.maximum(pca_contributions(train, self.components, rng=seed), 1e-300))

    def detect(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
        from ..attacks.poisoning import make_attack

        t0 = time.perf_counter()
        train, n = split.train, split.train.num_users
        # a separate PCA over a copy of the data plus the defender's own simulated fakes: direction and separation check
        sim = make_attack(self.known, budget=self.known_budget, max_profile_length=make_victim().max_len).poison(train, rng=rng)
        with_sim = self._log_contributions(sim.data, int(rng.integers(0, 2**31 - 1)))
        sim_side = float(np.mean(with_sim[sim.fake_users]) - np.median(with_sim[:n]))
        direction = self.direction if self.direction != "auto" else ("high" if sim_side > 0 else "low")
        sign = 1.0 if direction == "high" else -1.0
        simulated = sign * with_sim[sim.fake_users]
        if self.rule == "simulated":  # the legacy rule places its cut in the PCA that holds the simulated fakes
            suspicion = sign * with_sim[:n]
        else:
            suspicion = sign * self._log_contributions(train, int(rng.integers(0, 2**31 - 1)))
            # the simulated fakes' scores in the data's own units: their PCA shifts every score, so compare by rank
            simulated = np.quantile(suspicion, _ranks_within(sign * with_sim[:n], simulated))
        confirm = (lambda users, ranked: shared_rare_item(train, users, ranked)) if self.confirm else None
        decided = self.decision.decide(suspicion, simulated=simulated, confirm=confirm)
        return DefenseOutcome(user_weights=decided.weights, scores=suspicion, flagged=decided.flagged, threshold=decided.threshold,
                              info={**decided.info, "rule": self.rule, "components": self.components, "direction": direction,
                                    "simulated_side": sim_side, "defense_time_s": time.perf_counter() - t0},
                              simulated_scores=simulated)


def _ranks_within(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The share of ``reference`` at or below each of ``values`` (an empirical CDF), in [0, 1]."""
    ref = np.sort(reference)
    return np.searchsorted(ref, values, side="right") / max(1, len(ref))


class AdversarialTraining(Defense):
    """APR adversarial training of the victim's item embeddings (``fit(adversarial=(eps, lam))``).

    Args:
        eps: norm of the perturbation of each item embedding, relative to the mean item-embedding
            norm (APR perturbs MF embeddings by 0.5 in absolute terms; a relative size carries over
            between models whose embeddings have different scales).
        lam: weight of the adversarial loss (1 in APR).
    """

    name = "apr"
    requires = ("retrain", "adversarial")

    def __init__(self, *, eps: float = 0.5, lam: float = 1.0):
        if not (float(eps) > 0 and float(lam) > 0):
            raise ConfigError(f"eps and lam must be > 0, got {eps!r}, {lam!r}", param="eps")
        self.eps, self.lam = float(eps), float(lam)

    def train(self, split, *, make_victim, seed: int, rng, progress: bool = False):
        t0 = time.perf_counter()
        victim = self.victim(make_victim).fit(split, rng=seed, progress=progress, adversarial=(self.eps, self.lam))
        wall = time.perf_counter() - t0
        return victim, DefenseOutcome(info={"eps": self.eps, "lam": self.lam, "defense_time_s": 0.0, "wall_time_s": wall})
