"""Generate docs/cli.md (from the typer app) and docs/api.md (from the public objects' docstrings).

    python -m recguard._docgen docs/      # rewrite both files
    python -m recguard._docgen --check docs/   # exit 1 when either is stale (the tests do this)
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

__all__ = ["render_cli", "render_api", "API_MODULES"]

API_MODULES = (
    "recguard", "recguard.data", "recguard.victims", "recguard.metrics", "recguard.attacks.poisoning",
    "recguard.attacks.extraction", "recguard.defenses", "recguard.probes", "recguard.audit", "recguard.testing",
)


def _param_row(p) -> tuple[str, str, str]:
    if p.param_type_name == "argument":
        name = p.name.upper()
    else:
        name = ", ".join(p.opts + list(p.secondary_opts))
    default = "" if p.required or p.default in (None, (), []) else f"`{p.default}`"
    if p.required:
        default = "required"
    help_ = " ".join((getattr(p, "help", None) or "").split())
    return name, default, help_


def render_cli() -> str:
    import typer

    from .cli import _audit, app

    _audit.fill_component_help()  # the attack and defense names, as `--help` shows them

    root = typer.main.get_command(app)
    lines = ["# CLI reference", "", "Generated from the typer app by `python -m recguard._docgen docs/`; do not edit by hand.",
             "Every command prints user errors as one `error:` line (exit status 2). `recguard COMMAND --help` shows the same.", ""]

    def walk(group, prefix):
        for name in sorted(group.commands):
            cmd = group.commands[name]
            full = f"{prefix} {name}"
            if hasattr(cmd, "commands"):
                walk(cmd, full)
                continue
            lines.append(f"## `{full}`")
            lines.append("")
            doc = inspect.cleandoc(cmd.help or "")
            if doc:
                lines.extend([doc, ""])
            rows = [_param_row(p) for p in cmd.params if p.name != "help"]
            if rows:
                lines.extend(["| option | default | description |", "|---|---|---|"])
                lines.extend(f"| `{n}` | {d} | {h.replace('|', '/')} |" for n, d, h in rows)
                lines.append("")

    walk(root, "recguard")
    return "\n".join(lines).rstrip() + "\n"


def _first_paragraph(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    para = doc.split("\n\n")[0]
    return " ".join(para.split())


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    sig = re.sub(r"<(?:function|class) ([\w.]+)(?: at 0x[0-9a-f]+)?>", r"\1", sig)  # stable across runs
    return sig if len(sig) < 220 else sig[:217] + "...)"


def render_api() -> str:
    lines = ["# Python API reference", "",
             "Generated from the docstrings of every name in each public module's `__all__` by "
             "`python -m recguard._docgen docs/`; do not edit by hand. The first paragraph of each docstring is shown; "
             "`help(obj)` has the rest.", ""]
    for mod_name in API_MODULES:
        mod = importlib.import_module(mod_name)
        lines += [f"## `{mod_name}`", "", _first_paragraph(mod), ""]
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or name == "__version__":
                continue
            kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "constant"
            if kind == "constant":
                lines.append(f"- **`{name}`** — constant")
                continue
            sig = _signature(obj) if kind == "function" else ""
            lines.append(f"- **`{name}{sig}`** ({kind}) — {_first_paragraph(obj) or 'undocumented'}")
            if inspect.isclass(obj):
                for meth, fn in inspect.getmembers(obj, predicate=lambda m: inspect.isfunction(m) or isinstance(m, property)):
                    if meth.startswith("_") or meth not in obj.__dict__:
                        continue
                    target = fn.fget if isinstance(fn, property) else fn
                    doc = _first_paragraph(target)
                    if doc:
                        sig = "" if isinstance(fn, property) else _signature(fn).replace("(self, ", "(").replace("(self)", "()")
                        lines.append(f"  - `.{meth}{sig}` — {doc}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    argv = [a for a in argv if a != "--check"]
    out = Path(argv[0] if argv else "docs")
    stale = []
    for name, text in (("cli.md", render_cli()), ("api.md", render_api())):
        path = out / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale: " + ", ".join(stale) + " — run `python -m recguard._docgen docs/`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
