"""The audit specification: what to attack, how, with which defenses and seeds.

Filled from CLI flags or a TOML file (a top-level table ``[audit]`` or bare keys)::

    dataset = "ml-100k"
    model = "sasrec"
    attacks = ["random", "popular", "segment", "surrogate"]
    budgets = [0.01, 0.03]
    seeds = [0, 1, 2]
    recipe = "recsys23"        # optional: a named recipe's victim settings, under model_config
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
                    "real_fraction": "float", "random_share": "float", "defense": "str"}
EXTRACTION_KEYS = set(EXTRACTION_TYPES)
# the grid's extent: a resumed audit may add or drop these (every cell is keyed by all it depends on)
GRID_KEYS = ("attacks", "budgets", "defenses", "seeds", "inject", "defense_controls", "forensics")
# how to run, not what: a TOML spec may hold them, they never change a number
EXECUTION_TYPES = {"backend": "str", "jobs": "int", "threads": "int | None", "address": "str | None",
                   "max_retries": "int", "transport": "str"}
EXECUTION_KEYS = tuple(EXECUTION_TYPES)
#: the ``surrogate`` settings that are not a saved model: the clean victim (white-box) or the attacker's retrained copy
SURROGATE_SETTINGS = ("victim", "retrain")


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
        forensics: trace the injected users by training-data influence in every undefended
            poisoned cell: the victim keeps this many checkpoints, and the cell records the recall
            of the fake users among the top 1% most influential training users for the targets
            (:func:`recguard.probes.influence`); 0 (default) turns it off.
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
    forensics: int = 0

    def __post_init__(self) -> None:
        """Check and normalise every field; a bad one is a :class:`ConfigError` naming it."""
        self._normalise_fields()
        self._check_victim()
        self._check_grid()
        self._check_components()
        self.inject_files()  # distinct names, no file given twice

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _normalise_fields(self) -> None:
        for name, ann in (("dataset", "str"), ("path", "str | None"), ("min_rating", "float | None"), ("k_core", "int | None"),
                          ("model", "str"), ("defense_controls", "bool"), ("num_targets", "int"), ("order", "str"),
                          ("surrogate", "str"), ("forensics", "int")):
            self._set(name, check_value(name, getattr(self, name), ann))
        for name in ("model_config", "extraction"):
            self._set(name, _table(name, getattr(self, name)))
        for name in ("attack_params", "defense_params"):
            self._set(name, {k: _table(f"{name}.{k}", v) for k, v in _table(name, getattr(self, name)).items()})
        for name, kind in (("attacks", "str"), ("inject", "str"), ("defenses", "str"), ("budgets", "float"), ("seeds", "int"),
                           ("ks", "int")):
            self._set(name, _list(name, getattr(self, name), kind))
        self._set("targets", _targets(self.targets))
        bad = set(self.extraction) - EXTRACTION_KEYS
        if bad:
            raise ConfigError(f"unknown extraction option(s) {', '.join(sorted(bad))}; valid: {', '.join(sorted(EXTRACTION_KEYS))}",
                              param="extraction")
        self._set("extraction", {k: check_value(f"extraction.{k}", v, EXTRACTION_TYPES[k]) for k, v in self.extraction.items()})
        if "defense" in self.extraction:
            from ..defenses.serving import check_defense

            try:
                check_defense(self.extraction["defense"])
            except ConfigError as exc:
                raise ConfigError(str(exc).removeprefix("defense: "), param="extraction.defense") from None

    def _check_victim(self) -> None:
        from ..victims import architectures, is_factory_path

        if not is_factory_path(self.model) and self.model not in architectures():
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(sorted(architectures()))} or give your own "
                              "as MODULE:FACTORY (e.g. mymodel:make_victim)", param="model")
        if self.k_core is not None and self.k_core < 1:
            raise ConfigError(f"must be a positive integer (keep users and items with >= k interactions), got {self.k_core}",
                              param="k_core")

    def _check_grid(self) -> None:
        from ..attacks.poisoning import MAX_BUDGET, ORDERS

        if self.num_targets < 1:
            raise ConfigError(f"must be a positive integer, got {self.num_targets}", param="num_targets")
        if self.forensics < 0:
            raise ConfigError(f"must be a number of checkpoints >= 0 (0 = off), got {self.forensics}", param="forensics")
        if not self.attacks and not self.inject and not (self.defense_controls and self.defended()):
            raise ConfigError("nothing to audit: give at least one attack or --inject file (or --defense-controls with a "
                              "defense other than none)", param="attacks")
        if not self.defenses:
            raise ConfigError("give at least one defense (none = the undefended baseline)", param="defenses")
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

    def _check_components(self) -> None:
        """Every attack and defense exists and accepts its options (data-independent checks, before any training)."""
        from ..attacks.poisoning import ALIASES, attack_class, make_attack
        from ..defenses import DEFENSES, make_defense

        for a in self.attacks:
            attack_class(a)
        for d in self.defenses:
            if d not in DEFENSES:
                raise ConfigError(f"unknown defense {d!r}; available: {', '.join(sorted(DEFENSES))}", param="defenses")
        extra = set(self.defense_params) - set(self.defenses)
        if extra:
            raise ConfigError(f"options for defenses not in the audit: {', '.join(sorted(extra))}", param="defense_params")
        for d in self.defenses:
            make_defense(d, **self.defense_params.get(d, {}))
        unknown = set(self.attack_params) - set(self.attacks) - set(ALIASES)
        if unknown:
            raise ConfigError(f"options for attacks not in the audit: {', '.join(sorted(unknown))}", param="attack_params")
        for a in self.attacks:
            params = dict(self.attack_params.get(a, {}))
            order = params.pop("order", self.order)
            targets = self.targets if isinstance(self.targets, str) else list(self.targets)
            make_attack(a, budget=(self.budgets or (0.01,))[0], targets=targets, num_targets=self.num_targets, order=order, **params)

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
    def toml_table(cls, path: str | Path) -> dict:
        """The raw table of a TOML audit file (``[audit]`` merged into the top level)."""
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

    def defended(self) -> list[str]:
        """The audit's defenses other than the undefended baseline (as each defense declares)."""
        from ..defenses import DEFENSES

        return [d for d in self.defenses if not getattr(DEFENSES.get(d), "baseline", False)]

    def attack_key_part(self, name: str) -> dict:
        """What, besides its options, determines the fake users of attack ``name`` in this audit
        (declared by the attack: its surrogate setting, extraction options, revision, file digest)."""
        from ..attacks.poisoning import InjectedAttack, attack_class

        files = self.inject_files() if self.inject else {}  # paths are resolved only when there are files
        if name in files:
            return InjectedAttack.key_part_of(files[name])
        return attack_class(name).cell_key_part(surrogate=self.surrogate, extraction=self.extraction)

    def extracted_attacks(self) -> list[str]:
        """The attacks whose surrogate the audit extracts from each seed's clean victim."""
        from ..attacks.poisoning import attack_class

        return [a for a in self.attacks if getattr(attack_class(a), "surrogate_source", None) == "extracted"]

    def trains_surrogate_here(self) -> bool:
        """Whether model-guided attacks use the audited victim itself or a retrained copy (rather
        than a saved model)."""
        return self.surrogate in SURROGATE_SETTINGS


def read_toml(path: str | Path) -> tuple[AuditSpec, dict]:
    """A TOML audit file: (the spec, its execution options — ``backend``, ``jobs``, ``threads``,
    ``address``, ``max_retries``, ``transport`` — which never change a number)."""
    obj = AuditSpec.toml_table(path)
    if "recipe" in obj:  # a named recipe becomes the settings it stands for; the file's own model_config wins
        from ..victims import recipe

        try:
            settings = recipe(obj.pop("recipe"), obj.get("model", AuditSpec.model))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        obj["model_config"] = {**settings, **obj.get("model_config", {})}
    execution = {}
    for key, ann in EXECUTION_TYPES.items():
        if key in obj:
            try:
                execution[key] = check_value(key, obj.pop(key), ann)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}", param=key) from None
    return AuditSpec.from_dict(obj, source=str(path)), execution
