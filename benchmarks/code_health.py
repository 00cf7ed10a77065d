"""Counts that say how easy recguard is to extend (issue 26): run on any checkout.

    python benchmarks/code_health.py [--root recguard] [--json out.json]

- **name literals that steer the audit**: string constants in ``recguard/audit`` and
  ``recguard/cli`` that equal a component's name (an attack, defense, victim architecture,
  ``extracted``, ``inject:``, ``victim``/``retrain``) and sit where they decide something: in a
  comparison or membership test, a ``startswith``, a subscript or a call's arguments.
  Docstrings, messages (f-strings) and help text do not count.
- **import circles**: strongly connected groups of modules in the import graph (explicit imports,
  package ``__init__`` included when a name is imported from the package); counted once with
  every import and once with module-level imports only (a lazy import inside a function is
  a circle kept at bay, not gone).
- **complex functions**: ruff's C901 above 15.
- **repeated code**: pairs of places sharing six or more lines (the workplace ``duplicates`` tool,
  when it is on PATH).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

STEERING_EXTRA = {"extracted", "inject", "inject:", "victim", "retrain", "bandwagon", "clean", "none"}


def component_names() -> set[str]:
    """Every registered attack, defense and architecture name, read from the registries' source
    text (so the script runs on any checkout without importing it)."""
    from recguard.attacks.poisoning import ATTACKS
    from recguard.defenses import DEFENSES
    from recguard.victims import architectures

    names = set(ATTACKS) | set(DEFENSES) | set(architectures())
    names.discard("none")
    return names | (STEERING_EXTRA - {"clean", "none"})


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def steering_literals(files: list[Path], names: set[str]) -> list[str]:
    """``file:line value`` of each name literal that decides something."""
    hits = []
    for f in files:
        tree = ast.parse(f.read_text())
        docs = _docstring_nodes(tree)
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[id(child)] = node
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in docs:
                continue
            if node.value not in names and node.value.rstrip(":") not in names:
                continue
            parent = parents.get(id(node))
            while isinstance(parent, (ast.Tuple, ast.List, ast.Set)):
                parent = parents.get(id(parent))
            if isinstance(parent, ast.JoinedStr) or isinstance(parent, ast.keyword) and parent.arg == "help":
                continue
            deciding = isinstance(parent, (ast.Compare, ast.Subscript, ast.Call, ast.BoolOp, ast.IfExp))
            if deciding:
                hits.append(f"{f}:{node.lineno} {node.value!r}")
    return hits


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, module_level_only: bool) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(f, root): f for f in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, f in modules.items():
        tree = ast.parse(f.read_text())
        package = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
        nodes = tree.body if module_level_only else list(ast.walk(tree))
        if module_level_only:  # module level includes `if TYPE_CHECKING` / try blocks at top level
            nodes = [n for top in tree.body for n in ast.walk(top) if not isinstance(top, (ast.FunctionDef, ast.ClassDef))]
            nodes += [n for top in tree.body if isinstance(top, ast.ClassDef)
                      for n in top.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in nodes:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:
                    targets.append(f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src)
            for t in targets:
                if t in modules and t != mod:
                    graph[mod].add(t)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(start):
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter[0]
                counter[0] += 1
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(sorted(graph[nxt]))))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def complex_functions(root: Path) -> list[str]:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", str(root), "--select", "C901", "--config", "lint.mccabe.max-complexity=15",
                          "--output-format", "concise", "--no-cache"], capture_output=True, text=True)
    return [line for line in res.stdout.splitlines() if "C901" in line]


def private_access(root: Path) -> list[str]:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", str(root), "--select", "SLF001", "--output-format", "concise", "--no-cache"],
                         capture_output=True, text=True)
    return [line for line in res.stdout.splitlines() if "SLF001" in line]


def private_module_imports(root: Path) -> list[str]:
    """Imports of another subpackage's private module or name (``from ..victims._base import ...``);
    the project's top-level helpers (``recguard._rng``, ``recguard._io``) are shared on purpose."""
    hits = []
    for f in sorted(root.rglob("*.py")):
        own = f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else ""
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level >= 2:
                parts = node.module.split(".")
                private_module = any(p.startswith("_") and not p.startswith("__") for p in parts[1:])
                private_name = any(a.name.startswith("_") and not a.name.startswith("__") for a in node.names)
                if parts[0] != own and len(parts) > 1 and (private_module or private_name):
                    hits.append(f"{f}:{node.lineno} {'.' * node.level}{node.module}")
    return hits


def duplicate_pairs(root: Path) -> int | None:
    if not shutil.which("duplicates"):
        return None
    res = subprocess.run(["duplicates", "--repo", str(root), "--seconds", "120"], capture_output=True, text=True)
    first = res.stdout.splitlines()[0] if res.stdout else ""
    if first.startswith("no duplicates"):
        return 0
    m = re.match(r"(\d+) pairs?", first)
    return int(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="recguard")
    ap.add_argument("--json", default=None)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root.parent))
    files = sorted((root / "audit").rglob("*.py")) + sorted((root / "cli").rglob("*.py"))
    literals = steering_literals(files, component_names())
    every = circles(import_graph(root, module_level_only=False))
    top = circles(import_graph(root, module_level_only=True))
    cx = complex_functions(root)
    slf = private_access(root)
    priv = private_module_imports(root)
    out = {"steering_name_literals": len(literals), "import_circles": len(every), "import_circles_module_level": len(top),
           "circle_modules": every, "complex_functions": len(cx), "private_member_access": len(slf),
           "private_module_imports_across_packages": len(priv), "duplicate_pairs": duplicate_pairs(root)}
    if args.verbose:
        out.update(literal_sites=literals, complex_sites=cx, private_access_sites=slf, private_import_sites=priv)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
