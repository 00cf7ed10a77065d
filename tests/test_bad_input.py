"""Bad input never deletes a user's files, never scores a broken model, never reuses a stale
cell, and always ends in one ``error:`` line (exit 2) naming the problem: explicit cases for
every category of issue 15, plus Hypothesis properties over arbitrary bytes and JSON values."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import recguard
from recguard.audit import AuditSpec, run_audit
from recguard.cli import main
from recguard.errors import (
    AuditLockedError, ConfigError, NonFiniteError, OutputExistsError,
)

from conftest import cyclic_data

TINY = {"hidden": 8, "max_len": 8, "epochs": 2, "batch_size": 32, "eval_every": 1, "patience": 0}
SETS = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def log_file(tmp_path_factory):
    """A `user item` file (cyclic sequences: learnable, 60 users, 20 items)."""
    d = cyclic_data(num_users=60, num_items=20, length=8, seed=11)
    p = tmp_path_factory.mktemp("data") / "log.txt"
    p.write_text("".join(f"{u + 1} {i}\n" for u, seq in enumerate(d) for i in seq.tolist()))
    return p


@pytest.fixture(scope="module")
def saved(tmp_path_factory, log_file):
    """A SASRec saved by `recguard train` (dataset recorded in its config.json)."""
    out = tmp_path_factory.mktemp("models") / "sasrec"
    assert main(["train", "--dataset", str(log_file), "--out", str(out), "--no-progress", *SETS]) == 0
    return out


def one_error(capsys, argv, needle=None, code=2) -> str:
    """Run the CLI; it must fail with exactly one `error:` line and no traceback."""
    got = main(argv)
    err = capsys.readouterr().err
    assert got == code, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    if needle is not None:
        assert needle in err, err
    return err


def no_training(monkeypatch):
    """Make any victim training fail loudly: the errors under test must come first."""
    def boom(*a, **k):
        raise AssertionError("a victim was trained before the bad input was reported")

    monkeypatch.setattr(recguard.victims.SequentialVictim, "fit", boom)


# ----------------------------------------------------------------------------- 1. --out never destroys data
def test_train_refuses_a_folder_it_did_not_write(tmp_path, log_file, capsys, monkeypatch):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("important")
    no_training(monkeypatch)
    one_error(capsys, ["train", "--dataset", str(log_file), "--out", str(d), "--no-progress", *SETS], "not a saved victim")
    assert (d / "notes.txt").read_text() == "important" and (d / "sub").is_dir()


def test_train_refuses_a_file_and_the_current_directory(tmp_path, log_file, capsys, monkeypatch):
    f = tmp_path / "model"
    f.write_text("not a folder")
    no_training(monkeypatch)
    one_error(capsys, ["train", "--dataset", str(log_file), "--out", str(f), "--no-progress", *SETS], "not a folder")
    assert f.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no stray .model.old
    monkeypatch.chdir(tmp_path)
    one_error(capsys, ["train", "--dataset", str(log_file), "--out", ".", "--no-progress", *SETS], "current directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp folder left behind


def test_replacing_a_saved_victim_needs_overwrite_and_only_replaces_recguard_files(tmp_path, log_file, capsys):
    out = tmp_path / "m"
    argv = ["train", "--dataset", str(log_file), "--out", str(out), "--no-progress", *SETS]
    assert main(argv) == 0
    capsys.readouterr()
    one_error(capsys, argv, "--overwrite")
    before = json.loads((out / "config.json").read_text())["training"]["seed"]
    assert main([*argv, "--overwrite", "--seed", "3"]) == 0
    assert json.loads((out / "config.json").read_text())["training"]["seed"] != before
    (out / "mine.txt").write_text("keep")
    capsys.readouterr()
    one_error(capsys, [*argv, "--overwrite"], "mine.txt")
    assert (out / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_python_save_follows_the_same_rules(tmp_path, tiny):
    v = recguard.make_victim("gru4rec", **TINY).fit(tiny, rng=0)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.csv").write_text("precious")
    with pytest.raises(OutputExistsError, match="not a saved victim"):
        v.save(tmp_path / "x")
    assert (tmp_path / "x" / "data.csv").read_text() == "precious"
    v.save(tmp_path / "y")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        v.save(tmp_path / "y")
    v.save(tmp_path / "y", overwrite=True)
    assert recguard.load(tmp_path / "y").num_items == tiny.num_items
    (tmp_path / "empty").mkdir()
    v.save(tmp_path / "empty")  # an empty folder is fine


@pytest.mark.parametrize("cmd", ["attack", "debias"])
def test_folder_outputs_refuse_foreign_folders(cmd, tmp_path, log_file, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("important")
    argv = {"attack": ["attack", "--dataset", str(log_file), "--budget", "0.05", "--out", str(d)],
            "debias": ["debias", "--out", str(d), "--epochs", "1", "--loss", "naive"]}[cmd]
    one_error(capsys, argv, "recguard did not write")
    assert (d / "notes.txt").read_text() == "important" and sorted(p.name for p in d.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("cmd", ["extract", "probe"])
def test_model_commands_refuse_foreign_folders(cmd, saved, tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("important")
    argv = {"extract": ["extract", "--victim", str(saved), "--out", str(d), "--budget", "4", "--epochs", "1", "--no-progress"],
            "probe": ["probe", str(saved), "--out", str(d), "--epochs", "1", "--no-progress"]}[cmd]
    one_error(capsys, argv, "recguard did not write")
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]


def test_check_reports_never_replace_a_users_file(tmp_path):
    from recguard.testing._report import write_check_report

    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="not a recguard check report"):
        write_check_report({"check": "robust"}, tmp_path, "t")
    assert (tmp_path / "t.json").read_text() == "{}"
    write_check_report({"check": "robust", "passed": True, "message": "ok"}, tmp_path, "u")
    write_check_report({"check": "robust", "passed": False, "message": "no"}, tmp_path, "u")  # its own: replaced
    assert json.loads((tmp_path / "u.json").read_text())["passed"] is False


def test_attack_output_needs_overwrite_to_be_replaced(tmp_path, log_file, capsys):
    argv = ["attack", "--dataset", str(log_file), "--budget", "0.05", "--out", str(tmp_path / "p")]
    assert main(argv) == 0
    first = (tmp_path / "p" / "inject.json").read_text()
    capsys.readouterr()
    one_error(capsys, [*argv, "--seed", "1"], "--overwrite")
    assert (tmp_path / "p" / "inject.json").read_text() == first
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert (tmp_path / "p" / "inject.json").read_text() != first


def test_audit_refuses_a_foreign_folder_before_training(tmp_path, log_file, capsys, monkeypatch):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("important")
    no_training(monkeypatch)
    one_error(capsys, ["audit", "--dataset", str(log_file), "--attacks", "random", "--out", str(d), "--no-progress"],
              "recguard did not write")
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]


def test_outputs_follow_the_umask(tmp_path, tiny):
    old = os.umask(0o022)
    try:
        recguard.make_victim("gru4rec", **TINY).fit(tiny, rng=0).save(tmp_path / "m")
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m" / "config.json").stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------- 2. a diverged model never scores
def test_diverged_training_stops_with_a_clear_error(tmp_path, log_file, capsys):
    err = one_error(capsys, ["train", "--dataset", str(log_file), "--out", str(tmp_path / "m"), "--no-progress", *SETS,
                             "--set", "lr=1e8"], "diverged")
    assert "epoch" in err and "lr" in err
    assert not (tmp_path / "m").exists()


def test_nan_weights_are_never_scored_saved_or_loaded(tmp_path, tiny):
    v = recguard.make_victim("sasrec", **TINY).fit(tiny, rng=0)
    v.save(tmp_path / "good")
    with torch.no_grad():
        v.module.item_emb.weight[3, 0] = float("nan")
    split = tiny.split()
    with pytest.raises(NonFiniteError, match="NaN"):
        recguard.evaluate(v, split)
    with pytest.raises(NonFiniteError):
        recguard.metrics.target_exposure(v, split, [3, 4])
    with pytest.raises(NonFiniteError):
        v.recommend(tiny.padded(8)[:2], k=3)
    with pytest.raises(NonFiniteError, match="not saved"):
        v.save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    # a saved artifact whose weights were edited to NaN is refused on load
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "good" / "weights.safetensors"))
    state["item_emb.weight"][1, 1] = float("inf")
    save_file(state, str(tmp_path / "good" / "weights.safetensors"))
    with pytest.raises(NonFiniteError, match="weights.safetensors"):
        recguard.load(tmp_path / "good")


def test_ranks_refuse_nan_scores():
    from recguard.metrics import ranks_from_scores

    s = torch.tensor([[float("-inf"), float("nan"), 0.5, 0.1]])
    with pytest.raises(NonFiniteError):
        ranks_from_scores(s, torch.tensor([1]))
    ok = torch.tensor([[float("-inf"), 0.2, float("-inf"), 0.1]])  # -inf masks an item: allowed
    assert ranks_from_scores(ok, torch.tensor([3])).tolist() == [2]


def test_audit_with_a_diverging_victim_fails_with_exit_2(tmp_path, log_file, capsys):
    one_error(capsys, ["audit", "--dataset", str(log_file), "--attacks", "random", "--budgets", "0.05", "--out", str(tmp_path / "a"),
                       "--no-progress", *SETS, "--set", "lr=1e8"], "diverged")
    assert not (tmp_path / "a" / "results.json").exists()


def test_wrapped_model_that_diverges_is_refused(tiny):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(tiny.num_items + 1, 4)

        def forward(self, x):
            return self.emb(x[:, -1]) @ self.emb.weight.T

    def fit(module, split, weights, rng):
        with torch.no_grad():
            module.emb.weight.fill_(float("nan"))

    v = recguard.TorchVictim(Net(), num_items=tiny.num_items, max_len=8, fit_fn=fit, device="cpu")
    with pytest.raises(NonFiniteError, match="Net after fit_fn"):
        v.fit(tiny, rng=0)


# ----------------------------------------------------------------------------- 3. injected files: keyed by content
def _inject(path: Path, users: int, item: int, target: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fake_users": [[target, item, target, item]] * users, "targets": [target]}))
    return path


def _inject_rows(results):
    """The poisoned cell of each attack (one seed, one defense)."""
    return {c["attack"]: c for c in results["cells"] if c["kind"] == "poisoned"}


def test_an_edited_inject_file_is_a_new_attack(tmp_path, log_file):
    f = _inject(tmp_path / "x.json", 1, 5, 3)
    spec = AuditSpec(dataset=str(log_file), attacks=(), inject=(str(f),), model_config=TINY, num_targets=2)
    first = _inject_rows(run_audit(spec, tmp_path / "a", progress=False))["inject:x"]
    assert first["num_fake_users"] == 1 and first["targets"] == [3]
    _inject(f, 10, 7, 4)
    again = _inject_rows(run_audit(spec, tmp_path / "a", progress=False))["inject:x"]
    assert again["num_fake_users"] == 10 and again["targets"] == [4]


def test_inject_files_sharing_a_name_are_two_attacks(tmp_path, log_file):
    a = _inject(tmp_path / "a" / "x.json", 1, 5, 3)
    b = _inject(tmp_path / "b" / "x.json", 3, 6, 4)
    spec = AuditSpec(dataset=str(log_file), attacks=(), inject=(str(a), str(b)), model_config=TINY, num_targets=2)
    assert list(spec.inject_files()) == ["inject:a/x", "inject:b/x"]
    rows = _inject_rows(run_audit(spec, tmp_path / "out", progress=False))
    assert rows["inject:a/x"]["num_fake_users"] == 1 and rows["inject:b/x"]["num_fake_users"] == 3
    with pytest.raises(ConfigError, match="given twice"):
        AuditSpec(dataset=str(log_file), attacks=(), inject=(str(a), str(tmp_path / "a" / ".." / "a" / "x.json")))


# ----------------------------------------------------------------------------- 4/6. specs: wrong is an error, before training
BAD_SPECS = [
    ({"seeds": [0, 0]}, "listed twice"),
    ({"seeds": [-1]}, "seeds"),
    ({"seeds": ["a"]}, "integer"),
    ({"seeds": [True]}, "integer"),
    ({"budgets": []}, "budget"),
    ({"budgets": [0.01, 0.01]}, "listed twice"),
    ({"ks": [0]}, "positive"),
    ({"ks": [10, -5]}, "positive"),
    ({"ks": ["10"]}, "integer"),
    ({"k_core": -2}, "k_core"),
    ({"k_core": "x"}, "k_core"),
    ({"min_rating": "high"}, "min_rating"),
    ({"num_targets": 0}, "num_targets"),
    ({"num_targets": "five"}, "num_targets"),
    ({"targets": [5.7]}, "targets"),
    ({"targets": [True]}, "targets"),
    ({"targets": [[1, 2]]}, "targets"),
    ({"targets": "random"}, "targets"),
    ({"model_config": [1, 2]}, "model_config"),
    ({"model_config": "max_len=50"}, "model_config"),
    ({"attack_params": {"popular": 5}}, "attack_params.popular"),
    ({"attack_params": [1]}, "attack_params"),
    ({"defense_params": {"none": "x"}}, "defense_params.none"),
    ({"defense_params": 3}, "defense_params"),
    ({"order": "sideways"}, "order"),
    ({"attack_params": {"popular": {"popular_share": "lots"}}}, "popular_share"),
    ({"attack_params": {"random": {"profile_length": 1}}}, "profile_length"),
    ({"defenses": []}, "defense"),
    ({"defense_controls": "yes"}, "defense_controls"),
    ({"extraction": {"epochs": "many"}}, "extraction.epochs"),
    ({"surrogate": 7}, "surrogate"),
]


@pytest.mark.parametrize("change,needle", BAD_SPECS)
def test_bad_specs_are_one_clear_error(change, needle):
    base = {"attacks": ["random", "popular"], "budgets": [0.01]}
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        AuditSpec.from_dict({**base, **change})


def test_bad_specs_from_toml_name_the_file(tmp_path, capsys):
    toml = tmp_path / "audit.toml"
    toml.write_text('attacks = ["random"]\nseeds = [0, 0]\n')
    one_error(capsys, ["audit", "--config", str(toml), "--out", str(tmp_path / "a")], str(toml))
    toml.write_text("attacks = [\n")
    one_error(capsys, ["audit", "--config", str(toml), "--out", str(tmp_path / "a")], "invalid TOML")
    toml.write_bytes(b"\xff\xfeattacks")
    one_error(capsys, ["audit", "--config", str(toml), "--out", str(tmp_path / "a")], "UTF-8")


@pytest.mark.parametrize("argv,needle", [
    (["--attacks", "random", "--seeds", "0,0"], "twice"),
    (["--attacks", "random", "--seeds", "x"], "comma-separated"),
    (["--attacks", "random", "--budgets", ""], "budget"),
    (["--attacks", "random", "--targets", "5.7"], "comma-separated"),
    (["--attacks", "random", "--order", "sideways"], "order"),
    (["--attacks", "popular", "--targets", "999"], "outside the catalogue"),
    (["--attacks", "segment"], "genre"),
    (["--attacks", "surrogate", "--surrogate", "no/such/dir"], "no/such/dir"),
    (["--attacks", "random", "--set", "loss=nope"], "loss"),
    (["--attacks", "random", "--set", "hidden=abc"], "hidden"),
])
def test_audit_input_errors_come_before_any_training(argv, needle, tmp_path, log_file, capsys, monkeypatch):
    no_training(monkeypatch)
    one_error(capsys, ["audit", "--dataset", str(log_file), "--out", str(tmp_path / "a"), "--no-progress", *argv], needle)


def test_too_many_targets_fail_before_training(tmp_path, log_file, monkeypatch):
    no_training(monkeypatch)
    spec = AuditSpec(dataset=str(log_file), attacks=("random",), num_targets=50, model_config=TINY)
    with pytest.raises(ConfigError, match="num_targets"):
        run_audit(spec, tmp_path / "a", progress=False)


@pytest.mark.parametrize("content,needle", [
    ({"fake_users": [[1, 2]], "targets": [5.7]}, "integers"),
    ({"fake_users": [[1, 2]], "targets": [True]}, "integers"),
    ({"fake_users": [[1, 2]], "targets": [[1]]}, "integers"),
    ({"fake_users": [[1, 2.5]], "targets": [1]}, "integers"),
    ({"fake_users": [[1, "2"]], "targets": [1]}, "integers"),
    ({"fake_users": [[1, 2**70]], "targets": [1]}, "outside 1..20"),
    ({"fake_users": [[1, 2]], "targets": [10**30]}, "outside 1..20"),
    ({"fake_users": [[1, 2]], "targets": [0]}, "outside 1..20"),
    ({"fake_users": [[1, 2]] * 40, "targets": [1]}, "at most 30"),
    ({"fake_users": [], "targets": [1]}, "no fake users"),
    ({"fake_users": [[]], "targets": [1]}, "non-empty"),
    ({"user_data": [1], "target_item": [1]}, "user_data"),
    ([1, 2, 3], "JSON object"),
    ({"fake_users": [[1, 2]], "targets": []}, "empty"),
])
def test_bad_inject_files_fail_before_training(content, needle, tmp_path, log_file, capsys, monkeypatch):
    f = tmp_path / "fake.json"
    f.write_text(json.dumps(content))
    no_training(monkeypatch)
    one_error(capsys, ["audit", "--dataset", str(log_file), "--attacks", "", "--inject", str(f), "--out", str(tmp_path / "a"),
                       "--no-progress"], needle)


def test_inject_files_that_are_not_json_text(tmp_path, log_file, capsys, monkeypatch):
    no_training(monkeypatch)
    base = ["audit", "--dataset", str(log_file), "--attacks", "", "--out", str(tmp_path / "a"), "--no-progress", "--inject"]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    one_error(capsys, [*base, str(deep)], "nested too deeply")
    binary = tmp_path / "bin.json"
    binary.write_bytes(b'{"fake_users": [[1, 2]], "targets": [1]}\xff')
    one_error(capsys, [*base, str(binary)], "UTF-8")
    one_error(capsys, [*base, str(tmp_path)], "directory")


# ----------------------------------------------------------------------------- 5/8. malformed files, one error line
@pytest.mark.parametrize("content,needle", [
    (b"99999999999999999999 1\n1 2\n", "too large"),
    (b"1 2 3\n", "malformed line"),
    (b"a 2\n", "integer ids"),
    (b"", "no interactions"),
    (b"\n \n", "no interactions"),
    (b"\x1f\x8bnot gzip", "gzip"),
])
def test_malformed_user_item_files(content, needle, tmp_path, capsys):
    f = tmp_path / "log.txt"
    f.write_bytes(content)
    err = one_error(capsys, ["datasets", "info", str(f)], needle)
    assert "Warning" not in err


def test_bom_and_cr_only_line_endings_are_read(tmp_path):
    rows = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(f"1\t{i}\t{i}\n" for i in range(1, 5))
    ref = recguard.data.load(str(_write(tmp_path / "a.inter", rows.encode())))
    for variant in (b"\xef\xbb\xbf" + rows.encode(), rows.replace("\n", "\r").encode(), rows.replace("\n", "\r\n").encode()):
        got = recguard.data.load(str(_write(tmp_path / "b.inter", variant)))
        assert got.num_interactions == 4 and np.array_equal(got.items, ref.items)
    sas = recguard.data.load(str(_write(tmp_path / "c.txt", b"\xef\xbb\xbf1 1\r1 2\r1 3\r")))
    assert sas.num_interactions == 3


def _write(p: Path, content: bytes) -> Path:
    p.write_bytes(content)
    return p


def test_huge_ids_in_atomic_files_are_tokens(tmp_path):
    f = _write(tmp_path / "a.inter", b"user_id:token\titem_id:token\n1\t99999999999999999999\n1\t2\n1\t3\n")
    assert recguard.data.load(str(f)).num_items == 3


def test_non_finite_timestamps_are_refused(tmp_path, capsys):
    f = _write(tmp_path / "a.inter", b"user_id:token\titem_id:token\ttimestamp:float\n1\t2\tnan\n1\t3\t1\n")
    one_error(capsys, ["datasets", "info", str(f)], f"{f}:2")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_instead_of_hanging(tmp_path, capsys):
    fifo = tmp_path / "log.txt"
    os.mkfifo(fifo)
    one_error(capsys, ["datasets", "info", str(fifo)], "special file")
    toml = tmp_path / "spec.toml"
    os.mkfifo(toml)
    one_error(capsys, ["audit", "--config", str(toml), "--out", str(tmp_path / "a")], "special file")


CONFIGS = [
    ([], "JSON object"),
    (None, "JSON object"),
    ({"format": "recguard-victim"}, "architecture"),
    ({"format": "recguard-victim", "architecture": "sasrec"}, "num_items"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": "20", "config": {}}, "num_items"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": -4, "config": {}}, "num_items"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": 10**12, "config": {}}, "num_items"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": 20, "config": []}, "config"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": 20, "config": {"hidden": "big"}}, "hidden"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": 20, "config": {"hidden": 10**9}}, "do not match"),
    ({"format": "recguard-victim", "architecture": 5, "num_items": 20, "config": {}}, "architecture"),
    ({"format": "recguard-victim", "architecture": "sasrec", "num_items": 20, "config": {}, "dataset": "ml-100k"}, "dataset"),
]


@pytest.mark.parametrize("cfg,needle", CONFIGS)
def test_malformed_config_json(cfg, needle, saved, tmp_path, capsys):
    d = tmp_path / "m"
    shutil.copytree(saved, d)
    if isinstance(cfg, dict) and cfg.get("config") == {}:
        cfg["config"] = json.loads((saved / "config.json").read_text())["config"]
    (d / "config.json").write_text(json.dumps(cfg))
    one_error(capsys, ["evaluate", str(d)], needle)


def test_evaluate_prints_the_recorded_path_not_its_content(saved, tmp_path, capsys):
    d = tmp_path / "m"
    shutil.copytree(saved, d)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-TOKEN-123 hunter2\n")
    meta = json.loads((d / "config.json").read_text())
    meta["dataset"] = {"name": str(secret), "path": None, "min_rating": None, "k_core": None}
    (d / "config.json").write_text(json.dumps(meta))
    err = one_error(capsys, ["evaluate", str(d)], str(secret))
    assert "SECRET" not in err and "hunter2" not in err


@pytest.mark.parametrize("content,needle", [
    ("[]", "not a recguard audit"),
    ('{"format": "recguard-audit"}', "malformed"),
    ('{"format": "recguard-audit", "spec": 3, "summary": [], "clean": {}}', "malformed"),
    ("{", "invalid JSON"),
])
def test_malformed_results_json(content, needle, tmp_path, capsys):
    (tmp_path / "results.json").write_text(content)
    one_error(capsys, ["report", str(tmp_path)], needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


# ----------------------------------------------------------------------------- 7. one audit per folder
def test_a_second_audit_on_the_same_folder_is_refused(tmp_path, log_file, capsys):
    out = tmp_path / "a"
    argv = ["audit", "--dataset", str(log_file), "--attacks", "random", "--budgets", "0.05", "--out", str(out), "--no-progress",
            *SETS]
    assert main(argv) == 0  # a finished audit leaves the folder free
    capsys.readouterr()
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib; from recguard.audit._lock import AuditLock\n"
        "with AuditLock(sys.argv[1]):\n"
        "    pathlib.Path(sys.argv[2]).write_text('x')\n"
        "    sys.stdin.read()\n"), str(out), str(ready)], stdin=subprocess.PIPE)
    try:
        for _ in range(600):
            if ready.exists() or holder.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert ready.exists()
        err = one_error(capsys, argv, "another audit is running")
        assert f"process {holder.pid}" in err
        with pytest.raises(AuditLockedError):
            run_audit(AuditSpec(dataset=str(log_file), attacks=("random",), budgets=(0.05,), model_config=TINY), out, progress=False)
    finally:
        holder.communicate(b"")
    assert main(argv) == 0  # released when the holder ends


# ----------------------------------------------------------------------------- 9. packaging
def test_importing_recguard_or_its_plugin_does_not_import_torch():
    code = ("import sys, recguard, recguard.testing, recguard.testing.plugin; "
            "print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, "-c", "import recguard; recguard.SASRec; import sys; print('torch' in sys.modules)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "True"  # and names still resolve on first use


def test_declared_python_range_is_true():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.10"
    assert any(d.startswith("tomli") and "python_version < '3.11'" in d for d in meta["dependencies"])
