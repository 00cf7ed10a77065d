"""Type checks of user-given settings against their annotations (config dataclasses, attack and
defense options), so that a wrong type is one clear :class:`~recguard.errors.ConfigError`
naming the setting instead of a ``TypeError`` deep inside training."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

from .errors import ConfigError

__all__ = ["check_value", "check_field_types", "check_kwargs"]

_SCALARS = ("int", "float", "str", "bool", "None")
_WANT = {"int": "an integer", "float": "a finite number", "str": "a string", "bool": "true or false", "None": "null"}


def _scalar_union(annotation: Any) -> list[str] | None:
    """``["int", "None"]`` for ``"int | None"``; None when the annotation is not a union of plain scalars."""
    if isinstance(annotation, type):
        annotation = annotation.__name__
    names = [t.strip() for t in str(annotation).split("|")]
    return names if all(t in _SCALARS for t in names) else None


def check_value(name: str, value: Any, annotation: Any) -> Any:
    """``value`` converted to its annotated scalar type, or :class:`ConfigError` naming ``name``.

    Booleans are not numbers, floats must be finite, and integral floats such as ``64.0`` (what
    some JSON/TOML writers produce) are accepted for ``int``. Annotations that are not unions of
    ``int``/``float``/``str``/``bool``/``None`` are left to the component's own checks."""
    names = _scalar_union(annotation)
    if names is None:
        return value
    import numpy as np

    v = value.item() if isinstance(value, np.generic) else value
    ok = False
    if v is None:
        ok = "None" in names
    elif isinstance(v, bool):
        ok = "bool" in names
    elif isinstance(v, int):
        ok = "int" in names or "float" in names
        if ok and "int" not in names:
            v = float(v)
    elif isinstance(v, float):
        if "float" in names:
            ok = math.isfinite(v)
        elif "int" in names and math.isfinite(v) and v.is_integer():
            v, ok = int(v), True
    elif isinstance(v, str):
        ok = "str" in names
    if not ok:
        raise ConfigError(f"must be {' or '.join(_WANT[t] for t in names)}, got {value!r} ({type(value).__name__})", param=name)
    return v


def check_field_types(obj: Any) -> None:
    """:func:`check_value` on every field of a (frozen) dataclass instance, converting in place."""
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, check_value(f.name, getattr(obj, f.name), f.type))


def check_kwargs(cls: type, params: Any, where: str) -> dict:
    """Options for ``cls(**params)``: a table with string keys whose values fit the annotations
    of the ``__init__`` parameters along ``cls``'s MRO (subclasses pass ``**kw`` to their base).

    Unknown names are left for the constructor to report."""
    if not isinstance(params, dict):
        raise ConfigError(f"options of {where} must be a table of NAME = VALUE, got {type(params).__name__}", param=where)
    annotations: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", ())):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            continue
        for p in sig.parameters.values():
            if p.annotation is not inspect.Parameter.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                annotations[p.name] = p.annotation
    out = {}
    for k, v in params.items():
        if not isinstance(k, str):
            raise ConfigError(f"option names must be strings, got {k!r}", param=where)
        out[k] = check_value(f"{where}.{k}", v, annotations[k]) if k in annotations else v
    return out
