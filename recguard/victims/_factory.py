"""Victims by name: recguard's architectures (``"sasrec"``) or a user's factory (``"pkg.mod:factory"``).

A factory is any callable ``factory(num_items, **model_config)`` that returns an *unfitted*
victim (typically a :class:`~recguard.victims.TorchVictim` wrapping a freshly built module).
It is imported from ``PYTHONPATH`` or the working directory, so ``recguard audit --model
mymodel:make_victim`` works from the folder holding ``mymodel.py``, and the audit's worker
processes import it the same way.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, ConfigError, UserCodeError
from ._base import architectures, read_artifact

__all__ = ["is_factory_path", "load_factory", "build_victim", "model_identity"]


def is_factory_path(model: str) -> bool:
    return isinstance(model, str) and ":" in model


def _import(path: str):
    mod_name, _, attr = path.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"{path!r}: expected MODULE:FACTORY, e.g. mymodel:make_victim", param="model")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # the working directory, as `python -m` would have it
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"{path!r}: cannot import module {mod_name!r} ({exc}); run from the folder that holds it or add it "
                          "to PYTHONPATH", param="model") from None
    except Exception as exc:
        raise ConfigError(f"{path!r}: importing {mod_name!r} raised {type(exc).__name__}: {exc}", param="model") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{path!r}: module {mod_name!r} has no attribute {attr!r}", param="model")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{path!r}: {attr!r} is not callable; it must be a factory(num_items, **model_config)", param="model")
    return module, obj


def load_factory(path: str):
    """The callable a ``MODULE:FACTORY`` string names (:class:`ConfigError` when it cannot be imported)."""
    return _import(path)[1]


def model_identity(model: str) -> dict:
    """What identifies a model for provenance and audit cells: recguard's architecture name, or the
    factory's import path with the SHA-256 of the file that defines it (an edited model is a new model)."""
    if not is_factory_path(model):
        return {"model": model}
    module, obj = _import(model)
    try:
        src = inspect.getsourcefile(inspect.unwrap(obj)) or inspect.getsourcefile(module)
    except TypeError:
        src = None
    digest = None
    if src and os.path.isfile(src):
        with open(src, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    return {"model": model, "module_file": src, "module_sha256": digest}


def _looks_like_victim(v: Any) -> bool:
    return all(hasattr(v, a) for a in ("num_items", "max_len", "score", "recommend", "fit"))


def build_victim(model: str, num_items: int | None = None, **config) -> Any:
    """An unfitted victim: ``model`` is an architecture (``sasrec``, ``bert4rec``, ``gru4rec``) built
    with ``config``, or ``MODULE:FACTORY`` called as ``factory(num_items, **config)``."""
    if not isinstance(model, str):
        raise ConfigError(f"must be an architecture name or MODULE:FACTORY, got {type(model).__name__}", param="model")
    if not is_factory_path(model):
        archs = architectures()
        if model not in archs:
            raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(sorted(archs))}", param="model")
        return archs[model](**config)
    factory = load_factory(model)
    if num_items is None:
        raise ConfigError(f"{model!r}: a model factory needs the catalogue size (num_items)", param="model")
    try:
        victim = factory(num_items, **config)
    except TypeError as exc:
        raise ConfigError(f"{model!r} could not be called as factory(num_items, **model_config) with model_config "
                          f"{sorted(config)}: {exc}", param="model") from None
    except Exception as exc:  # the user's own code failed: one line naming it; the traceback stays as the cause
        raise UserCodeError(f"{model} raised {type(exc).__name__}: {' '.join(str(exc).split()) or '(no message)'}") from exc
    if not _looks_like_victim(victim):
        raise ConfigError(f"{model!r} returned a {type(victim).__name__}, not a victim (it needs num_items, max_len, score, "
                          "recommend and fit; wrap a torch module with recguard.TorchVictim)", param="model")
    if int(victim.num_items) != int(num_items):
        raise ConfigError(f"{model!r} returned a victim for {victim.num_items} items; the data has {num_items}", param="model")
    try:  # recorded by TorchVictim.save, so that recguard.load can rebuild it
        victim.factory_ = {"model": model, "config": dict(config)}
    except AttributeError:
        pass
    return victim


def load(directory: str | Path, *, device: str | None = None, model: str | None = None):
    """Load a victim saved with ``victim.save(dir)``; scores are identical to the saved model's.

    A wrapped model (``TorchVictim``) is rebuilt by its factory — ``model="MODULE:FACTORY"``, or
    the one recorded in ``config.json`` when it was built from a factory — and the weights are
    loaded into the fresh instance."""
    meta, state = read_artifact(directory)
    arch = meta["architecture"]
    if arch == "torch":
        recorded = meta.get("factory") if isinstance(meta.get("factory"), dict) else {}
        path = model or recorded.get("model")
        if not path:
            raise ArtifactError(f"{directory}: a TorchVictim artifact without a recorded factory; pass model='MODULE:FACTORY' "
                                "(CLI: --model) or use TorchVictim.load(dir, module=YourModule(...))")
        config = recorded.get("config") if isinstance(recorded.get("config"), dict) and path == recorded.get("model") else {}
        return build_victim(path, num_items=meta["num_items"], **config).load_weights(directory)
    known = architectures()
    if arch not in known:
        raise ArtifactError(f"{directory}: unknown architecture {arch!r}; known: {', '.join(sorted(known))}")
    return known[arch].from_artifact(meta, state, device, Path(directory))
