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

from ._data import tiny_dataset
from .assertions import RobustnessError, assert_clean_quality, assert_extraction_resistant, assert_robust
from .checks import CHECKS, check_victim, parametrize_with_checks
from .plugin import make_fast_victim

__all__ = ["assert_robust", "assert_extraction_resistant", "assert_clean_quality", "RobustnessError",
           "parametrize_with_checks", "check_victim", "CHECKS", "tiny_dataset", "make_fast_victim"]
