"""Stopping an audit: SIGTERM and Ctrl-C stop the worker processes with the driver, keep finished
cells, exit 130 with one line, and a rerun resumes; workers also end when the driver is killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_audit import atomic  # noqa: F401 - the fixture

HERE = Path(__file__).parent
# slow enough that the audit is still running when it is stopped: 12 cells of 300 epochs each
SLOW_MODEL = "--set hidden=16 --set max_len=12 --set epochs=300 --set batch_size=8 --set patience=0 --set eval_every=1"


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(atomic, out: Path) -> subprocess.Popen:  # noqa: F811
    """``recguard audit ... --jobs 2`` in a process group of its own; its output goes to files (a pipe would be held
    open by any worker that outlived the driver)."""
    args = (f"audit --dataset {atomic} --model gru4rec {SLOW_MODEL} --attacks random,popular --budgets 0.05 "
            f"--seeds 0,1,2,3 --defense none --jobs 2 --threads 1 --no-progress --out {out}").split()
    # as a foreground command in a terminal: Ctrl-C raises KeyboardInterrupt even when this test runs in a background job
    # (`cmd &` in a script, nohup), whose SIGINT is ignored and would be inherited; the audit rightly keeps that choice
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from recguard.cli import _entry; sys.argv[0] = 'recguard'; _entry()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    logs = out.parent / "driver"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=out.parent, stdout=open(f"{logs}.out", "w"),
                            stderr=open(f"{logs}.err", "w"), env=env, start_new_session=True)


def _stderr(out: Path) -> str:
    return (out.parent / "driver.err").read_text()


def _wait_for_first_cell(proc: subprocess.Popen, out: Path) -> set[int]:
    """Wait until a cell is written; return the driver's worker processes then."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the audit ended before it could be stopped: {_stderr(out)}")
        if list((out / "cells").glob("*.json")):
            workers = _children(proc.pid)
            if len(workers) >= 2:
                return workers
        time.sleep(0.2)
    proc.kill()
    pytest.fail("no cell was written within 300 s")


def _assert_gone(pids: set[int], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], f"worker processes outlived the driver by more than {within} s"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT to the process group"])
def test_a_stopped_audit_ends_its_workers_keeps_its_cells_and_exits_130(atomic, tmp_path, how):  # noqa: F811
    out = tmp_path / "a"
    proc = _start(atomic, out)
    workers = _wait_for_first_cell(proc, out)
    if how == "SIGTERM":
        os.kill(proc.pid, signal.SIGTERM)  # the driver alone, as a scheduler or `timeout` does
    else:
        os.killpg(proc.pid, signal.SIGINT)  # a real Ctrl-C reaches the whole foreground group
    proc.wait(timeout=180)  # a bound for a loaded machine; a healthy one stops within seconds
    _assert_gone(workers, within=5.0)
    stderr = _stderr(out)
    assert proc.returncode == 130, stderr
    line = [x for x in stderr.splitlines() if x.strip()][-1]
    assert line.startswith("interrupted: ") and "of 12 cells finished; rerun the same command to resume" in line
    finished = int(line.split()[1])
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(kept) == finished >= 1 and "Traceback" not in stderr
    for p in (out / "cells").glob("*.json"):
        json.loads(p.read_text())  # every kept cell is whole (written atomically)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_workers_end_when_the_driver_is_killed(atomic, tmp_path):  # noqa: F811
    out = tmp_path / "a"
    proc = _start(atomic, out)
    workers = _wait_for_first_cell(proc, out)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: the workers notice that their parent is gone
    proc.wait(timeout=30)
    _assert_gone(workers, within=5.0)


def test_sigterm_is_an_interrupt_only_inside_the_block():
    from recguard._signals import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------ the last edge cases
def test_a_raising_factory_is_one_line_and_debug_adds_its_traceback(atomic, tmp_path, monkeypatch, capsys):  # noqa: F811
    from recguard.cli import main

    (tmp_path / "boom.py").write_text("def make_victim(num_items, **config):\n    raise RuntimeError('no GPU on this machine')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["audit", "--dataset", str(atomic), "--model", "boom:make_victim", "--attacks", "random", "--out", str(tmp_path / "a")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: boom:make_victim raised RuntimeError: no GPU on this machine (recguard --debug ... prints its traceback)"]
    assert main(["--debug", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: boom:make_victim raised RuntimeError: no GPU on this machine"
    assert err[1].startswith("Traceback") and any("boom.py" in line for line in err) and err[-1].startswith("RuntimeError")


def test_threads_must_be_a_positive_integer(atomic, tmp_path, capsys):  # noqa: F811
    from recguard.audit import make_backend
    from recguard.cli import main
    from recguard.errors import ConfigError

    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="threads: must be a positive integer"):
            make_backend("local", jobs=2, threads=bad)
    assert main(["audit", "--dataset", str(atomic), "--threads", "0", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: threads: must be a positive integer") and "leave it out for the default" in err


def test_a_nul_byte_in_a_csv_is_refused_with_its_line(tmp_path):
    import recguard
    from recguard.errors import DataError

    f = tmp_path / "clicks.csv"
    f.write_bytes(b"user,item\n1,a\n2,b\x00c\n3,d\n")
    with pytest.raises(DataError, match=r"clicks.csv:3: holds a NUL byte"):
        recguard.data.read_csv(f, user_col="user", item_col="item")


def test_an_inject_file_with_unseen_targets_is_warned_about(tmp_path):
    import recguard
    from recguard.audit import AuditSpec, run_audit

    # 30 users over items a..h; the last user's test item "z" appears nowhere else, so no training user reached it
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(30):
        seq = [chr(ord("a") + (u + j) % 8) for j in range(8)] + (["z"] if u == 29 else [])
        rows += [f"u{u}\t{i}\t{t}" for t, i in enumerate(seq)]
    (tmp_path / "toy.inter").write_text("\n".join(rows) + "\n")
    split = recguard.data.load(str(tmp_path / "toy.inter")).split()
    counts = split.train.item_counts()
    unseen = [i for i in range(1, split.train.num_items + 1) if counts[i] == 0]
    assert len(unseen) == 1
    fakes = {f"f{i}": [unseen[0], 1 + i % 8, unseen[0], 1 + (i + 1) % 8] for i in range(3)}
    (tmp_path / "inject.json").write_text(json.dumps({"user_data": fakes, "target_item": unseen}))
    spec = AuditSpec(dataset=str(tmp_path / "toy.inter"), model="gru4rec", model_config={"hidden": 16, "max_len": 12, "epochs": 1},
                     attacks=(), inject=(str(tmp_path / "inject.json"),), seeds=(0,), defenses=("none",), num_targets=1)
    res = run_audit(spec, tmp_path / "a", progress=False)
    assert len(res["warnings"]) == 1 and f"target item(s) {unseen[0]} have no interaction" in res["warnings"][0]
    assert "**Warning:**" in (tmp_path / "a" / "report.md").read_text()
