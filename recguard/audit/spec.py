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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._params import check_value
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

__all__ = ["AuditSpec", "DEFAULT_ATTACKS", "GRID_KEYS", "EXECUTION_KEYS", "read_toml"]

DEFAULT_ATTACKS = ("random", "popular", "segment", "surrogate")
EXTRACTION_TYPES = {"mode": "str", "num_sequences": "int", "length": "int | None", "k": "int", "surrogate": "str", "epochs": "int",
                    "real_fraction": "float", "random_share": "float"}
EXTRACTION_KEYS = set(EXTRACTION_TYPES)
# the grid's extent: a resumed audit may add or drop these (every cell is keyed by all it depends on)
GRID_KEYS = ("attacks", "budgets", "defenses", "seeds", "inject", "defense_controls")
# how to run, not what: a TOML spec may hold them, they never change a number
EXECUTION_TYPES = {"backend": "str", "jobs": "int", "threads": "int | None", "address": "str | None",
                   "max_retries": "int", "transport": "str"}
EXECUTION_KEYS = tuple(EXECUTION_TYPES)


def _table(name: str, value: Any) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"must be a table of NAME = VALUE (e.g. [{name}] in TOML), got {type(value).__name__}", param=name)
    return dict(value)


def _list(name: str, value: Any, kind: str) -> tuple:
    """A scalar or a list of scalars of ``kind`` → a tuple, without duplicates."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out = tuple(check_value(f"{name}[{i}]", v, kind) for i, v in enumerate(items))
    dup = [v for i, v in enumerate(out) if v in out[:i]]
    if dup:
        raise ConfigError(f"{dup[0]!r} is listed twice; each entry must be distinct", param=name)
    return out


def _targets(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("unpopular", "popular"):
            raise ConfigError(f"must be 'unpopular', 'popular' or a list of item ids, got {value!r}", param="targets")
        return value
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"must be 'unpopular', 'popular' or a non-empty list of item ids, got {value!r}", param="targets")
    out = _list("targets", value, "int")
    if any(t < 1 for t in out):
        raise ConfigError("item ids are positive integers (0 is padding)", param="targets")
    return out


@dataclass(frozen=True)
class AuditSpec:
    """One audit grid: (attack × budget × defense × seed) cells plus a clean run per seed.

    Attributes:
        dataset, path, min_rating, k_core: what :func:`recguard.data.load` gets.
        model, model_config: the victim: an architecture (``sasrec``, ``bert4rec``, ``gru4rec``) with
            config overrides, or ``MODULE:FACTORY`` — the user's own model, imported from the
            working directory or ``PYTHONPATH`` and built as ``FACTORY(num_items, **model_config)``.
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
        from ..attacks.poisoning import ATTACKS
        from ..attacks.poisoning._base import MAX_BUDGET, ORDERS
        from ..defenses import DEFENSES

        for name, ann in (("dataset", "str"), ("path", "str | None"), ("min_rating", "float | None"), ("k_core", "int | None"),
                          ("model", "str"), ("defense_controls", "bool"), ("num_targets", "int"), ("order", "str"),
                          ("surrogate", "str")):
            object.__setattr__(self, name, check_value(name, getattr(self, name), ann))
        from ..victims import architectures
        from ..victims._factory import is_factory_path

        if not is_factory_path(self.model) and self.model not in architectures():
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(sorted(architectures()))} or give your own "
                              "as MODULE:FACTORY (e.g. mymodel:make_victim)", param="model")
        if self.k_core is not None and self.k_core < 1:
            raise ConfigError(f"must be a positive integer (keep users and items with >= k interactions), got {self.k_core}",
                              param="k_core")
        if self.num_targets < 1:
            raise ConfigError(f"must be a positive integer, got {self.num_targets}", param="num_targets")
        for name in ("model_config", "extraction"):
            object.__setattr__(self, name, _table(name, getattr(self, name)))
        for name in ("attack_params", "defense_params"):
            tables = {k: _table(f"{name}.{k}", v) for k, v in _table(name, getattr(self, name)).items()}
            object.__setattr__(self, name, tables)
        object.__setattr__(self, "attacks", _list("attacks", self.attacks, "str"))
        object.__setattr__(self, "inject", _list("inject", self.inject, "str"))
        object.__setattr__(self, "defenses", _list("defenses", self.defenses, "str"))
        object.__setattr__(self, "budgets", _list("budgets", self.budgets, "float"))
        object.__setattr__(self, "seeds", _list("seeds", self.seeds, "int"))
        object.__setattr__(self, "ks", _list("ks", self.ks, "int"))
        object.__setattr__(self, "targets", _targets(self.targets))
        for a in self.attacks:
            if a not in ATTACKS and a not in ("bandwagon", "extracted"):
                raise ConfigError(f"unknown attack {a!r}; choose from {', '.join(sorted(ATTACKS))}, extracted", param="attacks")
        if not self.attacks and not self.inject and not (self.defense_controls and set(self.defenses) - {"none"}):
            raise ConfigError("nothing to audit: give at least one attack or --inject file (or --defense-controls with a "
                              "defense other than none)", param="attacks")
        if not self.defenses:
            raise ConfigError("give at least one defense (none = the undefended baseline)", param="defenses")
        for d in self.defenses:
            if d not in DEFENSES:
                raise ConfigError(f"unknown defense {d!r}; available: {', '.join(sorted(DEFENSES))}", param="defenses")
        if self.attacks and not self.budgets:
            raise ConfigError("give at least one budget for the attacks (a fraction of genuine users, e.g. 0.01)", param="budgets")
        for b in self.budgets:
            if not 0 < b <= MAX_BUDGET:
                raise ConfigError(f"budget {b!r} must be a fraction of genuine users in (0, {MAX_BUDGET}], e.g. 0.01", param="budgets")
        if not self.seeds:
            raise ConfigError("give at least one seed", param="seeds")
        for sd in self.seeds:
            if not 0 <= sd < 2**63:
                raise ConfigError(f"seed {sd} must be an integer in 0..2**63-1", param="seeds")
        if not self.ks:
            raise ConfigError("give at least one cut-off k", param="ks")
        for k in self.ks:
            if k < 1:
                raise ConfigError(f"cut-off {k} must be a positive integer", param="ks")
        if self.order not in ORDERS:
            raise ConfigError(f"must be one of {', '.join(ORDERS)}, got {self.order!r}", param="order")
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
        for key, ann in EXTRACTION_TYPES.items():
            if key in self.extraction:
                self.extraction[key] = check_value(f"extraction.{key}", self.extraction[key], ann)
        unknown = set(self.attack_params) - set(self.attacks) - {"bandwagon"}
        if unknown:
            raise ConfigError(f"options for attacks not in the audit: {', '.join(sorted(unknown))}", param="attack_params")
        from ..attacks.poisoning import make_attack

        for a in self.attacks:  # data-independent checks of every attack's options, before any training
            params = dict(self.attack_params.get(a, {}))
            order = params.pop("order", self.order)
            make_attack("surrogate" if a == "extracted" else a, budget=(self.budgets or (0.01,))[0],
                        targets=self.targets if isinstance(self.targets, str) else list(self.targets),
                        num_targets=self.num_targets, order=order, **params)
        self.inject_files()  # distinct names, no file given twice

    def inject_files(self) -> dict[str, str]:
        """Attack name → path of each ``inject`` file. Names are ``inject:<stem>``; files that share
        a stem are told apart by as many parent folders as it takes (``inject:a/x``, ``inject:b/x``)."""
        paths = [Path(p) for p in self.inject]
        resolved = [p.resolve() for p in paths]
        for i, r in enumerate(resolved):
            if r in resolved[:i]:
                raise ConfigError(f"{paths[i]}: given twice (the same file would count as two attacks)", param="inject")
        parts = [r.with_suffix("").parts for r in resolved]
        depth = [1] * len(paths)
        while True:
            names = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
            clash = [i for i, n in enumerate(names) if names.count(n) > 1]
            if not clash:
                break
            grow = [i for i in clash if depth[i] < len(parts[i])]
            if not grow:  # same path but for the suffix (x.json, x.txt): keep the whole file name
                names = [n if i not in clash else "/".join(r.parts[-depth[i]:]) for i, (n, r) in enumerate(zip(names, resolved))]
                break
            for i in grow:
                depth[i] += 1
        return {f"inject:{n}": str(p) for n, p in zip(names, paths)}

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict, *, source: str | None = None) -> AuditSpec:
        """A spec from plain data (a TOML table, ``spec.json``); ``source`` names the file in errors."""
        where = f"{source}: " if source else ""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}an audit spec must be a table of KEY = VALUE, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(d) - known)
        if unknown:
            raise ConfigError(f"{where}unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}", param=unknown[0])
        if not source:
            return cls(**d)
        try:
            return cls(**d)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> AuditSpec:
        """The spec of a TOML file (its execution keys, if any, are read by :func:`read_toml`)."""
        return read_toml(path)[0]

    @classmethod
    def _toml_table(cls, path: str | Path) -> dict:
        from .._io import read_regular_file

        p = Path(path)
        raw = read_regular_file(p, ConfigError, what="TOML audit spec")
        try:
            obj = tomllib.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})", param="--config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML ({exc})", param="--config") from None
        except RecursionError:
            raise ConfigError(f"{p}: TOML nested too deeply", param="--config") from None
        if "audit" in obj and isinstance(obj["audit"], dict):
            obj = {**{k: v for k, v in obj.items() if k != "audit"}, **obj["audit"]}
        return obj

    def replace(self, **changes) -> AuditSpec:
        return AuditSpec.from_dict({**self.to_dict(), **changes})

    def digest(self) -> str:
        """Hash of everything that changes results, the grid's extent aside: two specs with the
        same digest may resume each other's folder."""
        core = {k: v for k, v in self.to_dict().items() if k not in GRID_KEYS}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    def attack_names(self) -> list[str]:
        return list(self.attacks) + list(self.inject_files())


def read_toml(path: str | Path) -> tuple[AuditSpec, dict]:
    """A TOML audit file: (the spec, its execution options — ``backend``, ``jobs``, ``threads``,
    ``address``, ``max_retries``, ``transport`` — which never change a number)."""
    obj = AuditSpec._toml_table(path)
    execution = {}
    for key, ann in EXECUTION_TYPES.items():
        if key in obj:
            try:
                execution[key] = check_value(key, obj.pop(key), ann)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}", param=key) from None
    return AuditSpec.from_dict(obj, source=str(path)), execution
