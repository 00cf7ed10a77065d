"""The ``recguard`` command line (typer). Each command group lives in its own module.

User errors (:class:`recguard.errors.RecguardError`) print one line to stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import sys

import typer

from ..errors import RecguardError
from . import _audit, _datasets, _debias, _extract, _probe, _train

app = typer.Typer(
    name="recguard",
    help="Audit sequential recommenders for robustness and explain what they learned.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(_datasets.app, name="datasets")
app.command("train")(_train.train)
app.command("evaluate")(_train.evaluate)
app.command("attack")(_audit.attack)
app.command("audit")(_audit.audit)
app.command("report")(_audit.report)
app.command("extract")(_extract.extract)
app.command("debias")(_debias.debias)
app.command("probe")(_probe.probe)


@app.callback()
def _root() -> None:
    """recguard: robustness audits and probes for sequential recommenders."""


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="recguard", standalone_mode=False)
    except RecguardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return 0


def _entry() -> None:  # pragma: no cover - console script
    sys.exit(main())
