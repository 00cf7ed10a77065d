"""Atomic file and directory writes (temp file + rename), output-folder ownership and JSON helpers.

recguard never deletes or replaces anything it did not write itself:

* an *artifact* (a saved victim, SAE or probe) is a folder identified by the format stamp in
  its JSON file; :class:`atomic_directory` replaces one only when it is an artifact of the
  same kind holding nothing but the files recguard writes there, and only with
  ``overwrite=True``;
* an *output folder* (an audit, a probe report, an extraction, ...) carries a marker file
  (:data:`MARKER`) naming its kind; :func:`claim_output_dir` refuses a folder that holds
  anything else.

Files are created with the permissions the user's umask gives (not owner-only, as bare
``tempfile`` would).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError, OutputExistsError

MARKER = ".recguard.json"


# --------------------------------------------------------------------------- permissions
_umask_lock = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else by a set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _chmod_default(path: str | Path, *, directory: bool) -> None:
    """Give a temp file/folder (created 0600/0700 by ``tempfile``) the mode a plain ``open``/``mkdir`` would."""
    try:
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
    except OSError:
        pass


# --------------------------------------------------------------------------- reading
def read_regular_file(path: str | Path, error: type[Exception] = DataError, *, what: str = "file") -> bytes:
    """The bytes of ``path``, which must be a regular file (never a FIFO, device or folder: reading those
    can hang or make no sense); problems raise ``error`` naming the path."""
    p = Path(path)

    def fail(msg: str) -> Exception:
        return error(msg, path=p) if issubclass(error, DataError) else error(f"{p}: {msg}")

    try:
        st = p.stat()
    except FileNotFoundError:
        raise fail(f"{what} not found; check the path") from None
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc})") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise fail(f"expected a {what}, got a directory")
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"expected a regular {what}, got a special file (FIFO, socket or device)")
    try:
        with open(p, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise fail(f"cannot read ({exc.strerror or exc})") from None


def read_json(path: str | Path, error: type[Exception], *, what: str = "JSON file") -> Any:
    """Parse a JSON file (a regular, UTF-8 file); any problem becomes ``error`` naming the file."""
    path = Path(path)
    raw = read_regular_file(path, error, what=what)
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        msg = f"not UTF-8 text (byte {exc.start})"
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except RecursionError:
        msg = "JSON nested too deeply"
    except ValueError as exc:  # e.g. an integer literal too long for Python's int conversion limit
        msg = f"invalid JSON ({exc})"
    if issubclass(error, DataError):
        raise error(msg, path=path)
    raise error(f"{path}: {msg}")


# --------------------------------------------------------------------------- writing
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _chmod_default(tmp, directory=False)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


def atomic_write_arrays(path: str | Path, arrays: dict, metadata: dict[str, str] | None = None) -> None:
    """numpy arrays as a safetensors file, written atomically under a temp name unique to this
    writer (processes sharing a cache may write the same file at once)."""
    import numpy as np
    from safetensors.numpy import save

    atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, to_json(obj))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------- artifacts
@dataclass(frozen=True)
class ArtifactKind:
    """How recguard recognises a folder it saved: the JSON file holding the format stamp, the
    accepted stamps, and every entry it writes in such a folder."""

    name: str
    stamp: str
    formats: tuple[str, ...]
    entries: frozenset[str]


ARTIFACTS = {
    "victim": ArtifactKind("saved victim", "config.json", ("recguard-victim",),
                           frozenset({"config.json", "weights.safetensors", "checkpoints.safetensors"})),
    "sae": ArtifactKind("saved SAE", "sae.json", ("recguard-sae/1",), frozenset({"sae.json", "sae.safetensors"})),
    "probe": ArtifactKind("saved SAE probe", "probe.json", ("recguard-probe/1",),
                          frozenset({"sae.json", "sae.safetensors", "probe.json"})),
}


def format_stamp(folder: Path, stamp: str) -> str | None:
    try:
        obj = json.loads((folder / stamp).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    return fmt if isinstance(fmt, str) else None


def _is_cwd_or_parent(p: Path) -> bool:
    cwd = Path.cwd().resolve()
    return p == cwd or p in cwd.parents


def _list_some(names: list[str], n: int = 3) -> str:
    shown = ", ".join(sorted(names)[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def check_artifact_target(path: str | Path, kind: str, *, overwrite: bool = False) -> Path:
    """Raise :class:`~recguard.errors.OutputExistsError` unless an artifact of ``kind`` may be
    written at ``path``: nothing is there, an empty folder is there, or (with ``overwrite``) an
    artifact of the same kind that holds only what recguard writes. Returns the resolved path.

    Call it before long work (training) so that a bad ``--out`` fails first."""
    spec = ARTIFACTS[kind]
    p = Path(path).resolve()
    if _is_cwd_or_parent(p):
        raise OutputExistsError(f"{path}: refusing to replace the current directory or one of its parents; "
                                f"name a new folder (e.g. {Path(path) / 'model'})")
    if not p.exists() and not p.is_symlink():
        return p
    if not p.is_dir() or p.is_symlink():
        raise OutputExistsError(f"{path}: exists and is not a folder; recguard will not replace it. Choose a new path")
    entries = [e.name for e in p.iterdir()]
    if not entries:
        return p
    fmt = format_stamp(p, spec.stamp)
    if fmt not in spec.formats:
        raise OutputExistsError(f"{path}: exists and is not a {spec.name} written by recguard (it holds {_list_some(entries)}); "
                                "recguard replaces only its own artifacts. Choose a new or empty folder")
    foreign = [e for e in entries if e not in spec.entries]
    if foreign:
        raise OutputExistsError(f"{path}: holds a {spec.name} but also files recguard did not write ({_list_some(foreign)}); "
                                "move them away or choose another folder")
    if not overwrite:
        raise OutputExistsError(f"{path}: already holds a {spec.name}; pass --overwrite (Python: overwrite=True) to replace "
                                "it, or choose another folder")
    return p


class atomic_directory:
    """Context manager that builds an artifact folder under a temporary name and renames it into place.

    >>> with atomic_directory("runs/x", kind="victim") as tmp:  # doctest: +SKIP
    ...     (tmp / "config.json").write_text("{...}")

    The target is checked with :func:`check_artifact_target` before anything is written and
    again before the rename. If the block raises, the temporary folder is removed and the
    target is left untouched.
    """

    def __init__(self, path: str | Path, *, kind: str, overwrite: bool = False):
        self.path = Path(path)
        self.kind = kind
        self.overwrite = overwrite

    def __enter__(self) -> Path:
        self.target = check_artifact_target(self.path, self.kind, overwrite=self.overwrite)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent))
        _chmod_default(self.tmp, directory=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            check_artifact_target(self.target, self.kind, overwrite=self.overwrite)  # changed meanwhile?
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        if self.target.exists():  # our own artifact (or an empty folder): move aside, swap, then remove
            old = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".old", dir=self.target.parent))
            os.replace(self.target, old / "previous")
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)


# --------------------------------------------------------------------------- output folders
OUTPUT_KINDS = {
    "audit": "audit", "probe-report": "probe report", "extraction": "extraction",
    "attack": "poisoned-data export", "debias": "debiasing report", "check-reports": "robustness-check reports",
    "forensics": "forensics report", "comparison": "audit comparison",
}


def _legacy_kind(p: Path, entries: list[str]) -> str | None:
    """Folders written before output markers existed: an audit has spec.json and cells/."""
    if "spec.json" in entries and (p / "cells").is_dir():
        return "audit"
    return None


def claim_output_dir(path: str | Path, kind: str, *, overwrite: bool = False, resumable: bool = False) -> Path:
    """Make ``path`` a folder that recguard may write ``kind`` output into, or raise
    :class:`~recguard.errors.OutputExistsError` without touching anything.

    Accepted: a missing or empty folder (it gets the marker file), or a folder that already
    carries the marker of this ``kind`` when the output resumes there (``resumable``, e.g. an
    audit) or when ``overwrite`` allows replacing the earlier output. A folder holding anything
    else is refused."""
    label = OUTPUT_KINDS[kind]
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{path}: exists and is not a folder; choose a new folder for the {label}")
    if p.is_dir():
        entries = [e.name for e in p.iterdir()]
        if [e for e in entries if e != MARKER]:  # a folder holding only the marker counts as empty
            found = None
            info = None
            if MARKER in entries:
                try:
                    info = json.loads((p / MARKER).read_text(encoding="utf-8"))
                except (OSError, ValueError, RecursionError):
                    info = None
                if isinstance(info, dict) and info.get("format") == "recguard-output":
                    found = info.get("kind")
            else:
                found = _legacy_kind(p, entries)
            if found is None:
                raise OutputExistsError(f"{path}: exists and holds files recguard did not write ({_list_some(entries)}); "
                                        f"recguard writes a {label} only into a new or empty folder or one of its own")
            if found != kind:
                raise OutputExistsError(f"{path}: holds a recguard {OUTPUT_KINDS.get(found, found)}, not a {label}; choose another folder")
            if not (resumable or overwrite):
                raise OutputExistsError(f"{path}: already holds a recguard {label}; pass --overwrite (Python: overwrite=True) "
                                        "to replace it, or choose another folder")
            if MARKER in entries:
                return p
    p.mkdir(parents=True, exist_ok=True)
    from ._version import __version__

    atomic_write_json(p / MARKER, {"format": "recguard-output", "kind": kind, "recguard_version": __version__})
    return p


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True
