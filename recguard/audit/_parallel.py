"""Parallel audits: worker processes that compute missing cells of an audit folder.

The parent (``run_audit(..., jobs=N)``) starts N workers with ``python -m
recguard.audit._parallel OUT PHASE THREADS INDEX``, twice: phase ``clean`` trains each seed's
clean model (and the extracted surrogate of the black-box chain), phase ``poisoned`` the
defense controls and the attack × budget × defense cells. A worker takes a cell by creating ``OUT/.jobs/<cell>.claim``
exclusively, so no cell is computed twice and a fast worker simply takes more cells.
Everything passes through the audit folder as JSON and safetensors, like a resumed audit:
nothing is pickled between processes. Cells finished by a worker survive a failure or an
interrupt of the others; the next run resumes from them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .._io import atomic_write_json
from ..errors import AuditWorkerError, RecguardError
from .spec import AuditSpec

JOBS_DIR = ".jobs"


def _claimer(jobs_dir: Path):
    def claim(name: str) -> bool:
        try:
            fd = os.open(jobs_dir / f"{name}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    return claim


def _expected_cells(spec: AuditSpec, out: Path) -> list[Path]:
    from .runner import _cell_file, cell_grid, cell_key, control_grid, poisoned_key

    return ([_cell_file(out, cell_key(spec, "clean", s)) for s in spec.seeds]
            + [_cell_file(out, cell_key(spec, "control", s, defense=d)) for d, s in control_grid(spec)]
            + [_cell_file(out, poisoned_key(spec, *g)) for g in cell_grid(spec)])


def run_workers(spec: AuditSpec, out: Path, jobs: int, *, progress: bool = False) -> None:
    """Compute every missing cell of ``spec`` under ``out`` with ``jobs`` worker processes."""
    import torch

    jobs_dir = out / JOBS_DIR
    shutil.rmtree(jobs_dir, ignore_errors=True)  # claims of an interrupted run
    jobs_dir.mkdir(parents=True)
    threads = max(1, torch.get_num_threads() // jobs)
    expected = _expected_cells(spec, out)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(expected), desc=f"audit ({jobs} workers)", unit="cell", file=sys.stderr, dynamic_ncols=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    # the workers import this very recguard, and a user's model factory from the working directory
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, os.getcwd(), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    try:
        for phase in ("clean", "poisoned"):
            procs = []
            for i in range(jobs):
                log = open(jobs_dir / f"worker{i}_{phase}.log", "wb")
                procs.append((subprocess.Popen([sys.executable, "-m", "recguard.audit._parallel", str(out), phase, str(threads), str(i)],
                                               stdout=log, stderr=subprocess.STDOUT, env=env), log, i))
            try:
                while any(p.poll() is None for p, _, _ in procs):
                    if bar is not None:
                        done = sum(f.exists() for f in expected)
                        if done != bar.n:
                            bar.update(done - bar.n)
                    time.sleep(0.5)
            finally:
                for p, log, _ in procs:
                    if p.poll() is None:
                        p.terminate()
                        p.wait()
                    log.close()
            for p, _, i in procs:
                if p.returncode != 0:
                    err = jobs_dir / f"worker{i}_{phase}.error.json"
                    if err.exists():
                        e = json.loads(err.read_text())
                        raise AuditWorkerError(f"{e['type']}: {e['message']}")
                    tail = (jobs_dir / f"worker{i}_{phase}.log").read_text(errors="replace").strip().splitlines()[-5:]
                    raise AuditWorkerError(f"audit worker {i} ({phase}) exited with status {p.returncode}: " + " | ".join(tail)
                                           + f" (full log: {jobs_dir / f'worker{i}_{phase}.log'})")
        if bar is not None:
            bar.update(sum(f.exists() for f in expected) - bar.n)
    finally:
        if bar is not None:
            bar.close()
    shutil.rmtree(jobs_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    out_s, phase, threads, index = argv if argv is not None else sys.argv[1:]
    out = Path(out_s)
    import torch

    torch.set_num_threads(int(threads))
    from .runner import run_audit

    spec = AuditSpec.from_dict(json.loads((out / "spec.json").read_text()), source=str(out / "spec.json"))
    try:
        run_audit(spec, out, progress=False, _claim=_claimer(out / JOBS_DIR), _phase=phase)
    except RecguardError as exc:  # the parent re-raises it as one clear line
        atomic_write_json(out / JOBS_DIR / f"worker{index}_{phase}.error.json", {"type": type(exc).__name__, "message": str(exc)})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
