import json

import numpy as np

import pytest

from recguard.audit import AuditSpec, run_audit
from recguard.cli import main
from recguard.errors import ConfigError

from conftest import cyclic_data

FAST_MODEL = {"hidden": 16, "max_len": 12, "epochs": 3, "batch_size": 32, "eval_every": 1, "patience": 0}


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    """A small dataset in RecBole's atomic format, with genres (so the segment attack can run)."""
    d = cyclic_data(num_users=80, num_items=30, length=10, seed=5)
    root = tmp_path_factory.mktemp("atomic")
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u, seq in enumerate(d):
        rows += [f"{u + 1}\t{i}\t5\t{t}" for t, i in enumerate(seq.tolist())]
    (root / "toy.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tItem {i}\t{1990 + i % 5}\tG{i % 3} H{i % 2}" for i in range(1, 31)]
    (root / "toy.item").write_text("\n".join(items) + "\n")
    return root / "toy.inter"


def _spec(atomic, **kw):
    base = dict(dataset=str(atomic), model="gru4rec", model_config=FAST_MODEL, budgets=(0.05,), seeds=(0,), num_targets=2)
    return AuditSpec(**{**base, **kw})


def _numbers(results):
    """Every number of the summary except timings."""
    out = []
    for r in results["summary"]:
        out.append({k: v for k, v in r.items() if "time" not in k})
    return out


def test_audit_runs_resumes_and_is_deterministic(atomic, tmp_path):
    spec = _spec(atomic)
    seen = []
    res = run_audit(spec, tmp_path / "a", progress=False, on_cell=seen.append)
    assert [r["attack"] for r in res["summary"]] == ["random", "popular", "segment", "surrogate"]
    for r in res["summary"]:
        assert r["num_fake_users"] == 4 and r["T-HR@50"]["n"] == 1
        assert 0 <= r["T-HR@10"]["mean"] <= r["T-HR@50"]["mean"] <= 1
    for name in ("results.json", "report.md", "report.html", "spec.json"):
        assert (tmp_path / "a" / name).exists()
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("<img") == 3 and "data:image/png;base64," in html
    cells = sorted((tmp_path / "a" / "cells").glob("*.json"))
    assert len(cells) == 5
    mtimes = [c.stat().st_mtime_ns for c in cells]
    # resume: nothing is recomputed
    again = run_audit(spec, tmp_path / "a", progress=False)
    assert [c.stat().st_mtime_ns for c in cells] == mtimes
    assert _numbers(again) == _numbers(res)
    # same seed in a fresh folder: identical numbers
    fresh = run_audit(spec, tmp_path / "b", progress=False)
    assert _numbers(fresh) == _numbers(res)
    # the clean model is genuine-only: fake users never enter evaluation
    clean = json.loads(next((tmp_path / "a" / "cells").glob("clean_*.json")).read_text())
    poisoned = [json.loads(c.read_text()) for c in cells if not c.name.startswith("clean")]
    assert all(p["poisoned_fingerprint"] != clean["train_fingerprint"] for p in poisoned)


def test_interrupted_audit_keeps_finished_cells(atomic, tmp_path, monkeypatch):
    from recguard.audit import runner

    spec = _spec(atomic, attacks=("random", "popular"))
    calls = {"n": 0}
    real = runner._run_cell

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "_run_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_audit(spec, tmp_path / "c", progress=False)
    done = sorted(p.name for p in (tmp_path / "c" / "cells").glob("*.json"))
    assert len(done) == 2 and any(n.startswith("random") for n in done)
    assert not list((tmp_path / "c" / "cells").glob("*.tmp"))
    monkeypatch.setattr(runner, "_run_cell", real)
    res = run_audit(spec, tmp_path / "c", progress=False)
    assert len(res["summary"]) == 2


def test_inject_file_in_audit(atomic, tmp_path):
    inj = tmp_path / "inject_user_x.json"
    inj.write_text(json.dumps({"user_data": {"f1": [7, 1, 7, 2, 7, 3], "f2": [7, 4, 7, 5]}, "target_item": [7]}))
    res = run_audit(_spec(atomic, attacks=(), inject=(str(inj),)), tmp_path / "i", progress=False)
    (row,) = res["summary"]
    assert row["attack"] == "inject:inject_user_x" and row["num_fake_users"] == 2 and row["budget"] is None


def test_spec_from_toml_and_errors(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text('[audit]\ndataset = "ml-100k"\nattacks = ["random"]\nbudgets = [0.01, 0.03]\n[audit.model_config]\nmax_len = 50\n')
    spec = AuditSpec.from_toml(p)
    assert spec.budgets == (0.01, 0.03) and spec.model_config == {"max_len": 50}
    p.write_text('dataset = "ml-100k"\nattaks = ["random"]\n')
    with pytest.raises(ConfigError, match="unknown key.*attaks"):
        AuditSpec.from_toml(p)
    with pytest.raises(ConfigError, match="unknown attack"):
        AuditSpec(attacks=("sybil",))
    with pytest.raises(ConfigError, match="budget"):
        AuditSpec(budgets=(0,))
    with pytest.raises(ConfigError, match="unknown defense"):
        AuditSpec(defenses=("lorec2",))


def test_cli_audit_and_report(atomic, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["audit", "--dataset", str(atomic), "--model", "gru4rec", "--attacks", "random,popular", "--budgets", "0.05",
            "--out", str(out), "--no-progress", "--targets", "3,4"]
    for k, v in FAST_MODEL.items():
        argv += ["--set", f"{k}={v}"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "random" in text and "report.html" in text
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["targets"] == [3, 4] and "provenance" in results
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert main(["audit", "--out", str(tmp_path / "x"), "--budgets", "abc"]) == 2
    assert main(["audit", "--out", str(tmp_path / "x"), "--attacks", "sybil"]) == 2


def test_cli_attack_writes_files(atomic, tmp_path):
    out = tmp_path / "atk"
    assert main(["attack", "--dataset", str(atomic), "--attack", "popular", "--budget", "0.05", "--out", str(out)]) == 0
    meta = json.loads((out / "attack.json").read_text())
    inj = json.loads((out / "inject.json").read_text())
    assert len(inj["user_data"]) == 4 == len(meta["fake_user_numbers"])
    from recguard.data import read_user_item

    poisoned = read_user_item(out / "poisoned.txt")
    assert poisoned.num_users == 84
    assert main(["attack", "--dataset", str(atomic), "--attack", "surrogate", "--out", str(out)]) == 2


def test_report_with_several_seeds_draws_per_target_plot(atomic, tmp_path):
    # every seed draws its own targets; the per-target plot must not mix them
    res = run_audit(_spec(atomic, attacks=("random",), seeds=(0, 1), num_targets=2), tmp_path / "s", progress=False)
    targets = [tuple(c["targets"]) for c in res["cells"] if c["kind"] == "clean"]
    assert len(targets) == 2
    assert "Per-target exposure" in (tmp_path / "s" / "report.html").read_text()


def test_cells_record_the_training_and_lorec_revisions(monkeypatch):
    import recguard.audit.runner as R

    spec = AuditSpec()
    key = R.cell_key(spec, "poisoned", 0, "random", 0.01, "none")
    assert key["training_revision"] == R.TRAINING_REVISION
    monkeypatch.setattr(R, "TRAINING_REVISION", R.TRAINING_REVISION + 1)
    assert R._hash(R.cell_key(spec, "poisoned", 0, "random", 0.01, "none")) != R._hash(key)  # never resumed across code
    lorec = R.cell_key(spec, "poisoned", 0, "random", 0.01, "lorec")
    none = R.cell_key(spec, "poisoned", 0, "random", 0.01, "none")
    assert lorec["defense_revision"] == R.LCT_REVISION and "defense_revision" not in none
    monkeypatch.setattr(R, "LCT_REVISION", R.LCT_REVISION + 1)  # LoRec's own revision moves only its cells
    assert R._hash(R.cell_key(spec, "poisoned", 0, "random", 0.01, "lorec")) != R._hash(lorec)
    assert R._hash(R.cell_key(spec, "poisoned", 0, "random", 0.01, "none")) == R._hash(none)


def test_parallel_audit_matches_sequential(atomic, tmp_path, monkeypatch):
    import recguard.audit._parallel as P

    spec = _spec(atomic, attacks=("random", "popular", "surrogate"), seeds=(0, 1), defenses=("none",))
    seq = run_audit(spec, tmp_path / "seq", progress=False)
    par = run_audit(spec, tmp_path / "par", progress=False, jobs=2)
    assert _numbers(par) == _numbers(seq)  # one thread per process in both (conftest), so bit-identical
    names = lambda d: sorted(p.name for p in (tmp_path / d / "cells").glob("*.json"))  # noqa: E731
    assert names("par") == names("seq") and len(names("par")) == 2 + 2 * 3
    assert not (tmp_path / "par" / P.JOBS_DIR).exists()
    # resuming the finished folder in parallel recomputes nothing
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "par" / "cells").glob("*.json")}
    run_audit(spec, tmp_path / "par", progress=False, jobs=2)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "par" / "cells").glob("*.json")} == mtimes


def test_parallel_audit_reports_a_worker_error(atomic, tmp_path, monkeypatch):
    import recguard.audit._parallel as P
    from recguard.errors import AuditWorkerError

    spec = _spec(atomic, attacks=("random",), defenses=("none",))
    orig = P.run_workers

    def damaged(spec, out, jobs, progress=False):  # the workers read OUT/spec.json: give them a bad one
        (out / "spec.json").write_text(json.dumps({**spec.to_dict(), "model": "lstm"}))
        return orig(spec, out, jobs, progress=progress)

    monkeypatch.setattr(P, "run_workers", damaged)
    with pytest.raises(AuditWorkerError, match="ConfigError.*lstm"):
        run_audit(spec, tmp_path / "p", progress=False, jobs=2)
    with pytest.raises(ConfigError, match="jobs"):
        run_audit(spec, tmp_path / "q", progress=False, jobs=0)


def test_removal_is_not_measurable_when_the_lift_interval_includes_zero():
    from recguard.audit.report import _fmt_ci, _ms, measurable

    lift = _ms([0.01, -0.004, 0.006])  # mean 0.004, the interval straddles 0
    assert lift["ci95"][0] < 0 < lift["ci95"][1] and measurable(lift) is False
    clear = _ms([0.020, 0.022, 0.019])
    assert measurable(clear) is True and clear["ci95"][0] > 0
    # by hand: t(0.975, 2) = 4.3027, sd = 0.0015275, n = 3
    assert clear["ci95"][1] - clear["mean"] == pytest.approx(4.302653 * np.std([0.020, 0.022, 0.019], ddof=1) / np.sqrt(3))
    assert measurable(_ms([0.02])) is None  # one seed: no interval
    assert _fmt_ci({**_ms([0.5, 0.6, 0.7]), "measurable": False}, pct=True) == "not measurable"
    assert _fmt_ci(clear).startswith("0.0203 [")
