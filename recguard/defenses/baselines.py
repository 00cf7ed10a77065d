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
  removes a given number r of users; here no attack size is known, so a user is flagged
  when its log-contribution is a robust outlier (beyond the median by more than ``z``
  scaled median absolute deviations, on the suspicious side).
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
from ._base import Defense, DefenseOutcome

__all__ = ["PCASelect", "AdversarialTraining", "pca_contributions"]


def pca_contributions(train, components: int = 3, rng=0) -> np.ndarray:
    """Each user's contribution to the top ``components`` principal components of the users
    (users as variables: rows of the row-z-scored binary user × item matrix): the sum of its
    squared loadings, ``[U]``."""
    from scipy import sparse
    from scipy.sparse.linalg import LinearOperator, svds

    n_users, n_items = train.num_users, train.num_items
    lengths = train.lengths
    rows = np.repeat(np.arange(n_users), lengths)
    x = sparse.csr_matrix((np.ones(len(train.items)), (rows, train.items - 1)), shape=(n_users, n_items))
    x.data[:] = 1.0  # repeated items count once
    x.sum_duplicates()
    x.data[:] = 1.0
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


class PCASelect(Defense):
    """PCA-VarSelect: remove (weight 0) the users whose contribution to the top principal components
    sets them apart.

    Args:
        components: principal components (3 in the paper).
        direction: ``"low"`` (the paper: least contribution is suspicious), ``"high"``, or
            ``"auto"``: the side where the defender's own simulated fakes (``known`` attack at
            ``known_budget``, added to a copy of the data) fall.
        z: flag users whose log-contribution lies more than ``z`` robust standard deviations
            (1.4826 × MAD) from the median on the suspicious side. ``None`` (default): calibrate
            on the simulated fakes instead — the threshold that keeps 90% of them, but never
            flagging more than ``max_flag_share`` of the users (a false-positive budget, not an
            attack size).
    """

    name = "pca"

    def __init__(self, *, components: int = 3, direction: str = "auto", z: float | None = None, known: str = "random",
                 known_budget: float = 0.01, max_flag_share: float = 0.05):
        if not isinstance(components, int) or components < 1:
            raise ConfigError(f"must be a positive integer, got {components!r}", param="components")
        if z is not None and not float(z) > 0:
            raise ConfigError(f"must be > 0, got {z!r}", param="z")
        if direction not in ("auto", "low", "high"):
            raise ConfigError(f"must be 'auto', 'low' or 'high', got {direction!r}", param="direction")
        if not 0 < float(max_flag_share) < 1:
            raise ConfigError(f"must be in (0, 1), got {max_flag_share!r}", param="max_flag_share")
        self.components, self.z, self.direction = components, None if z is None else float(z), direction
        self.known, self.known_budget, self.max_flag_share = known, float(known_budget), float(max_flag_share)

    def _robust_z(self, train, seed: int) -> np.ndarray:
        log_c = np.log(np.maximum(pca_contributions(train, self.components, rng=seed), 1e-300))
        med = float(np.median(log_c))
        mad = 1.4826 * float(np.median(np.abs(log_c - med))) or 1e-12
        return (log_c - med) / mad

    def apply(self, split: Split, *, make_victim: Callable, rng: np.random.Generator) -> DefenseOutcome:
        from ..attacks.poisoning import make_attack

        t0 = time.perf_counter()
        train, n = split.train, split.train.num_users
        info: dict = {}
        direction = self.direction
        if direction == "auto" or self.z is None:
            # one PCA over the data plus the defender's own simulated fakes: they set the side and the threshold
            sim = make_attack(self.known, budget=self.known_budget, max_profile_length=make_victim().max_len).poison(train, rng=rng)
            z_all = self._robust_z(sim.data, int(rng.integers(0, 2**31 - 1)))
            robust_z, sim_z = z_all[:n], z_all[sim.fake_users]
            info["simulated_fakes_mean_z"] = float(sim_z.mean())
            if direction == "auto":
                direction = "high" if sim_z.mean() > 0 else "low"
        else:
            robust_z, sim_z = self._robust_z(train, int(rng.integers(0, 2**31 - 1))), None
        sign = 1.0 if direction == "high" else -1.0
        suspicion = sign * robust_z
        if self.z is not None:
            threshold = self.z
        else:
            cap = float(np.nextafter(np.quantile(suspicion, 1 - self.max_flag_share), np.inf))
            threshold = max(float(np.quantile(sign * sim_z, 0.1)), cap)
        flagged = suspicion >= threshold
        return DefenseOutcome(user_weights=np.where(flagged, 0.0, 1.0), scores=suspicion, flagged=flagged, threshold=threshold,
                              info={**info, "components": self.components, "direction": direction, "threshold": threshold,
                                    "flagged_users": int(flagged.sum()), "defense_time_s": time.perf_counter() - t0})


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
