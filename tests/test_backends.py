"""Audit backends: the same audit gives the same numbers on every backend, resumes across them,
and survives a killed worker (Ray retries it) and a killed driver (the next run resumes).

The Ray tests run against a local cluster started here (``ray.init(num_cpus=2)``)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recguard.audit import AuditSpec, RayBackend, run_audit
from recguard.errors import AuditWorkerError, ConfigError

from test_audit import FAST_MODEL, _numbers, atomic  # noqa: F401 - the fixture

HERE = Path(__file__).parent
pytestmark = pytest.mark.xdist_group("ray")  # one local Ray cluster per run, not one per pytest worker
ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'recguard[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    # workers import recguard and this folder's test models as the driver does
    path = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def _spec(data, **kw):
    base = dict(dataset=str(data), model="gru4rec", model_config=FAST_MODEL, budgets=(0.05,), seeds=(0, 1), num_targets=2,
                attacks=("random", "surrogate"), defenses=("none",))
    return AuditSpec(**{**base, **kw})


def _cells(out: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}


@pytest.mark.slow
def test_ray_backends_give_the_sequential_numbers(atomic, tmp_path, local_ray):  # noqa: F811
    spec = _spec(atomic, attacks=("surrogate",))  # the surrogate attack reuses each seed's clean model
    seq = run_audit(spec, tmp_path / "seq", progress=False)
    store = run_audit(spec, tmp_path / "store", progress=False, backend=RayBackend(transport="object-store"))
    shared = run_audit(spec, tmp_path / "shared", progress=False, backend=RayBackend(transport="shared"))
    assert _numbers(store) == _numbers(seq) == _numbers(shared)  # one thread per cell everywhere
    # the driver wrote every cell and, with the object store, the clean models too: a resume finds them
    assert set(_cells(tmp_path / "store")) == set(_cells(tmp_path / "seq"))
    assert sorted(p.name for p in (tmp_path / "store" / "models").iterdir()) == sorted(
        p.name for p in (tmp_path / "seq" / "models").iterdir())
    execution = json.loads((tmp_path / "store" / "results.json").read_text())["provenance"]["execution"]
    assert execution["transport"] == "object-store"
    before = _cells(tmp_path / "store")
    run_audit(spec, tmp_path / "store", progress=False)  # sequential resume of a Ray audit: nothing recomputed
    assert _cells(tmp_path / "store") == before


@pytest.mark.slow
def test_the_extracted_chain_runs_on_ray(atomic, tmp_path, local_ray):  # noqa: F811
    spec = _spec(atomic, attacks=("extracted",), seeds=(0,), extraction={"num_sequences": 60, "epochs": 2, "k": 10})
    seq = run_audit(spec, tmp_path / "seq", progress=False)
    on_ray = run_audit(spec, tmp_path / "ray", progress=False, backend="ray")
    assert _numbers(on_ray) == _numbers(seq)
    assert [c["kind"] for c in on_ray["cells"]].count("extraction") == 1


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried_and_finished_cells_are_kept(atomic, tmp_path, local_ray):  # noqa: F811
    marker = tmp_path / "died"
    cfg = {**FAST_MODEL, "marker": str(marker), "clean_users": 80}
    spec = _spec(atomic, model="flaky_models:dies_once", model_config=cfg, attacks=("random",), seeds=(0,))
    res = run_audit(spec, tmp_path / "a", progress=False, backend=RayBackend(max_retries=2))
    assert marker.exists() and len(res["summary"]) == 1  # the poisoned cell's worker died once and was rerun
    marker.unlink()
    with pytest.raises(AuditWorkerError, match=r"cell random 0.05 none seed \d failed: .*finished cells are kept"):  # no retry left
        run_audit(spec.replace(seeds=(0, 1)), tmp_path / "b", progress=False, backend=RayBackend(max_retries=0))
    assert any(n.startswith("clean_seed") for n in _cells(tmp_path / "b"))  # what finished stays


@pytest.mark.slow
def test_a_killed_driver_resumes_on_another_backend(atomic, tmp_path, local_ray):  # noqa: F811
    """Start locally, kill the driver mid-audit, finish on Ray: finished cells are never recomputed."""
    out = tmp_path / "a"
    spec = _spec(atomic, attacks=("random", "popular"))
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    script = textwrap.dedent(f"""
        import json, os, signal
        from recguard.audit import AuditSpec, run_audit
        spec = AuditSpec.from_dict(json.loads(open({str(tmp_path / 'spec.json')!r}).read()))
        seen = []
        def stop(result):
            seen.append(result)
            if len(seen) == 3:  # two clean cells and one poisoned one written: the machine dies (driver and workers)
                os.killpg(0, signal.SIGKILL)
        if __name__ == "__main__":  # the local backend's workers are spawned: they import this script
            run_audit(spec, {str(out)!r}, progress=False, on_cell=stop, jobs=2)
    """)
    (tmp_path / "driver.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py")], cwd=HERE, capture_output=True, text=True, timeout=600,
                          start_new_session=True)
    assert proc.returncode == -9
    first = _cells(out)
    assert len(first) == 3
    res = run_audit(spec, out, progress=False, backend="ray")  # the folder's lock died with the driver
    assert {k: v for k, v in _cells(out).items() if k in first} == first and len(_cells(out)) == 2 + 2 * 2
    assert _numbers(res) == _numbers(run_audit(spec, tmp_path / "seq", progress=False))


def test_backend_options_are_checked(atomic, tmp_path):  # noqa: F811
    from recguard.audit import make_backend

    with pytest.raises(ConfigError, match="transport"):
        RayBackend(transport="nfs")
    with pytest.raises(ConfigError, match="max_retries"):
        RayBackend(max_retries=-1)
    with pytest.raises(ConfigError, match="--address only apply to --backend ray"):
        make_backend("local", jobs=2, address="auto")
    with pytest.raises(ConfigError, match="sequential backend runs one cell at a time"):
        make_backend("sequential", jobs=2)


def test_cli_backend_without_ray_says_how_to_install(atomic, tmp_path, monkeypatch, capsys):  # noqa: F811
    from recguard.cli import _entry

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    monkeypatch.setattr(sys, "argv", ["recguard", "audit", "--dataset", str(atomic), "--out", str(tmp_path / "a"),
                                      "--backend", "ray", "--no-progress"])
    with pytest.raises(SystemExit) as e:
        _entry()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pip install 'recguard[ray]'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_toml_execution_keys(tmp_path, atomic):  # noqa: F811
    from recguard.audit import read_toml

    f = tmp_path / "a.toml"
    f.write_text(f'dataset = "{atomic}"\nbackend = "ray"\naddress = "auto"\nmax_retries = 1\n[model_config]\nmax_len = 12\n')
    spec, execution = read_toml(f)
    assert execution == {"backend": "ray", "address": "auto", "max_retries": 1} and spec.model_config == {"max_len": 12}
    f.write_text('backend = 3\n')
    with pytest.raises(ConfigError, match="a.toml"):
        read_toml(f)
