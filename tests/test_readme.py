"""The README's Python and CLI examples run as tests (in a temporary working directory)."""

import re
import shlex
from pathlib import Path


from recguard.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (code,) = _blocks("python")
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "NDCG@10" in out and (tmp_path / "runs/readme-sasrec/weights.safetensors").exists()


def test_readme_cli_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = _blocks("bash")[1]
    for line in cli.splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        argv = shlex.split(line)
        assert argv[0] == "recguard"
        if "--path" in argv:  # the shared ML-1M copy exists on development machines and CI only
            shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m"
            if not shared.exists():
                continue
            argv[argv.index("--path") + 1] = str(shared)
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr().out
    assert "NDCG@10" in out and "ml-100k" in out
