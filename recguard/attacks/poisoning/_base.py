"""Shared machinery of fake-user injection attacks (PROTOCOLS §2).

Threat model: the attacker appends fake users to the training data; genuine users
are never edited. An attack is configured in ``__init__`` and applied with
``poison(data, rng=...)``, which returns a new dataset (the input is never mutated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from collections.abc import Sequence

import numpy as np

from ..._rng import RNGLike, as_generator
from ...data import SequenceData
from ...errors import ConfigError

__all__ = ["PoisonResult", "PoisoningAttack", "FillerAttack", "ModelGuidedAttack", "select_targets", "ORDERS", "THREAT_MODELS"]

ORDERS = ("interleave", "target_last", "random")
#: what each family of attacks needs from the world: ``filler`` the data only, ``model-guided`` a
#: model of the victim (white-box, retrained or stolen), ``injected`` a file of fake users
THREAT_MODELS = ("filler", "model-guided", "injected")
MAX_BUDGET = 0.5


@dataclass(frozen=True, eq=False)
class PoisonResult:
    """What an attack produced.

    Attributes:
        data: the poisoned dataset: the input's users, then the fake users.
        fake_users: indices of the fake users in ``data``.
        targets: promoted item ids.
        meta: attack name, parameters and anything attack-specific (e.g. timing).
    """

    data: SequenceData
    fake_users: np.ndarray
    targets: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def fake_sequences(self) -> list[list[int]]:
        return [self.data[int(u)].tolist() for u in self.fake_users]

    def to_inject_json(self) -> dict:
        """LoRec's ``inject_user_*.json`` layout: ``{"user_data": {user: [items]}, "target_item": [...]}``."""
        return {
            "user_data": {self.data.user_ids[int(u)]: self.data[int(u)].tolist() for u in self.fake_users},
            "target_item": [int(t) for t in self.targets],
        }


def select_targets(
    data: SequenceData, targets: str | Sequence[int] | np.ndarray, num_targets: int, rng: np.random.Generator
) -> np.ndarray:
    """Target items: explicit ids, or ``"unpopular"`` (seeded draw from the least popular 20% of
    items with ≥ 1 interaction) or ``"popular"`` (from the most popular 20%)."""
    if isinstance(targets, str):
        if targets not in ("unpopular", "popular"):
            raise ConfigError(f"must be 'unpopular', 'popular' or a list of item ids, got {targets!r}", param="targets")
        counts = data.item_counts()
        items = np.flatnonzero(counts > 0)
        items = items[items > 0]
        order = items[np.argsort(counts[items], kind="stable")]  # least popular first
        pool_size = max(num_targets, int(np.ceil(0.2 * len(order))))
        pool = order[:pool_size] if targets == "unpopular" else order[-pool_size:]
        if num_targets > len(pool):
            raise ConfigError(f"asked for {num_targets} targets but only {len(pool)} candidates exist", param="num_targets")
        return np.sort(rng.choice(pool, size=num_targets, replace=False)).astype(np.int64)
    t = np.asarray(list(targets), dtype=np.int64).reshape(-1)
    if len(t) == 0:
        raise ConfigError("give at least one target item id", param="targets")
    bad = t[(t < 1) | (t > data.num_items)]
    if len(bad):
        raise ConfigError(f"target id {int(bad[0])} is outside the catalogue 1..{data.num_items}", param="targets")
    return np.unique(t)


class PoisoningAttack:
    """Base class: fake profiles = target slots + filler items chosen by the subclass.

    Every attack declares what an audit needs to know about it, so the audit never tests names:
    :attr:`threat_model`, :meth:`requires` (capabilities its surrogate must offer), :attr:`revision`
    and :meth:`cell_key_part` (what besides its options determines its fake users).

    Args:
        budget: fake users as a fraction of genuine users (0.01 = 1%); ``0 < budget ≤ 0.5``.
        targets: explicit item ids, ``"unpopular"`` (default) or ``"popular"``.
        num_targets: how many targets to draw when ``targets`` is a strategy (default 5).
        profile_length: items per fake user (default: the genuine users' mean length,
            capped at ``max_profile_length``).
        max_profile_length: the cap (set it to the victim's ``max_len``).
        order: where target items go: ``"interleave"`` ([t, a1, t, a2, ...]),
            ``"target_last"`` (fillers, then each target once) or ``"random"`` (as many
            target slots as ``interleave``, at random positions).
        target_mode: ``"all"`` (every fake user promotes every target, cycling through them)
            or ``"split"`` (fake users are shared round-robin, one target each).
    """

    name: ClassVar[str] = "base"
    #: one of :data:`THREAT_MODELS`
    threat_model: ClassVar[str] = "filler"
    #: bumped when the attack's fake users change for the same seed; audit cells carry it (None: never bumped)
    revision: ClassVar[int | None] = None

    def __init__(
        self,
        *,
        budget: float = 0.01,
        targets: str | Sequence[int] = "unpopular",
        num_targets: int = 5,
        profile_length: int | None = None,
        max_profile_length: int = 200,
        order: str = "interleave",
        target_mode: str = "all",
    ):
        if not isinstance(budget, (int, float)) or not 0 < budget <= MAX_BUDGET:
            raise ConfigError(f"must be a fraction of genuine users in (0, {MAX_BUDGET}], e.g. 0.01 for 1%; got {budget!r}", param="budget")
        if order not in ORDERS:
            raise ConfigError(f"must be one of {', '.join(ORDERS)}; got {order!r}", param="order")
        if target_mode not in ("all", "split"):
            raise ConfigError(f"must be 'all' or 'split'; got {target_mode!r}", param="target_mode")
        if num_targets < 1:
            raise ConfigError("must be >= 1", param="num_targets")
        if profile_length is not None and profile_length < 2:
            raise ConfigError("must be >= 2 (a target and a filler)", param="profile_length")
        self.budget = float(budget)
        self.targets = targets if isinstance(targets, str) else [int(t) for t in targets]
        self.num_targets = int(num_targets)
        self.profile_length = profile_length
        self.max_profile_length = int(max_profile_length)
        self.order = order
        self.target_mode = target_mode

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def requires(self) -> tuple[str, ...]:
        """Capabilities (:data:`recguard.victims.CAPABILITIES`) the attack's surrogate must offer; none
        for an attack that reads the data only."""
        return ()

    @classmethod
    def cell_key_part(cls, *, surrogate: str, extraction: dict) -> dict:
        """What, besides the attack's options, budget and seed, determines its fake users in an audit
        whose surrogate setting is ``surrogate`` and whose extraction options are ``extraction``."""
        part: dict = {"surrogate": None}
        if cls.revision is not None:
            part["attack_revision"] = cls.revision
        return part

    def check(self, data: SequenceData) -> None:
        """Raise :class:`~recguard.errors.ConfigError` if the attack cannot run on ``data`` (before any training)."""
        self._check(data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(budget={self.budget}, order={self.order!r}, targets={self.targets!r})"

    # ------------------------------------------------------------------ layout
    def num_fake_users(self, data: SequenceData) -> int:
        return max(1, int(round(self.budget * data.num_users)))

    def resolve_length(self, data: SequenceData) -> int:
        if self.profile_length is not None:
            return min(self.profile_length, self.max_profile_length)
        return int(max(2, min(round(float(data.lengths.mean())), self.max_profile_length)))

    def layout(self, length: int, targets: np.ndarray, n_fake: int, rng: np.random.Generator) -> list[np.ndarray]:
        """One array per fake user: target id at target slots, 0 at filler slots."""
        out = []
        for f in range(n_fake):
            mine = targets if self.target_mode == "all" else targets[[f % len(targets)]]
            slots = np.zeros(length, dtype=np.int64)
            if self.order == "interleave":
                pos = np.arange(0, length, 2)
            elif self.order == "target_last":
                pos = np.arange(length - min(len(mine), length // 2), length)
            else:
                pos = np.sort(rng.choice(length, size=(length + 1) // 2, replace=False))
            slots[pos] = np.resize(mine, len(pos))
            out.append(slots)
        return out

    # ------------------------------------------------------------------ poison
    def poison(self, data: SequenceData, *, rng: RNGLike = None) -> PoisonResult:
        """Append fake users to ``data`` (never mutated) and return the poisoned dataset."""
        gen = as_generator(rng)
        self._check(data)
        targets = select_targets(data, self.targets, self.num_targets, gen)
        n_fake = self.num_fake_users(data)
        length = self.resolve_length(data)
        slots = self.layout(length, targets, n_fake, gen)
        profiles = self._fill(data, slots, targets, gen)
        width = len(str(n_fake))
        ids = [f"fake_{self.name}_{i:0{width}d}" for i in range(n_fake)]
        poisoned = data.append_users(profiles, user_ids=ids)
        fake = np.arange(data.num_users, poisoned.num_users, dtype=np.int64)
        meta = {"attack": self.name, "params": self.get_params(), "num_fake_users": n_fake, "profile_length": length}
        return PoisonResult(poisoned, fake, targets, meta)

    def _check(self, data: SequenceData) -> None:
        """Subclass hook: validate that the attack can run on ``data``."""

    def _fill(self, data: SequenceData, slots: list[np.ndarray], targets: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Fill the 0 slots of each layout with filler items (default: ``_filler_pool`` draws)."""
        out = []
        for s in slots:
            s = s.copy()
            holes = np.flatnonzero(s == 0)
            s[holes] = self._draw_fillers(data, targets, s, holes, rng)
            out.append(s)
        return out

    def _draw_fillers(self, data, targets, slots, holes, rng) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class FillerAttack(PoisoningAttack):
    """An attack that reads the training data only (no model): subclasses choose the fillers."""

    threat_model = "filler"


class ModelGuidedAttack(PoisoningAttack):
    """An attack that crafts its fake users with a model of the victim: the audited model itself
    (white-box), the attacker's own retrained model, a saved one, or one stolen through the
    victim's top-k API.

    Subclasses declare :meth:`requires` (what the surrogate must offer) and craft in
    :meth:`_fill` with ``self.surrogate``. :attr:`surrogate_source` says where an audit takes the
    surrogate from: ``None`` = the audit's ``surrogate`` setting (``victim``, ``retrain`` or a saved
    victim), ``"extracted"`` = a surrogate extracted from the clean victim's top-k lists.
    """

    threat_model = "model-guided"
    surrogate_source: ClassVar[str | None] = None

    def __init__(self, surrogate=None, **kw):
        super().__init__(**kw)
        self.surrogate = surrogate

    def get_params(self) -> dict:
        p = super().get_params()
        p.pop("surrogate", None)
        s = self.surrogate
        p["surrogate"] = None if s is None else getattr(s, "architecture", type(s).__name__)
        return p

    def with_surrogate(self, surrogate) -> ModelGuidedAttack:
        """A copy of this attack that uses ``surrogate``."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.surrogate = surrogate
        return new

    @classmethod
    def cell_key_part(cls, *, surrogate: str, extraction: dict) -> dict:
        part = super().cell_key_part(surrogate=surrogate, extraction=extraction)
        if cls.surrogate_source == "extracted":
            part["extraction"] = extraction
        else:
            part["surrogate"] = surrogate
        return part

    def _check(self, data) -> None:
        from ...victims import require

        s = self.surrogate
        if s is None:
            raise ConfigError(f"the {self.name} attack needs a trained surrogate: {type(self).__name__}(surrogate=victim), or "
                              "with_surrogate(victim)", param="surrogate")
        require(s, self.requires(), who=f"the {self.name} attack's surrogate")
        if s.num_items != data.num_items:
            raise ConfigError(
                f"the surrogate knows {s.num_items} items but the data has {data.num_items}; "
                "train the surrogate on the same item space (ids 1..N)", param="surrogate",
            )


def draw_without_replacement(pool: np.ndarray, n: int, rng: np.random.Generator, p: np.ndarray | None = None) -> np.ndarray:
    """``n`` items from ``pool``; without replacement while the pool lasts, then with replacement."""
    if len(pool) == 0:
        raise ConfigError("no filler items available")
    if n <= len(pool) and (p is None or np.count_nonzero(p) >= n):
        return rng.choice(pool, size=n, replace=False, p=p)
    return rng.choice(pool, size=n, replace=True, p=p)


def non_targets(data: SequenceData, targets: np.ndarray) -> np.ndarray:
    items = np.arange(1, data.num_items + 1)
    return items[~np.isin(items, targets)]
