"""Audits: a grid of (attack × budget × defense × seed) poisoned trainings against a clean
baseline, written as results.json + report.md + report.html. Cells are typed units of work
(:mod:`recguard.audit.cells`) computed by one function (:mod:`recguard.audit.compute`) on a
pluggable backend (:mod:`recguard.audit.backends`: sequential, local processes, Ray)."""

from .backends import LocalBackend, RayBackend, SequentialBackend, make_backend
from .cells import Cell, CellResult, plan
from .runner import rerender, run_audit
from .spec import DEFAULT_ATTACKS, AuditSpec, read_toml

__all__ = ["AuditSpec", "DEFAULT_ATTACKS", "run_audit", "rerender", "read_toml", "Cell", "CellResult", "plan",
           "SequentialBackend", "LocalBackend", "RayBackend", "make_backend"]
