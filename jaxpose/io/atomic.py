"""Atomic file writes: a reader sees either the old file or the complete new one, never half of it.

Every file jaxpose writes goes through `atomic_open`: the data goes to a hidden temporary file next
to the target, `.{name}.{pid}.{random}.tmp`, which is fsynced and renamed over the target.

**Permissions.** A new file gets the mode an ordinary `open(path, "w")` would give it, `0o666 & ~umask`
(0o644 under the usual umask 0o022): the temporary file is created with `os.open(..., 0o666)` and the
kernel applies the umask (and any default ACL of the directory). The umask is therefore never read or
changed here (`os.umask` is process-global; setting it to read it races with other threads). An
overwritten file keeps its existing permission bits (`st_mode & 0o7777`).

**Left-over temporary files.** A process killed between creating and renaming its temporary file
(`kill -9`, power loss) leaves it behind. `remove_stale_temp_files(directory)` deletes those whose pid
(in the name) is no longer a live process on this host, and temporary files of the older naming
without a pid (`.{name}.{random}.tmp`, written by jaxpose before pids were added) once they are more
than `LEGACY_TEMP_MAX_AGE_S` (one hour) old.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
import time
from collections.abc import Iterator
from typing import IO

import numpy as np

NEW_FILE_MODE = 0o666  # before the umask, like open()
_TEMP_SUFFIX = ".tmp"
_RANDOM_HEX_CHARS = 12  # distinguishes the new naming from tempfile.mkstemp's 8 random characters
_NAME_MAX_BYTES = 255
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{%d}\.tmp$" % _RANDOM_HEX_CHARS)
# tempfile.mkstemp(prefix=".{name}.", suffix=".tmp"): 8 characters of tempfile's alphabet.
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
LEGACY_TEMP_MAX_AGE_S = 3600.0


def _temp_name(target_name: str, pid: int) -> str:
    """`.{name}.{pid}.{12 hex}.tmp`, the name cut so the whole stays within 255 bytes (NAME_MAX)."""
    tail = f".{pid}.{secrets.token_hex(_RANDOM_HEX_CHARS // 2)}{_TEMP_SUFFIX}"
    budget = _NAME_MAX_BYTES - 1 - len(tail.encode())
    name = target_name.encode("utf-8", "surrogateescape")[:budget].decode("utf-8", "ignore") or "_"
    return f".{name}{tail}"


def _create_temp_file(path: pathlib.Path) -> tuple[int, pathlib.Path]:
    """Create `path`'s temporary file exclusively with mode 0o666 & ~umask; returns (fd, its path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp_path = path.parent / _temp_name(path.name, os.getpid())
        try:
            return os.open(tmp_path, flags, NEW_FILE_MODE), tmp_path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file next to {path}")


def _existing_mode(path: pathlib.Path) -> int | None:
    """Permission bits (st_mode & 0o7777) of the file at `path`, or None if there is none."""
    try:
        return os.stat(path).st_mode & 0o7777
    except (FileNotFoundError, NotADirectoryError):
        return None


def _unlink_quietly(path: pathlib.Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file next to `path`; on clean exit fsync it and rename it over `path`.

    On an exception the temporary file is removed and `path` is left untouched. The parent directory
    is created if needed. `mode` must be a write mode ("w", "wb", "wt"). File modes: see the module
    docstring (new files 0o666 & ~umask, overwritten files keep theirs).
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open only supports write modes, got {mode!r}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = _create_temp_file(path)
    try:
        try:
            keep = _existing_mode(path)
            if keep is not None:
                os.fchmod(fd, keep)
            # closefd=False: the descriptor stays ours to close, also when open() itself fails
            with open(fd, mode, closefd=False, **kwargs) as handle:
                yield handle
                handle.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    except BaseException:
        _unlink_quietly(tmp_path)
        raise


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process on this host (True when unsure, so a file is kept)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    if pid <= 0:
        return False  # 0 and negative numbers address process groups, never a writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, ValueError):
        return False  # not a possible pid
    return True


def _is_stale(entry: os.DirEntry, now: float) -> bool:
    """Whether `entry` is an abandoned temporary file of `atomic_open` (see the module docstring)."""
    match = _TEMP_NAME.match(entry.name)
    if match is not None:
        return not _pid_alive(int(match["pid"]))
    if _LEGACY_TEMP_NAME.match(entry.name) is not None:
        return now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_MAX_AGE_S
    return False


def remove_stale_temp_files(directory: str | os.PathLike) -> list[pathlib.Path]:
    """Delete abandoned `atomic_open` temporary files directly in `directory` (not in subdirectories).

    Removed: `.{name}.{pid}.{random}.tmp` whose pid is not a live process on this host (a file from
    another host sharing the directory over a network filesystem cannot be told apart: run this only
    where no other host writes), and legacy `.{name}.{random}.tmp` files older than one hour. Files of
    live writers, other files and symlinks are never touched. Returns the removed paths (sorted); a
    missing directory gives [].
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    now = time.time()
    removed = []
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False) or not _is_stale(entry, now):
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # renamed or removed meanwhile by its writer or another cleaner
            removed.append(pathlib.Path(entry.path))
    return sorted(removed)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)


def atomic_save_npz(path: str | os.PathLike, compressed: bool = True, **arrays) -> None:
    """`numpy.savez[_compressed]` to `path` atomically (no `.npz` suffix is appended)."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as handle:
        save(handle, **arrays)
