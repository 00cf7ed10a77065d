import json
from pathlib import Path

import numpy as np

import pytest

from recguard.audit import AuditSpec, run_audit
from recguard.cli import main
from recguard.errors import AuditInterrupted, ConfigError

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
    import recguard.audit.backends as B

    spec = _spec(atomic, attacks=("random", "popular"))
    real, calls = B.compute, []

    def interrupted(spec, cell, store, clean=None):
        calls.append(cell.kind)
        if len(calls) == 3:  # Ctrl-C while the second poisoned cell trains
            raise KeyboardInterrupt
        return real(spec, cell, store, clean)

    monkeypatch.setattr(B, "compute", interrupted)
    with pytest.raises(AuditInterrupted, match=r"^interrupted: 2 of 3 cells finished; rerun the same command to resume$") as e:
        run_audit(spec, tmp_path / "c", progress=False)
    assert e.value.exit_code == 130
    done = sorted(p.name for p in (tmp_path / "c" / "cells").glob("*.json"))
    assert len(done) == 2 and any(n.startswith("random") for n in done)
    assert not list((tmp_path / "c" / "cells").glob("*.tmp"))
    monkeypatch.setattr(B, "compute", real)
    seen = []
    res = run_audit(spec, tmp_path / "c", progress=False, on_cell=seen.append)
    assert len(res["summary"]) == 2 and [c.kind for c in seen] == ["clean", "poisoned", "poisoned"]


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


def test_a_recipe_in_the_toml_file_becomes_model_config_under_the_files_own_settings(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text('recipe = "recsys23"\nmodel = "bert4rec"\n[model_config]\nlr = 0.002\n')
    spec = AuditSpec.from_toml(p)
    assert spec.model_config["mask_prob"] == 0.2 and spec.model_config["patience"] == 20 and spec.model_config["lr"] == 0.002
    p.write_text('recipe = "recsys23"\nmodel = "gru4rec"\n')
    with pytest.raises(ConfigError, match=f"{p}: recipe: 'recsys23' has settings for bert4rec, sasrec, not 'gru4rec'"):
        AuditSpec.from_toml(p)


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
    import recguard.defenses.lorec as L
    import recguard.victims as T
    from recguard.audit.cells import cell_key, short_hash

    spec = AuditSpec()
    key = cell_key(spec, "poisoned", 0, "random", 0.01, "none")
    assert key["training_revision"] == T.TRAINING_REVISION
    monkeypatch.setattr(T, "TRAINING_REVISION", T.TRAINING_REVISION + 1)
    assert short_hash(cell_key(spec, "poisoned", 0, "random", 0.01, "none")) != short_hash(key)  # never resumed across code
    lorec = cell_key(spec, "poisoned", 0, "random", 0.01, "lorec")
    none = cell_key(spec, "poisoned", 0, "random", 0.01, "none")
    assert lorec["defense_revision"] == L.LCT_REVISION and "defense_revision" not in none
    monkeypatch.setattr(L.LoRec, "revision", L.LCT_REVISION + 1)  # a defense's own revision moves only its cells
    assert short_hash(cell_key(spec, "poisoned", 0, "random", 0.01, "lorec")) != short_hash(lorec)
    assert short_hash(cell_key(spec, "poisoned", 0, "random", 0.01, "none")) == short_hash(none)
    # detectors carry the decision layer's revision
    from recguard.defenses.decision import DECISION_REVISION

    assert cell_key(spec, "poisoned", 0, "random", 0.01, "lockstep")["defense_revision"] == DECISION_REVISION
    assert cell_key(spec, "poisoned", 0, "random", 0.01, "pca")["defense_revision"] == DECISION_REVISION + 3  # its own default rule


def test_cells_are_typed_and_keep_the_file_names_of_earlier_audits(monkeypatch):
    import recguard.victims as train_mod
    from recguard.audit import Cell, CellResult, plan

    spec = AuditSpec(attacks=("random", "extracted"), defenses=("none", "lorec"), defense_controls=True, seeds=(0, 3),
                     budgets=(0.01, 0.03))
    # names computed by the runner before cells were typed (training revision 3): a resumed audit finds its cells
    monkeypatch.setattr(train_mod, "TRAINING_REVISION", 3)
    assert Cell.make(spec, "clean", 3).name == "clean_seed3_9979dd11f13b"
    assert Cell.make(spec, "poisoned", 0, "extracted", 0.01, "none").name == "extracted_b0.01_none_seed0_38c30a855fb8"
    monkeypatch.setattr(train_mod, "TRAINING_REVISION", 4)  # today's code: other training, other cells
    assert Cell.make(spec, "clean", 3).name != "clean_seed3_9979dd11f13b"
    monkeypatch.undo()
    phases = plan(spec)
    assert [{c.kind for c in p} for p in phases] == [{"clean"}, {"extraction"}, {"control", "poisoned"}]
    assert len(phases[2]) == 2 * (1 + 2 * 2 * 2)  # per seed: 1 control + 2 attacks x 2 budgets x 2 defenses
    assert len({c.name for p in phases for c in p}) == sum(map(len, phases))
    cell = phases[2][-1]
    assert Cell.from_dict(cell.to_dict()) == cell and Cell.from_dict(cell.to_dict()).key == cell.key
    r = CellResult(kind="clean", seed=0, key={"kind": "clean"}, wall_time_s=1.0, targets=[1], metrics={}, train={},
                   train_time_s=1.0)
    assert CellResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert "attack" not in r.to_dict()  # fields of other kinds stay out of the file
    from recguard.errors import ArtifactError

    with pytest.raises(ArtifactError, match="lacks metrics"):
        CellResult.from_dict({"kind": "clean", "seed": 0, "key": {}, "train": {}, "wall_time_s": 1, "targets": [],
                              "train_time_s": 1}, source="x.json")
    with pytest.raises(ArtifactError, match="x.json: not an audit cell"):
        CellResult.from_dict([], source="x.json")


def test_a_process_keeps_one_audit_folders_models_between_cells(tmp_path):
    from recguard.audit.compute import store_for

    a = store_for(tmp_path / "a")
    a._loaded["x"] = object()
    assert store_for(tmp_path / "a") is a and store_for(str(tmp_path / "a")) is a  # the next cell finds what was loaded
    b = store_for(tmp_path / "b")
    assert b is not a and not b._loaded and store_for(tmp_path / "a") is not a  # one folder at a time: no accumulation


def test_local_backend_matches_sequential(atomic, tmp_path):
    spec = _spec(atomic, attacks=("random", "popular", "surrogate"), seeds=(0, 1), defenses=("none",))
    seq = run_audit(spec, tmp_path / "seq", progress=False)
    par = run_audit(spec, tmp_path / "par", progress=False, jobs=2)
    assert _numbers(par) == _numbers(seq)  # one thread per process in both (conftest), so bit-identical
    names = lambda d: sorted(p.name for p in (tmp_path / d / "cells").glob("*.json"))  # noqa: E731
    assert names("par") == names("seq") and len(names("par")) == 2 + 2 * 3
    assert json.loads((tmp_path / "par" / "results.json").read_text())["provenance"]["execution"]["backend"] == "local"
    # resuming the finished folder in parallel recomputes nothing
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "par" / "cells").glob("*.json")}
    run_audit(spec, tmp_path / "par", progress=False, jobs=2)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "par" / "cells").glob("*.json")} == mtimes


def test_a_workers_error_comes_back_as_one_line_naming_the_cell(atomic, tmp_path, monkeypatch):
    from recguard.errors import AuditWorkerError

    monkeypatch.chdir(Path(__file__).parent)  # flaky_models, imported by the spawned workers
    spec = _spec(atomic, model="flaky_models:broken", attacks=("random",), defenses=("none",), seeds=(0, 1))
    with pytest.raises(AuditWorkerError, match=r"^cell clean seed \d failed: RuntimeError: boom in fit \(finished cells") as e:
        run_audit(spec, tmp_path / "p", progress=False, jobs=2)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="jobs"):
        run_audit(spec, tmp_path / "q", progress=False, jobs=0)
    with pytest.raises(ConfigError, match="backend"):
        run_audit(spec, tmp_path / "q", progress=False, backend="slurm")


def test_a_changed_spec_is_refused_unless_the_grid_only_grows(atomic, tmp_path):
    spec = _spec(atomic, attacks=("random",), defenses=("none",))
    run_audit(spec, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match=r"different model_config .*new --out folder, or --force-new"):
        run_audit(spec.replace(model_config={**FAST_MODEL, "hidden": 8}), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="different num_targets, order"):
        run_audit(spec.replace(num_targets=3, order="random"), tmp_path / "a", progress=False)
    first = sorted(p.name for p in (tmp_path / "a" / "cells").glob("*.json"))
    grown = run_audit(spec.replace(attacks=("random", "popular")), tmp_path / "a", progress=False)  # the grid may grow
    assert [r["attack"] for r in grown["summary"]] == ["random", "popular"]
    assert set(first) <= {p.name for p in (tmp_path / "a" / "cells").glob("*.json")}
    new = run_audit(spec.replace(num_targets=3), tmp_path / "a", progress=False, force_new=True)
    assert len(list((tmp_path / "a" / "cells").glob("*.json"))) == 2 and len(new["cells"][0]["targets"]) == 3
    assert spec.digest() == spec.replace(seeds=(0, 1)).digest() != spec.replace(num_targets=3).digest()


def test_report_rerenders_from_the_cells(atomic, tmp_path):
    spec = _spec(atomic, attacks=("random",), defenses=("none",))
    res = run_audit(spec, tmp_path / "a", progress=False)
    (tmp_path / "a" / "results.json").unlink()
    from recguard.audit import rerender

    rebuilt = rerender(tmp_path / "a")
    assert _numbers(rebuilt) == _numbers(res) and (tmp_path / "a" / "results.json").exists()


def test_reports_never_switch_the_matplotlib_backend(atomic, tmp_path):
    import subprocess
    import sys

    run_audit(_spec(atomic, attacks=("random",), defenses=("none",)), tmp_path / "a", progress=False)
    # a notebook user's kernel: their backend stays, and pyplot's global figure state is never touched
    code = ("import matplotlib, sys; matplotlib.use('svg'); from recguard.audit import rerender; "
            f"rerender({str(tmp_path / 'a')!r}); print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["svg", "False"]
    assert "data:image/png;base64," in (tmp_path / "a" / "report.html").read_text()


def test_removal_is_not_measurable_when_the_lift_interval_includes_zero():
    from recguard.audit.report import format_interval as _fmt_ci
    from recguard.audit.results import mean_interval as _ms, measurable

    lift = _ms([0.01, -0.004, 0.006])  # mean 0.004, the interval straddles 0
    assert lift["ci95"][0] < 0 < lift["ci95"][1] and measurable(lift) is False
    clear = _ms([0.020, 0.022, 0.019])
    assert measurable(clear) is True and clear["ci95"][0] > 0
    # by hand: t(0.975, 2) = 4.3027, sd = 0.0015275, n = 3
    assert clear["ci95"][1] - clear["mean"] == pytest.approx(4.302653 * np.std([0.020, 0.022, 0.019], ddof=1) / np.sqrt(3))
    assert measurable(_ms([0.02])) is None  # one seed: no interval
    assert _fmt_ci({**_ms([0.5, 0.6, 0.7]), "measurable": False}, pct=True) == "not measurable"
    assert _fmt_ci(clear).startswith("0.0203 [")


def test_a_removal_wholly_below_zero_reads_helps_the_attacker():
    from recguard.audit.report import format_interval as _fmt_ci, helps_attacker
    from recguard.audit.results import mean_interval as _ms

    worse = {**_ms([-0.8, -0.7, -0.75]), "measurable": True}
    assert helps_attacker(worse) and _fmt_ci(worse, pct=True, removal=True).startswith("helps the attacker: -75.0% [")
    assert _fmt_ci(worse, pct=True).startswith("-75.0% [")  # a clean cost below 0 is only a cost
    straddles = {**_ms([-0.8, 0.1, -0.3]), "measurable": True}
    assert not helps_attacker(straddles) and not _fmt_ci(straddles, pct=True, removal=True).startswith("helps")
    assert not helps_attacker({**worse, "measurable": False})
    assert _fmt_ci({**worse, "measurable": False}, pct=True, removal=True) == "not measurable"
    assert not helps_attacker(_ms([-0.5]))  # one seed: no interval, no verdict
