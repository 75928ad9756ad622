"""An exclusive advisory lock on a training workdir, held for the whole run.

Two runs writing one workdir corrupt each other's checkpoints and logs, so the second one must fail
at once, before touching any file. The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on `workdir/.lock`:
the operating system releases it when the holder exits for any reason (including SIGKILL), so a lock
left by a crashed run is never stale. The file holds the holder's host and pid, for the message.
On platforms without `fcntl` (Windows) the lock is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import warnings
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another process holds the workdir's lock."""


def _holder(path: pathlib.Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "unknown process"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Hold the lock of `workdir` (created if needed) for the `with` block; raises WorkdirLockedError
    naming the holder when another process has it."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    if fcntl is None:  # pragma: no cover
        warnings.warn("no fcntl on this platform: concurrent runs on one workdir are not prevented", stacklevel=3)
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirLockedError(
                f"workdir {workdir} is in use by another run ({_holder(path)}); wait for it to finish or use "
                "another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
