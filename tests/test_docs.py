"""The docs' code examples run as tests, and the generated references are current.

Every ```python block of a page runs, in order, in one namespace, in a temporary working
directory; a block right after the line ``<!-- not-run -->`` is an API sketch and is skipped.
Bash blocks right after ``<!-- run -->`` run line by line through the CLI.
"""

import re
import shlex
from pathlib import Path

import pytest

from recguard._docgen import main as docgen

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"(<!-- (?:not-run|run) -->\n)?```(python|bash)\n(.*?)```", re.S)


def _blocks(page: Path, lang: str) -> list[str]:
    out = []
    for marker, kind, code in _BLOCK.findall(page.read_text()):
        if kind != lang:
            continue
        if lang == "python" and "not-run" not in marker:
            out.append(code)
        if lang == "bash" and marker.strip() == "<!-- run -->":
            out.append(code)
    return out


PAGES = sorted(p.name for p in DOCS.glob("*.md") if _blocks(p, "python") or _blocks(p, "bash"))


def test_generated_references_are_current():
    assert docgen(["--check", str(DOCS)]) == 0, "run `python -m recguard._docgen docs/`"


@pytest.mark.parametrize("page", PAGES)
def test_docs_examples_run(page, tmp_path, monkeypatch, capsys):
    from recguard.cli import main

    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": f"docs_{page}"}
    for code in _blocks(DOCS / page, "python"):
        exec(compile(code, str(DOCS / page), "exec"), ns)
    for code in _blocks(DOCS / page, "bash"):
        for line in code.splitlines():
            line = line.split(" #")[0].strip()
            if not line:
                continue
            argv = shlex.split(line)
            assert argv[0] == "recguard", f"{page}: run blocks may only hold recguard commands: {line}"
            assert main(argv[1:]) == 0, f"{page}: {line}"
    capsys.readouterr()


def test_every_page_is_listed_in_the_index():
    index = (DOCS / "index.md").read_text()
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and f"({p.name})" not in index]
    assert not missing, f"docs/index.md does not link {missing}"
