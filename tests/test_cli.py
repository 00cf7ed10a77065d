import json

import pytest

from recguard.cli import main


def test_help_on_every_command(capsys):
    for argv in (["--help"], ["datasets", "--help"], ["datasets", "list", "--help"], ["datasets", "info", "--help"],
                 ["train", "--help"], ["evaluate", "--help"]):
        assert main(argv) == 0
    assert "--model" in capsys.readouterr().out


def _user_log(tmp_path):
    """A 40-user, 15-item interaction file (user item per line)."""
    data = tmp_path / "log.txt"
    data.write_text("".join(f"{u} {(u + t) % 15 + 1}\n" for u in range(1, 41) for t in range(8)))
    return data


def test_train_evaluate_on_a_user_file(tmp_path, capsys):
    data = _user_log(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(data), "--model", "gru4rec", "--epochs", "2", "--max-len", "8",
            "--set", "hidden=8", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert (out / "weights.safetensors").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"] == "gru4rec" and cfg["config"]["hidden"] == 8 and cfg["dataset"]["name"] == str(data)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["users"] == 40 and 0 <= metrics["NDCG@10"] <= 1


def test_a_recipe_fills_the_victim_settings_and_explicit_ones_win(tmp_path):
    data = _user_log(tmp_path)
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(data), "--recipe", "recsys23", "--set", "lr=0.002", "--set", "hidden=8", "--epochs", "1",
            "--max-len", "8", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["block"], cfg["positions"], cfg["adam_beta2"], cfg["dropout"], cfg["patience"], cfg["batching"]) == (
        "published", "first", 0.999, 0.1, 10, "random")
    assert (cfg["lr"], cfg["hidden"], cfg["epochs"], cfg["max_len"]) == (0.002, 8, 1, 8)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--out", "x", "--recipe", "nope"], "--recipe: 'nope' is not a recipe"),
        (["train", "--out", "x", "--model", "gru4rec", "--recipe", "recsys23"], "not 'gru4rec'"),
        (["audit", "--out", "x", "--model", "gru4rec", "--recipe", "recsys23"], "not 'gru4rec'"),
        (["datasets", "info", "nope-dataset"], "unknown dataset"),
        (["train", "--out", "x", "--model", "lstm"], "unknown model"),
        (["train", "--out", "x", "--set", "hiden=3"], "unknown key"),
        (["train", "--out", "x", "--set", "oops"], "KEY=VALUE"),
        (["evaluate", "does/not/exist"], "not a directory"),
        (["datasets", "info", "ml-1m"], "--path"),
    ],
)
def test_user_errors_are_one_line_without_traceback(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_data_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1 3\n2 x\n")
    assert main(["datasets", "info", str(bad)]) == 2
    assert f"{bad}:3" in capsys.readouterr().err


def test_console_script_exits_nonzero(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", "from recguard.cli import _entry; _entry()", "evaluate", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
