"""Typed units of work of an audit.

A :class:`Cell` says *what* to compute — a seed's clean victim, the surrogate extracted from
it, one defense trained on the clean data (a control), or one (attack, budget, defense, seed)
poisoned training — and its :attr:`Cell.key` holds everything that determines its numbers.
A :class:`CellResult` is what one computed cell measured; it round-trips through JSON, and
the audit report is built from CellResults alone.

:func:`plan` orders a spec's cells in phases: the clean cells first, then the extracted
surrogates (they need a clean victim), then the controls and poisoned cells (they need
both). Cells of one phase are independent of each other, so a backend may run them side by
side.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from .spec import AuditSpec

__all__ = ["Cell", "CellResult", "KINDS", "cell_key", "plan", "short_hash"]

KINDS = ("clean", "extraction", "control", "poisoned")


def short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


#: bumped when the forensics an undefended poisoned cell records change for the same inputs
FORENSICS_REVISION = 1


def guard_key_part(extraction: dict | None) -> dict:
    """The query-stream detector's revision when the extraction runs behind the guard (revision 1 is
    left out, so cells named before the field keep their names)."""
    from ..defenses.querystream import DETECTOR_REVISION

    uses_guard = "guard" in str((extraction or {}).get("defense") or "")
    return {"guard_revision": DETECTOR_REVISION} if uses_guard and DETECTOR_REVISION > 1 else {}


def cell_key(spec: AuditSpec, kind: str, seed: int, attack: str = "", budget: float = 0.0, defense: str = "") -> dict:
    """Everything that determines a cell's numbers; its hash names the cell's file."""
    from .. import victims
    from ..defenses import DEFENSES

    base = {
        "kind": "clean" if kind == "extraction" else kind, "seed": int(seed),
        "dataset": [spec.dataset, spec.path, spec.min_rating, spec.k_core],
        "model": spec.model, "model_config": spec.model_config, "targets": spec.targets, "num_targets": spec.num_targets,
        "ks": list(spec.ks),
    }
    if victims.is_factory_path(spec.model):  # the user's model code: an edited model is a new model
        base["model_sha256"] = victims.model_identity(spec.model).get("module_sha256")
    if victims.TRAINING_REVISION > 1:  # revision 1 is left out of the key (its cells' names predate the field)
        base["training_revision"] = victims.TRAINING_REVISION
    if kind == "extraction":  # the clean victim's key, plus how it is extracted
        return {**base, "kind": "extraction", "extraction": spec.extraction, **guard_key_part(spec.extraction)}
    if kind == "poisoned":
        base.update(attack=attack, budget=float(budget), defense=defense, order=spec.order,
                    attack_params=spec.attack_params.get(attack, {}), **spec.attack_key_part(attack))
        if "extraction" in base:  # its fake users come from a model stolen through the API
            base.update(guard_key_part(base["extraction"]))
    if kind in ("poisoned", "control"):
        base["defense"] = defense
        if spec.defense_params.get(defense):  # only when set, so older cells keep their names
            base["defense_params"] = spec.defense_params[defense]
        revision = getattr(DEFENSES.get(defense), "revision", None)
        if revision is not None:  # a defense whose numbers changed for the same seed declares a new revision
            base["defense_revision"] = revision
    if kind == "poisoned" and spec.forensics and getattr(DEFENSES.get(defense), "baseline", False):
        base["forensics"] = {"checkpoints": spec.forensics, "revision": FORENSICS_REVISION}
    return base


@dataclass(frozen=True)
class Cell:
    """One unit of work. ``budget`` is ``None`` for an injected file (it has no budget) and for
    cells that are not poisoned; ``attack`` and ``defense`` are empty where they do not apply."""

    kind: str
    seed: int
    attack: str = ""
    budget: float | None = None
    defense: str = ""
    key: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def make(cls, spec: AuditSpec, kind: str, seed: int, attack: str = "", budget: float | None = None,
             defense: str = "") -> Cell:
        return cls(kind, int(seed), attack, budget, defense, cell_key(spec, kind, seed, attack, budget or 0.0, defense))

    @property
    def name(self) -> str:
        """The file stem: readable, and unique through the key's hash."""
        if self.kind == "clean":
            stem = f"clean_seed{self.seed}"
        elif self.kind == "extraction":
            stem = f"extraction_seed{self.seed}"
        elif self.kind == "control":
            stem = f"control_{self.defense}_seed{self.seed}"
        else:
            safe = self.attack.replace(":", "-").replace("/", "-")
            stem = f"{safe}_b{(self.budget or 0.0):g}_{self.defense}_seed{self.seed}"
        return f"{stem}_{short_hash(self.key)}"

    @property
    def label(self) -> str:
        """How progress bars and errors name the cell."""
        if self.kind in ("clean", "extraction"):
            return f"{self.kind} seed {self.seed}"
        if self.kind == "control":
            return f"{self.defense} on clean data, seed {self.seed}"
        return f"{self.attack} {'' if self.budget is None else f'{self.budget:g} '}{self.defense} seed {self.seed}"

    def file(self, out: str | Path) -> Path:
        return Path(out) / "cells" / f"{self.name}.json"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        return cls(**d)


def plan(spec: AuditSpec) -> list[list[Cell]]:
    """The spec's cells in phases: [clean], [extraction] (only when an attack's surrogate is extracted),
    [controls and poisoned]; within a phase, in the order a sequential run computes them."""
    clean = [Cell.make(spec, "clean", s) for s in spec.seeds]
    extraction = [Cell.make(spec, "extraction", s) for s in spec.seeds] if spec.extracted_attacks() else []
    last: list[Cell] = []
    for s in spec.seeds:
        if spec.defense_controls:
            last += [Cell.make(spec, "control", s, defense=d) for d in spec.defended()]
        injected = spec.inject_files()
        for a in spec.attack_names():
            for b in ([None] if a in injected else spec.budgets):
                last += [Cell.make(spec, "poisoned", s, a, b, d) for d in spec.defenses]
    return [phase for phase in (clean, extraction, last) if phase]


# ----------------------------------------------------------------------------- results
_COMMON = ("kind", "seed", "key", "train", "wall_time_s")
_REQUIRED = {
    "clean": (*_COMMON, "targets", "metrics", "train_time_s"),
    "extraction": ("kind", "seed", "key", "extraction", "wall_time_s"),
    "control": (*_COMMON, "defense", "targets", "metrics", "clean_target", "derived", "train_time_s"),
    "poisoned": (*_COMMON, "attack", "budget", "defense", "targets", "metrics", "clean_target", "derived", "train_time_s"),
}


@dataclass
class CellResult:
    """What one cell measured. The JSON form (:meth:`to_dict`) is flat and omits fields that do
    not apply to the kind (every older cell file of the same kinds reads back unchanged)."""

    kind: str
    seed: int
    key: dict
    wall_time_s: float
    targets: list[int] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    train: dict | None = None
    train_time_s: float | None = None
    # clean
    data_fingerprint: str | None = None
    train_fingerprint: str | None = None
    # extraction (and the poisoned cells of the extracted attack)
    extraction: dict | None = None
    # control and poisoned
    attack: str | None = None
    budget: float | None = None
    defense: str | None = None
    clean_target: dict | None = None
    derived: dict | None = None
    defense_info: dict | None = None
    defense_time_s: float | None = None
    flagged_share: float | None = None
    num_fake_users: int | None = None
    attack_meta: dict | None = None
    poisoned_fingerprint: str | None = None
    detection: dict | None = None
    attack_time_s: float | None = None
    forensics: dict | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        keep = set(_REQUIRED[self.kind])
        return {k: v for k, v in d.items() if v is not None or k in keep}

    @classmethod
    def from_dict(cls, d: Any, *, source: str | Path | None = None) -> CellResult:
        """A result from its JSON form; a malformed one is an :class:`ArtifactError` naming ``source``."""
        where = f"{source}: " if source else ""
        if not isinstance(d, dict) or d.get("kind") not in KINDS:
            raise ArtifactError(f"{where}not an audit cell (expected an object whose 'kind' is one of {', '.join(KINDS)})")
        missing = [k for k in _REQUIRED[d["kind"]] if k not in d]
        if missing:
            raise ArtifactError(f"{where}{d['kind']} cell lacks {', '.join(missing)}; delete the file to recompute the cell")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ArtifactError(f"{where}unknown cell field(s) {', '.join(unknown)}; delete the file to recompute the cell")
        if not isinstance(d["seed"], int) or not isinstance(d["key"], dict) or not isinstance(d.get("metrics", {}), dict):
            raise ArtifactError(f"{where}malformed cell (seed, key or metrics has the wrong type); delete it to recompute")
        return cls(**d)

    @classmethod
    def read(cls, path: str | Path) -> CellResult:
        from .._io import read_json

        return cls.from_dict(read_json(Path(path), ArtifactError, what="audit cell"), source=path)
