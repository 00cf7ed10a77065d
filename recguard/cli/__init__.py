"""The ``recguard`` command line (typer). Each command group lives in its own module.

Exit statuses: 0 done; 1 the environment failed (a permission, a full disk, a worker killed);
2 bad input (data, configuration, a saved model, the user's model code), one ``error:`` line on
stderr and no traceback; 130 interrupted (Ctrl-C or SIGTERM; an audit keeps its finished cells
and says how many). ``recguard --debug COMMAND`` also prints the traceback of the user's own code
when it raised.
"""

from __future__ import annotations

import sys

import typer

from ..errors import AuditInterrupted, RecguardError, UserCodeError
from . import _audit, _datasets, _debias, _extract, _forensics, _probe, _train

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
app.command("compare")(_audit.compare)
app.command("extract")(_extract.extract)
app.command("debias")(_debias.debias)
app.command("probe")(_probe.probe)
app.command("forensics")(_forensics.forensics)


_DEBUG = {"on": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="When your own code (a MODULE:FACTORY model) raises, also print its "
                                     "traceback below the one-line error.")) -> None:
    """recguard: robustness audits and probes for sequential recommenders."""
    _DEBUG["on"] = debug


def _click_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage/parameter errors, exits, no-args-help) of click: typer >= 0.24 vendors click as
    ``typer._click``, older ones use ``click`` itself; both are recognised."""
    import importlib

    errors, exits, helps = [], [typer.Exit], []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(mod.ClickException)
        if hasattr(mod, "Exit"):
            exits.append(mod.Exit)
        if hasattr(mod, "NoArgsIsHelpError"):
            helps.append(mod.NoArgsIsHelpError)
    return tuple(errors), tuple(exits), tuple(helps)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: every user error is one ``error:`` line on stderr (exit 2),
    never a traceback."""
    _DEBUG["on"] = False
    if any(a in ("--help", "-h") for a in (sys.argv[1:] if argv is None else argv)):
        _audit.fill_component_help()
    try:
        app(args=argv, prog_name="recguard", standalone_mode=False)
    except AuditInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except RecguardError as exc:
        debug = isinstance(exc, UserCodeError) and exc.__cause__ is not None
        hint = " (recguard --debug ... prints its traceback)" if debug and not _DEBUG["on"] else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        if debug and _DEBUG["on"]:
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the environment's (permissions, a full disk): one line, the path is in the message
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click's usage errors (an unknown option, a value of the wrong type, ...)
        errors, exits, helps = _click_types()
        if isinstance(exc, exits):
            return exc.exit_code
        if isinstance(exc, helps):
            exc.show()
            return 0
        if isinstance(exc, errors):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
            return exc.exit_code
        raise
    return 0


def _entry() -> None:  # pragma: no cover - console script
    sys.exit(main())
