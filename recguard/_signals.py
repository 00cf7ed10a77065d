"""Stopping cleanly: SIGTERM treated like Ctrl-C, and worker processes that end with their parent.

A job scheduler, a container runtime or ``timeout`` stops a program with SIGTERM, whose default
action ends the process at once: ``finally`` blocks never run, so worker processes outlive it.
:func:`sigterm_as_interrupt` turns SIGTERM into :class:`KeyboardInterrupt` for the duration of a
block, so the same clean-up as for Ctrl-C runs. :func:`exit_with_parent` is for worker processes:
they ignore SIGINT (the driver, which also receives Ctrl-C, stops them itself) and end within a
second when their parent is gone, however it died (even SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

__all__ = ["sigterm_as_interrupt", "keep_sigterm_handler", "exit_with_parent"]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`KeyboardInterrupt` in the main thread (elsewhere,
    where handlers cannot be installed, the block runs unchanged). The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def keep_sigterm_handler() -> Iterator[None]:
    """Restore the SIGTERM handler after a block whose library code installs its own (``ray.init``
    installs one that exits), so an enclosing :func:`sigterm_as_interrupt` keeps working. Only in
    the main thread, where handlers live."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def exit_with_parent(poll_s: float = 0.5) -> None:
    """Make this (worker) process ignore SIGINT and exit (status 143, as if terminated) within
    ``poll_s`` seconds of its parent's death, which a daemon thread notices by the parent id changing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        import time

        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(143)

    threading.Thread(target=watch, name="recguard-exit-with-parent", daemon=True).start()
