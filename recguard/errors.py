"""Typed errors that a user can cause.

Every error names what went wrong (file and line, parameter, artifact) and how to
fix it. The CLI prints ``str(error)`` on one line and exits non-zero, without a
traceback.
"""

from __future__ import annotations

from pathlib import Path


class RecguardError(Exception):
    """Base class of every error recguard raises on purpose."""

    exit_code = 2


class DataError(RecguardError, ValueError):
    """Bad input data: missing file, malformed line, unknown column, empty result."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(RecguardError, ValueError):
    """A parameter or configuration key is invalid."""

    def __init__(self, message: str, *, param: str | None = None):
        self.param = param
        super().__init__(f"{param}: {message}" if param else message)


class ArtifactError(RecguardError):
    """A saved artifact (directory with weights.safetensors + config.json) is missing or inconsistent."""


class NotFittedError(RecguardError, RuntimeError):
    """A method that needs a trained model was called before ``fit``."""


class CapabilityError(RecguardError, TypeError):
    """The object lacks a capability the operation needs (e.g. white-box access)."""


class OutputExistsError(RecguardError, FileExistsError):
    """An output path holds something recguard did not write (or an earlier output that needs
    ``overwrite=True`` / ``--overwrite`` to be replaced). Nothing was changed."""


class NonFiniteError(RecguardError, ArithmeticError):
    """A model produced (or holds) NaN or infinite values: a diverged model is an error, never a score."""


class AuditLockedError(RecguardError):
    """Another audit is running on the same output folder."""


class AuditWorkerError(RecguardError):
    """A worker process of a parallel audit (``jobs`` > 1) failed; the message carries its
    error (type and text) or the end of its log."""


class UserCodeError(RecguardError):
    """The user's own code (a ``MODULE:FACTORY`` model factory) raised. The message names the code
    and its error; the original exception, with its traceback, is the ``__cause__`` (the CLI
    prints it with ``--debug``)."""


class AuditInterrupted(RecguardError):
    """The audit was stopped (Ctrl-C or SIGTERM) before every cell finished. Finished cells are
    kept; rerunning the same command resumes. Exit status 130, as for any interrupted command."""

    exit_code = 130

    def __init__(self, finished: int, total: int):
        self.finished, self.total = finished, total
        super().__init__(f"interrupted: {finished} of {total} cells finished; rerun the same command to resume")


class QueryBudgetExceeded(RecguardError):
    """A black-box victim's query budget is exhausted."""

    def __init__(self, message: str, *, used: int, budget: int):
        self.used = used
        self.budget = budget
        super().__init__(message)
