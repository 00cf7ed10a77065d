"""The audit specification: what to attack, how, with which defenses and seeds.

Filled from CLI flags or a TOML file (a top-level table ``[audit]`` or bare keys)::

    dataset = "ml-100k"
    model = "sasrec"
    attacks = ["random", "popular", "segment", "surrogate"]
    budgets = [0.01, 0.03]
    seeds = [0, 1, 2]
    [model_config]
    max_len = 50
    [attack_params.popular]
    popular_share = 0.5
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["AuditSpec", "DEFAULT_ATTACKS"]

DEFAULT_ATTACKS = ("random", "popular", "segment", "surrogate")
EXTRACTION_KEYS = {"mode", "num_sequences", "length", "k", "surrogate", "epochs", "real_fraction", "random_share"}


@dataclass(frozen=True)
class AuditSpec:
    """One audit grid: (attack × budget × defense × seed) cells plus a clean run per seed.

    Attributes:
        dataset, path, min_rating, k_core: what :func:`recguard.data.load` gets.
        model, model_config: the victim architecture and config overrides.
        attacks: attack names (``random``, ``popular``, ``segment``, ``surrogate``, and ``extracted``:
            the surrogate-guided attack with a surrogate stolen from the clean victim's top-k API —
            the black-box chain).
        attack_params: per-attack options, e.g. ``{"popular": {"popular_share": 0.3}}``.
        inject: JSON files of externally crafted fake users (each is one more attack).
        budgets: fake users as fractions of genuine users.
        defenses: defense names (``none`` is the baseline; ``llm4dec``, ``lorec``).
        defense_params: per-defense options, e.g. ``{"lorec": {"known": "popular"}}``.
        defense_controls: also train every defense (other than ``none``) on the clean data, one
            cell per defense and seed: what the defense alone does to the targets' exposure
            and to clean quality, and the removal net of it.
        seeds: one clean and one poisoned training per seed.
        targets / num_targets: target items (explicit ids, ``unpopular`` or ``popular``).
        order: where targets sit in fake profiles (``interleave``, ``target_last``, ``random``).
        surrogate: for the surrogate attack: ``victim`` (the clean model itself, white-box),
            ``retrain`` (the attacker trains its own model of the same kind on the
            training data with another seed) or a path to a saved victim.
        extraction: options of the ``extracted`` attack's model extraction: ``mode``
            (``data-free``/``few-shot``), ``num_sequences``, ``length``, ``k``, ``surrogate``
            (architecture), ``epochs``, ``real_fraction``, ``random_share``.
        ks: cut-offs of the target metrics.
    """

    dataset: str = "ml-100k"
    path: str | None = None
    min_rating: float | None = None
    k_core: int | None = None
    model: str = "sasrec"
    model_config: dict = field(default_factory=dict)
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    attack_params: dict = field(default_factory=dict)
    inject: tuple[str, ...] = ()
    budgets: tuple[float, ...] = (0.01,)
    defenses: tuple[str, ...] = ("none",)
    defense_params: dict = field(default_factory=dict)
    defense_controls: bool = False
    seeds: tuple[int, ...] = (0,)
    targets: Any = "unpopular"
    num_targets: int = 5
    order: str = "interleave"
    surrogate: str = "victim"
    ks: tuple[int, ...] = (10, 50)
    extraction: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("attacks", "inject", "budgets", "defenses", "seeds", "ks"):
            v = getattr(self, name)
            if isinstance(v, (str, int, float)):
                v = (v,)
            object.__setattr__(self, name, tuple(v))
        if isinstance(self.targets, list):
            object.__setattr__(self, "targets", tuple(int(t) for t in self.targets))
        from ..attacks.poisoning import ATTACKS
        from ..defenses import DEFENSES

        for a in self.attacks:
            if a not in ATTACKS and a not in ("bandwagon", "extracted"):
                raise ConfigError(f"unknown attack {a!r}; choose from {', '.join(sorted(ATTACKS))}", param="attacks")
        if not self.attacks and not self.inject and not (self.defense_controls and set(self.defenses) - {"none"}):
            raise ConfigError("nothing to audit: give at least one attack or --inject file (or --defense-controls with a "
                              "defense other than none)", param="attacks")
        for d in self.defenses:
            if d not in DEFENSES:
                raise ConfigError(f"unknown defense {d!r}; available: {', '.join(sorted(DEFENSES))}", param="defenses")
        for b in self.budgets:
            if not isinstance(b, (int, float)) or not 0 < b <= 0.5:
                raise ConfigError(f"budget {b!r} must be a fraction of genuine users in (0, 0.5], e.g. 0.01", param="budgets")
        if not self.seeds:
            raise ConfigError("give at least one seed", param="seeds")
        if not isinstance(self.defense_controls, bool):
            raise ConfigError(f"must be true or false, got {self.defense_controls!r}", param="defense_controls")
        extra = set(self.defense_params) - set(self.defenses)
        if extra:
            raise ConfigError(f"options for defenses not in the audit: {', '.join(sorted(extra))}", param="defense_params")
        from ..defenses import make_defense

        for d in self.defenses:  # bad options fail now, not after the first victim has trained
            make_defense(d, **self.defense_params.get(d, {}))
        bad = set(self.extraction) - EXTRACTION_KEYS
        if bad:
            raise ConfigError(f"unknown extraction option(s) {', '.join(sorted(bad))}; valid: {', '.join(sorted(EXTRACTION_KEYS))}",
                              param="extraction")
        unknown = set(self.attack_params) - set(self.attacks) - {"bandwagon"}
        if unknown:
            raise ConfigError(f"options for attacks not in the audit: {', '.join(sorted(unknown))}", param="attack_params")

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "audit spec") -> "AuditSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}", param=unknown[0])
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path) -> "AuditSpec":
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: file not found", param="--config")
        try:
            obj = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML ({exc})", param="--config") from None
        if "audit" in obj and isinstance(obj["audit"], dict):
            obj = {**{k: v for k, v in obj.items() if k != "audit"}, **obj["audit"]}
        return cls.from_dict(obj, source=str(p))

    def replace(self, **changes) -> "AuditSpec":
        return AuditSpec.from_dict({**self.to_dict(), **changes})

    def digest(self) -> str:
        """Hash of everything that changes results (used to refuse resuming a different audit)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def attack_names(self) -> list[str]:
        return list(self.attacks) + [f"inject:{Path(p).stem}" for p in self.inject]
