"""Where audit cells run: in this process, in local worker processes, or on a Ray cluster.

A backend gets the missing cells of one phase (cells of a phase never depend on each other)
and hands each finished :class:`~recguard.audit.cells.CellResult` to the driver's ``on_done``,
which writes it atomically to ``OUT/cells/``. Only plain data crosses a process boundary:
the spec, the cell and the seed's clean result as dictionaries, and models as the bytes of
their safetensors + JSON files.

- :class:`SequentialBackend` — one cell after another, here.
- :class:`LocalBackend` — ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn``
  context; the machine's threads are shared out between the workers. Workers read and write
  models in ``OUT/models/`` directly.
- :class:`RayBackend` — one Ray task per cell (``num_cpus`` = its threads, ``num_gpus`` = 1 when
  the victim trains on CUDA), retried by Ray up to ``max_retries`` times when its worker dies.
  ``transport="object-store"`` (default) ships the clean victims and extracted surrogates
  that later cells reuse through Ray's object store, so workers need no shared disk; the
  driver also writes them to ``OUT/models/`` so a resume finds them.
  ``transport="shared"`` has workers use ``OUT/models/`` directly (a folder every node mounts
  at the same path).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .._io import atomic_write_bytes
from ..errors import AuditWorkerError, ConfigError, RecguardError
from .cells import Cell, CellResult
from .compute import ArtifactStore, compute, run_task, store_for
from .spec import AuditSpec

__all__ = ["Backend", "SequentialBackend", "LocalBackend", "RayBackend", "make_backend", "BACKENDS", "TRANSPORTS"]

BACKENDS = ("sequential", "local", "ray")
TRANSPORTS = ("object-store", "shared")
OnDone = Callable[[Cell, CellResult], None]


def _check_threads(threads) -> int | None:
    """``threads`` as given (None = the default), or :class:`ConfigError` for anything but a positive integer."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"must be a positive integer of torch threads per cell, got {threads!r}; leave it out for the "
                          "default (the machine's threads shared out between local workers, 1 per Ray task)", param="threads")
    return threads


def _one_line(cell: Cell, exc: BaseException) -> AuditWorkerError:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    kind = "" if isinstance(exc, RecguardError) else f"{type(exc).__name__}: "
    return AuditWorkerError(f"cell {cell.label} failed: {kind}{msg} (finished cells are kept; run the audit again to resume)")


class Backend:
    """Runs the cells of one phase. ``clean`` maps a seed to its clean result."""

    name = "backend"

    def run(self, spec: AuditSpec, cells: Sequence[Cell], *, out: Path, clean: dict[int, CellResult], on_done: OnDone) -> None:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.name}


class SequentialBackend(Backend):
    """Every cell in this process, in plan order; clean models stay loaded between cells."""

    name = "sequential"

    def __init__(self, threads: int | None = None):
        self.threads = _check_threads(threads)

    def run(self, spec, cells, *, out, clean, on_done):
        if self.threads:
            import torch

            torch.set_num_threads(int(self.threads))
        store = store_for(out)
        for cell in cells:
            try:
                result = compute(spec, cell, store, clean.get(cell.seed))
            except RecguardError:
                raise
            except Exception as exc:  # named with its cell, one line
                raise _one_line(cell, exc) from exc
            on_done(cell, result)


def _init_worker(threads: int) -> None:
    import torch

    from .._signals import exit_with_parent

    exit_with_parent()  # never outlive the driver, however it ends; Ctrl-C is the driver's to handle
    torch.set_num_threads(threads)


def _threads_each(jobs: int, threads: int | None) -> int:
    if threads:
        return int(threads)
    import torch

    return max(1, torch.get_num_threads() // jobs)


class LocalBackend(Backend):
    """``jobs`` worker processes on this machine (``spawn`` context: a fresh interpreter each,
    so a script that starts an audit with this backend needs ``if __name__ == "__main__":``)."""

    name = "local"

    def __init__(self, jobs: int = 2, threads: int | None = None):
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise ConfigError(f"must be a positive integer, got {jobs!r}", param="jobs")
        self.jobs, self.threads = jobs, _check_threads(threads)

    def describe(self) -> dict:
        return {"backend": self.name, "jobs": self.jobs, "threads_per_worker": _threads_each(self.jobs, self.threads)}

    def run(self, spec, cells, *, out, clean, on_done):
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        if not cells:
            return
        threads = _threads_each(self.jobs, self.threads)
        ex = ProcessPoolExecutor(max_workers=min(self.jobs, len(cells)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,))
        spec_d = spec.to_dict()
        pending = {}
        ok = False
        try:
            for c in cells:
                cd = clean.get(c.seed)
                pending[ex.submit(run_task, spec_d, c.to_dict(), None if cd is None else cd.to_dict(), str(out))] = c
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    cell = pending.pop(fut)
                    try:
                        result = CellResult.from_dict(fut.result())
                    except BrokenProcessPool as exc:
                        raise AuditWorkerError(f"a worker process died while computing cell {cell.label} (killed, or out of "
                                               "memory); finished cells are kept: run the audit again to resume") from exc
                    except Exception as exc:  # a worker's error, recguard's or not: one line naming the cell
                        raise _one_line(cell, exc) from None
                    on_done(cell, result)
            ok = True
        finally:
            if not ok:  # an error or Ctrl-C: drop queued cells, stop the running ones
                for fut in pending:
                    fut.cancel()
                for p in list(getattr(ex, "_processes", {}).values()):
                    p.terminate()
            ex.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- Ray
def _model_files(root: Path, directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _materialise(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        dst = root / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dst, data)


def _ray_cell(spec_d: dict, cell_d: dict, clean_d: dict | None, root: str | None, threads: int, *artifacts: dict):
    """A Ray task: compute one cell. With ``root=None`` (object-store transport) it works in a
    scratch folder filled with ``artifacts`` and returns the model files it produced."""
    scratch = None
    if root is None:
        scratch = tempfile.mkdtemp(prefix="recguard-cell-")
        for files in artifacts:
            _materialise(Path(scratch), files)
    where = root or scratch
    result = run_task(spec_d, cell_d, clean_d, where, threads)
    produced: dict[str, bytes] = {}
    if scratch is not None:
        spec, cell = AuditSpec.from_dict(spec_d), Cell.from_dict(cell_d)
        store = ArtifactStore(scratch)
        directory = {"clean": lambda: store.clean_dir(spec, cell.seed),
                     "extraction": lambda: store.extracted_dir(spec, cell.seed)}.get(cell.kind)
        if directory is not None:
            produced = _model_files(Path(scratch), directory())
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return result, produced


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'recguard[ray]' (or pip install ray)", param="backend") from None
    return ray


class RayBackend(Backend):
    """One Ray task per cell.

    Args:
        address: ``None`` (a Ray already initialised in this process, else a new local one),
            ``"auto"`` (the cluster this machine belongs to) or ``"ray://host:10001"``.
        threads: CPUs (and torch threads) per cell (default 1).
        max_retries: how often Ray reruns a cell whose worker died.
        transport: ``"object-store"`` or ``"shared"`` (see the module docs).
        runtime_env: passed to ``ray.init`` (e.g. ``{"working_dir": "."}`` so that remote nodes
            import a ``MODULE:FACTORY`` model).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, threads: int | None = None, max_retries: int = 3,
                 transport: str = "object-store", runtime_env: dict | None = None):
        if transport not in TRANSPORTS:
            raise ConfigError(f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}", param="transport")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"must be a non-negative integer, got {max_retries!r}", param="max_retries")
        self.address, self.threads, self.max_retries = address, int(_check_threads(threads) or 1), max_retries
        self.transport, self.runtime_env = transport, runtime_env
        self._refs: dict[tuple, object] = {}
        self._started_here = False  # whether this backend started the (local) Ray it uses
        _import_ray()  # fail now, with how to install it

    def describe(self) -> dict:
        return {"backend": self.name, "address": self.address, "threads_per_cell": self.threads,
                "max_retries": self.max_retries, "transport": self.transport}

    def _ray(self):
        ray = _import_ray()
        if not ray.is_initialized():
            kw = {"runtime_env": self.runtime_env} if self.runtime_env else {}
            from .._signals import keep_sigterm_handler

            try:
                with keep_sigterm_handler():  # ray.init installs its own SIGTERM exit: keep the audit's clean stop
                    ray.init(address=self.address, log_to_driver=False, **kw)
            except ValueError as exc:  # e.g. a ray:// address without the client's dependencies
                if "pip install" in str(exc) or "requires" in str(exc):
                    raise ConfigError(f"Ray cannot reach {self.address!r}: {' '.join(str(exc).split())}; install what the "
                                      "documented addresses need with pip install 'recguard[ray]'", param="address") from None
                raise
            self._started_here = self.address is None
        return ray

    def _artifact(self, ray, spec: AuditSpec, out: Path, kind: str, seed: int):
        """The object-store reference of a seed's model files (put from ``OUT/models`` when this
        driver did not receive them from a task, e.g. on resume)."""
        key = (kind, seed)
        if key not in self._refs:
            store = ArtifactStore(out)
            d = store.clean_dir(spec, seed) if kind == "clean" else store.extracted_dir(spec, seed)
            if not d.is_dir():
                raise AuditWorkerError(f"{d}: missing; run the audit again to recompute the {kind} model of seed {seed}")
            self._refs[key] = ray.put(_model_files(out, d))
        return self._refs[key]

    def run(self, spec, cells, *, out, clean, on_done):
        if not cells:
            return
        ray = self._ray()
        out = Path(out).resolve()
        gpus = 1 if str(spec.model_config.get("device", "cpu")).startswith("cuda") else 0
        task = ray.remote(_ray_cell).options(num_cpus=self.threads, num_gpus=gpus, max_retries=self.max_retries,
                                             retry_exceptions=False)
        spec_d = spec.to_dict()
        shared = self.transport == "shared"
        pending = {}
        stolen = set(spec.extracted_attacks())
        for c in cells:
            needs = []
            if not shared and c.kind in ("extraction", "control", "poisoned"):
                needs.append(self._artifact(ray, spec, out, "clean", c.seed))
                if c.attack in stolen:
                    needs.append(self._artifact(ray, spec, out, "extraction", c.seed))
            cd = clean.get(c.seed)
            ref = task.remote(spec_d, c.to_dict(), None if cd is None else cd.to_dict(), str(out) if shared else None,
                              self.threads, *needs)
            pending[ref] = c
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        result_d, files = ray.get(ref)
                    except Exception as exc:  # a task's error arrives wrapped by Ray
                        cause = getattr(exc, "cause", None) or exc
                        raise _one_line(cell, cause) from None
                    if files:  # the driver keeps the models too: a resumed audit finds them in OUT/models
                        _materialise(out, files)
                        self._refs[("clean" if cell.kind == "clean" else "extraction", cell.seed)] = ray.put(files)
                    on_done(cell, CellResult.from_dict(result_d))
        finally:
            self._stop(ray, pending)

    def _stop(self, ray, pending: dict) -> None:
        """Cancel the tasks still pending and, when stopped early, shut down the local Ray this backend
        started. A failure while cleaning up is a warning: it never replaces the error or the
        interrupt that stopped the audit (whose exit status the caller relies on)."""
        try:
            for ref in pending:
                ray.cancel(ref, force=True)
            if pending and self._started_here:
                ray.shutdown()
                self._started_here = False
        except Exception as exc:  # Ray's own cleanup errors (e.g. a session folder already gone)
            import warnings

            warnings.warn(f"stopping Ray: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


def make_backend(name: str | Backend | None = None, *, jobs: int = 1, threads: int | None = None, address: str | None = None,
                 max_retries: int | None = None, transport: str | None = None) -> Backend:
    """A backend from its name (the CLI's and TOML's ``backend``): ``sequential``, ``local`` or ``ray``.
    ``None`` picks ``sequential`` for one job and ``local`` for more."""
    if isinstance(name, Backend):
        return name
    _check_threads(threads)
    if name is None:
        name = "sequential" if jobs == 1 else "local"
    if name not in BACKENDS:
        raise ConfigError(f"must be one of {', '.join(BACKENDS)}, got {name!r}", param="backend")
    ray_only = {"--address": address, "--max-retries": max_retries, "--transport": transport}
    given = [k for k, v in ray_only.items() if v is not None]
    if name != "ray" and given:
        raise ConfigError(f"{', '.join(given)} only apply to --backend ray", param=given[0].lstrip("-"))
    if name == "sequential":
        if jobs != 1:
            raise ConfigError(f"the sequential backend runs one cell at a time; got jobs={jobs} (use --backend local)", param="jobs")
        return SequentialBackend(threads)
    if name == "local":
        return LocalBackend(jobs, threads)
    return RayBackend(address, threads=threads, max_retries=3 if max_retries is None else max_retries,
                      transport=transport or "object-store")
