"""recguard from pytest: robustness assertions, contract checks, fixtures.

- :func:`assert_robust`, :func:`assert_extraction_resistant`, :func:`assert_clean_quality`:
  requirements that fail with the measured figure, the threshold, the attack and the seeds.
- :func:`parametrize_with_checks` / :func:`check_victim`: contract checks for your own
  victim (score shape and padding, determinism, batch invariance, save/load, user weights,
  inputs untouched, hooks removed, bad ids rejected).
- The pytest plugin (:mod:`recguard.testing.plugin`, auto-loaded once recguard is
  installed): ``recguard``, ``recguard_data`` and ``recguard_victim`` fixtures, the
  ``recguard`` marker, ``--recguard-seeds`` and ``--recguard-report``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# imported on first use: the pytest plugin lives in this package, and a test run that never
# calls recguard should not pay for torch
_LAZY = {"tiny_dataset": "._data", "RobustnessError": ".assertions", "assert_clean_quality": ".assertions",
         "assert_extraction_resistant": ".assertions", "assert_robust": ".assertions", "CHECKS": ".checks",
         "check_victim": ".checks", "parametrize_with_checks": ".checks", "make_fast_victim": ".plugin"}

__all__ = ["assert_robust", "assert_extraction_resistant", "assert_clean_quality", "RobustnessError",
           "parametrize_with_checks", "check_victim", "CHECKS", "tiny_dataset", "make_fast_victim"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'recguard.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from ._data import tiny_dataset
    from .assertions import RobustnessError, assert_clean_quality, assert_extraction_resistant, assert_robust
    from .checks import CHECKS, check_victim, parametrize_with_checks
    from .plugin import make_fast_victim
