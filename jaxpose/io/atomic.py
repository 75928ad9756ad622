"""Atomic file writes: a reader sees either the old file or the complete new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import IO

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file next to `path`; on clean exit fsync it and rename it over `path`.

    On an exception the temporary file is removed and `path` is left untouched. The parent directory
    is created if needed. `mode` must be a write mode ("w", "wb", "wt").
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open only supports write modes, got {mode!r}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


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
