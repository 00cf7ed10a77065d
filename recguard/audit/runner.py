"""Runs an audit: plans its cells, skips the finished ones, has a backend compute the rest,
and builds the reports from the cells' results.

Every finished cell is written atomically to ``OUT/cells/`` by this (driver) process as soon
as it arrives, so an interrupted audit loses nothing that finished, whichever backend ran
it. ``OUT/spec.json`` records the audit; resuming into a folder whose spec differs in
anything that changes results is refused (the grid's extent — attacks, budgets, defenses,
seeds, injected files, controls — may grow or shrink: every cell is keyed by all it depends
on). One audit per folder at a time (``OUT/.lock``).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .._io import atomic_write_json, claim_output_dir, read_json
from .._signals import sigterm_as_interrupt
from ..errors import ArtifactError, AuditInterrupted, ConfigError
from .backends import Backend, make_backend
from .cells import Cell, CellResult, plan
from .compute import ArtifactStore, load_split, preflight, provenance
from .report import write_reports
from .results import FORMAT, build_results
from .spec import GRID_KEYS, AuditSpec

__all__ = ["run_audit", "rerender", "check_resume", "load_results", "preflight"]

# what a folder may hold that an audit wrote (removed by force_new, never anything else)
_OWN = ("cells", "models", "results.json", "report.md", "report.html", "spec.json")


def check_resume(spec: AuditSpec, out: Path, *, force_new: bool = False) -> None:
    """Refuse to resume an audit whose recorded spec differs in anything that changes results;
    ``force_new`` instead discards what the earlier audit wrote in ``out``."""
    recorded = out / "spec.json"
    if not recorded.exists():
        return
    old = read_json(recorded, ArtifactError, what="audit spec")
    if not isinstance(old, dict):
        raise ArtifactError(f"{recorded}: not an audit spec; use a new --out folder")
    new = spec.to_dict()
    differ = sorted(k for k in set(old) | set(new) if k not in GRID_KEYS and old.get(k) != new.get(k))
    if not differ:
        return
    if not force_new:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ[:4]) + ("; ..." if len(differ) > 4 else "")
        raise ConfigError(f"{out} holds an audit with different {', '.join(differ)} ({shown}); resuming would mix two "
                          "audits. Use a new --out folder, or --force-new to discard the earlier audit's cells there",
                          param="--out")
    for name in _OWN:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _finished(spec: AuditSpec, cell: Cell, out: Path, store: ArtifactStore) -> CellResult | None:
    """The cell's recorded result, if it is complete (a clean cell also needs its saved model)."""
    f = cell.file(out)
    if not f.exists():
        return None
    if cell.kind == "clean" and not store.complete(store.clean_dir(spec, cell.seed)):
        return None
    if cell.kind == "extraction" and not store.complete(store.extracted_dir(spec, cell.seed), "extraction.json"):
        return None
    return CellResult.read(f)


def load_results(spec: AuditSpec, out: str | Path) -> list[CellResult]:
    """The finished cells of ``spec`` in ``out`` (what ``recguard report`` re-renders from)."""
    out = Path(out)
    found = []
    for phase in plan(spec):
        for cell in phase:
            if cell.file(out).exists():
                found.append(CellResult.read(cell.file(out)))
    return found


def run_audit(
    spec: AuditSpec,
    out: str | Path,
    *,
    progress: bool | None = None,
    command: list[str] | None = None,
    on_cell: Callable[[CellResult], None] | None = None,
    jobs: int = 1,
    backend: str | Backend | None = None,
    force_new: bool = False,
) -> dict:
    """Run (or resume) the audit and write ``results.json``, ``report.md`` and ``report.html``.

    Args:
        backend: ``"sequential"``, ``"local"``, ``"ray"`` or a :class:`~recguard.audit.backends.Backend`
            (e.g. ``RayBackend(address="auto")``); default: sequential for ``jobs=1``, local otherwise.
        jobs: worker processes of the local backend (each gets its share of torch's threads).
        force_new: start over in a folder that holds a different audit (its cells are discarded).
        on_cell: called with each cell's :class:`CellResult`, finished earlier or now.

    A cell's numbers do not depend on the backend, only on the torch threads per cell
    (floating-point reduction order). Returns the results dictionary (also ``OUT/results.json``).
    """
    from ._lock import AuditLock

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"must be a positive integer, got {jobs!r}", param="jobs")
    if not isinstance(spec, AuditSpec):
        raise ConfigError(f"expected an AuditSpec, got {type(spec).__name__}", param="spec")
    backend = make_backend(backend, jobs=jobs)
    out = Path(out)
    claim_output_dir(out, "audit", resumable=True)
    with AuditLock(out):
        return _run(spec, out, backend, progress=progress, command=command, on_cell=on_cell, force_new=force_new)


def _run(spec: AuditSpec, out: Path, backend: Backend, *, progress, command, on_cell, force_new: bool) -> dict:

    t_start = time.perf_counter()
    preflight(spec, load_split(spec))
    check_resume(spec, out, force_new=force_new)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "spec.json", spec.to_dict())
    phases = plan(spec)
    store = ArtifactStore(out)
    results: dict[str, CellResult] = {}
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, phases)), desc=f"audit ({backend.name})", unit="cell", file=sys.stderr, dynamic_ncols=True)

    def done(cell: Cell, result: CellResult, *, write: bool = True) -> None:
        if write:
            atomic_write_json(cell.file(out), result.to_dict())  # compute() keys every result by its cell
        results[cell.name] = result
        if on_cell:
            on_cell(result)
        if bar is not None:
            bar.set_postfix_str(cell.label)
            bar.update(1)

    try:
        with sigterm_as_interrupt():  # a scheduler's or container's stop ends the workers like Ctrl-C does
            for phase in phases:
                todo = []
                for cell in phase:
                    prior = _finished(spec, cell, out, store)
                    if prior is None:
                        todo.append(cell)
                    else:
                        done(cell, prior, write=False)
                clean = {r.seed: r for r in results.values() if r.kind == "clean"}
                backend.run(spec, todo, out=out, clean=clean, on_done=done)
    except KeyboardInterrupt:
        raise AuditInterrupted(len(results), sum(map(len, phases))) from None
    finally:
        if bar is not None:
            bar.close()
    cells = [results[c.name] for phase in phases for c in phase]
    results_d = build_results(spec, cells, {**provenance(command, spec.model), "execution": backend.describe()},
                              wall_time_s=time.perf_counter() - t_start)
    write_reports(results_d, out)
    return results_d


def rerender(out: str | Path) -> dict:
    """Rebuild ``results.json``, ``report.md`` and ``report.html`` from the audit's cells
    (``OUT/spec.json`` + ``OUT/cells/``), or re-render the reports from ``OUT/results.json``
    when the cells are not there (a results file copied on its own)."""
    out = Path(out)
    spec_file = out / "spec.json"
    p = out / "results.json"
    if spec_file.exists() and (out / "cells").is_dir():
        raw = read_json(spec_file, ArtifactError, what="audit spec")
        try:
            spec = AuditSpec.from_dict(raw, source=str(spec_file))
        except ConfigError as exc:
            raise ArtifactError(str(exc)) from None
        cells = load_results(spec, out)
        if not any(c.kind == "clean" for c in cells):
            raise ArtifactError(f"{out / 'cells'}: no finished cell of this audit; run `recguard audit --out {out}` first")
        old = {}
        if p.exists():
            prev = read_json(p, ArtifactError)
            old = prev if isinstance(prev, dict) and prev.get("format") == FORMAT else {}
        if "provenance" not in old:  # results.json lost: this machine's, marked as a rebuild
            old["provenance"] = {**provenance(["recguard", "report", str(out)], spec.model), "rebuilt_from_cells": True}
        results = build_results(spec, cells, old["provenance"], wall_time_s=float(old.get("wall_time_s", 0.0)))
        write_reports(results, out)
        return results
    if not p.exists():
        raise ArtifactError(f"{p}: not found; run `recguard audit --out {out}` first")
    results = read_json(p, ArtifactError)
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise ArtifactError(f"{p}: not a recguard audit result (no \"format\": \"{FORMAT}\")")
    try:
        write_reports(results, out, with_json=False)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ArtifactError(f"{p}: malformed audit result ({type(exc).__name__}: {exc}); run `recguard audit` with the same "
                            "--out again to rebuild it from its cells") from None
    return results
