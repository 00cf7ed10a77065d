"""Ray clusters that a test starts in other processes: a ``ray://`` client address, and a local Ray
that an audit started itself and must shut down when stopped.

Same xdist group as tests/test_backends.py, so they run in the same worker after its module-scoped
local cluster is shut down: two Ray clusters at once on one machine made the client connection time out."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recguard.errors import ConfigError

from test_audit import atomic  # noqa: F401 - the fixture

HERE = Path(__file__).parent
pytestmark = pytest.mark.xdist_group("ray")
ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'recguard[ray]')")


def _without_ray_settings() -> dict:
    """This environment less the RAY_* variables that the module's own ``ray.init`` set (e.g. RAY_AUTH_MODE=token),
    which a separately started cluster must not inherit."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


@pytest.mark.slow
def test_a_ray_client_address_runs_the_audit(atomic, tmp_path):  # noqa: F811
    """``--address ray://HOST:PORT`` against a local head started here (``ray start --head``), from a fresh process."""
    import socket
    import time

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    import tempfile

    gcs, client = free_port(), free_port()
    temp = tempfile.mkdtemp(prefix="rg-ray-", dir="/tmp")  # Ray's socket paths must stay short
    ray_bin = Path(sys.executable).with_name("ray")
    # a local ray.init elsewhere (tests/test_backends.py) leaves ~/.ray/auth_token, which would turn token auth on
    # for this head; this test is about the client address, so both sides run without it
    env = {**_without_ray_settings(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={gcs}", f"--ray-client-server-port={client}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={temp}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # ready when a plain client session connects (an open port alone is not enough on a loaded machine)
        probe = f"import ray; ray.init('ray://127.0.0.1:{client}'); ray.shutdown()"
        ready, deadline = None, time.monotonic() + 180
        while time.monotonic() < deadline:
            ready = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
            if ready.returncode == 0:
                break
            time.sleep(2)
        assert ready is not None and ready.returncode == 0, f"the test's Ray head never accepted a client: {ready and ready.stderr[-1500:]}"
        out = tmp_path / "a"
        proc = subprocess.run([sys.executable, "-c", "import sys; from recguard.cli import _entry; sys.argv[0] = 'recguard'; _entry()",
                               "audit", "--dataset", str(atomic), "--model", "gru4rec", "--set", "hidden=16", "--set", "max_len=12",
                               "--set", "epochs=2", "--attacks", "random", "--budgets", "0.05", "--seeds", "0", "--defense", "none",
                               "--backend", "ray", "--address", f"ray://127.0.0.1:{client}", "--no-progress", "--out", str(out)],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        logs = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in Path(temp).glob("session_*/logs/ray_client*"))
        assert proc.returncode == 0, proc.stderr[-2000:] + logs
        res = json.loads((out / "results.json").read_text())
        assert res["provenance"]["execution"]["address"] == f"ray://127.0.0.1:{client}" and len(res["cells"]) == 2
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_client_address_without_the_client_says_how_to_install(monkeypatch):
    ray_mod = pytest.importorskip("ray")
    from recguard.audit import RayBackend

    def no_client(*a, **k):
        raise ValueError("Ray Client requires pip package `ray[client]`. If you installed the minimal Ray (e.g. `pip install "
                         "ray`), please reinstall by executing `pip install ray[client]`.")

    monkeypatch.setattr(ray_mod, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_mod, "init", no_client)
    with pytest.raises(ConfigError, match=r"address: Ray cannot reach 'ray://h:10001'.*pip install 'recguard\[ray\]'"):
        RayBackend("ray://h:10001")._ray()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigterm_shuts_down_the_local_ray_the_audit_started(atomic, tmp_path):  # noqa: F811
    import tempfile
    import time

    temp = tempfile.mkdtemp(prefix="rg-ray-", dir="/tmp")  # this run's Ray processes name it on their command lines
    env = {**_without_ray_settings(), "RAY_TMPDIR": temp, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "a"
    err = open(tmp_path / "driver.err", "w")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from recguard.cli import _entry; sys.argv[0] = 'recguard'; _entry()",
                             "audit", "--dataset", str(atomic), "--model", "gru4rec", "--set", "hidden=16", "--set", "max_len=12",
                             "--set", "epochs=300", "--set", "patience=0", "--set", "batch_size=8", "--attacks", "random,popular",
                             "--budgets", "0.05", "--seeds", "0,1,2", "--defense", "none", "--backend", "ray", "--no-progress",
                             "--out", str(out)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)

    def ray_processes() -> list[int]:
        found = []
        for cmd in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if temp.encode() in cmd.read_bytes():
                    found.append(int(cmd.parent.name))
            except OSError:
                pass
        return found

    try:
        deadline = time.monotonic() + 300
        while not list((out / "cells").glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None and ray_processes(), (tmp_path / "driver.err").read_text()[-2000:]
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        said = (tmp_path / "driver.err").read_text()
        assert proc.returncode == 130 and "interrupted: " in said, f"exit {proc.returncode}: {said[-3000:]}"
        deadline = time.monotonic() + 30
        while ray_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not ray_processes(), "the local Ray cluster outlived the audit that started it"
    finally:
        for pid in ray_processes():
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
