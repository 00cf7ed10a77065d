"""Audits: a grid of (attack × budget × defense × seed) poisoned trainings against a clean
baseline, written as results.json + report.md + report.html."""

from .report import rerender
from .runner import run_audit
from .spec import DEFAULT_ATTACKS, AuditSpec

__all__ = ["AuditSpec", "DEFAULT_ATTACKS", "run_audit", "rerender"]
