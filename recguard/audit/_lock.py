"""One audit per output folder at a time: an advisory lock on ``OUT/.lock`` that names its holder.

The lock is the operating system's (``flock`` on POSIX, ``msvcrt.locking`` on Windows), so it
is released when the holding process ends, even if it crashes: no stale lock is ever left
behind. The file itself stays (removing it would race with a newcomer); what it says about
the holder is rewritten by each one.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import AuditLockedError

LOCK_NAME = ".lock"


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class AuditLock:
    """``with AuditLock(out): ...`` holds the folder or raises :class:`AuditLockedError` at once,
    naming the process that holds it."""

    def __init__(self, out: str | Path):
        self.path = Path(out) / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> AuditLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            try:
                holder = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
            except (OSError, ValueError):
                holder = {}
            os.close(fd)
            who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
                   if holder else "another process")
            raise AuditLockedError(f"{self.path.parent}: another audit is running on this folder ({who}); wait for it to "
                                   "finish (this one would then resume from its cells) or use another --out")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
