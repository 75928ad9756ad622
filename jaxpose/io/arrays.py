"""Reading `.npy` / `.npz` array files without pickles, with errors that name the file.

`numpy.load(..., allow_pickle=False)` refuses pickled data, but its messages advise the user to pass
`allow_pickle=True` (which would execute code from the file) and say nothing about which file or
array was at fault. These helpers check the file's magic bytes first (a zip archive for `.npz`,
`\\x93NUMPY` for `.npy`), open it with `allow_pickle=False`, and turn every failure (not an array
file, truncated, corrupt member, pickled object array, absurd header) into `ArrayFileError`, a
ValueError whose message names the file, the array and the problem, and never suggests loading
pickles.
"""

from __future__ import annotations

import os
import pathlib
import zipfile
import zlib
from collections.abc import Iterable

import numpy as np

_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # local file header; end of central directory (empty zip)
_NPY_MAGIC = b"\x93NUMPY"
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError, OverflowError, TypeError)


class ArrayFileError(ValueError):
    """An `.npy`/`.npz` file is not readable as plain arrays; the message names the file and the problem."""


def _reason(exc: BaseException) -> str:
    """A short description of a NumPy/zip read error, without NumPy's allow_pickle advice."""
    text = str(exc)
    if "allow_pickle" in text or "pickled" in text:
        return "it holds pickled Python objects, which jaxpose never loads"
    if isinstance(exc, MemoryError):
        return "its header declares an array too large for memory"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_magic(path: pathlib.Path, kind: str, what: str) -> None:
    """Raise FileNotFoundError / ArrayFileError unless `path` starts like a `kind` (".npz"/".npy") file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(len(_NPY_MAGIC))
    expected = _ZIP_MAGICS if kind == ".npz" else (_NPY_MAGIC,)
    if any(head.startswith(magic) for magic in expected):
        return
    if not head:
        detail = "the file is empty"
    elif kind == ".npy" and head.startswith(_ZIP_MAGICS):
        detail = "it is a zip archive (.npz), not a single .npy array"
    else:
        detail = f"it starts with {head!r}, not the {'zip' if kind == '.npz' else '.npy'} signature"
    raise ArrayFileError(f"{path}: not a valid {kind} {what} ({detail})")


class NpzArrays:
    """The arrays of an open `.npz` file: `files`, `key in archive`, `archive[key]` -> np.ndarray.

    Use as a context manager (closes the file). Reading a member that is corrupt, truncated, not an
    `.npy` array or a pickled object array raises ArrayFileError naming the file and the member; a
    missing member raises KeyError naming both.
    """

    def __init__(self, archive, path: pathlib.Path, what: str):
        self._archive, self.path, self.what = archive, path, what

    @property
    def files(self) -> list[str]:
        """Member names (without `.npy`)."""
        return list(self._archive.files)

    def __contains__(self, key: str) -> bool:
        return key in self._archive.files

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._archive.files:
            raise KeyError(f"{self.path}: {self.what} has no array {key!r} (has {sorted(self._archive.files)})")
        try:
            value = self._archive[key]
        except _READ_ERRORS as exc:
            raise ArrayFileError(f"{self.path}: array {key!r} of this {self.what} is unreadable ({_reason(exc)})") from None
        if not isinstance(value, np.ndarray):
            raise ArrayFileError(f"{self.path}: member {key!r} of this {self.what} is not an .npy array")
        return value

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> "NpzArrays":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_npz(path: str | os.PathLike, what: str = "array file") -> NpzArrays:
    """Open `path` as an `.npz` of plain arrays (`what` names it in errors, e.g. "body file").

    Raises FileNotFoundError if it is missing and ArrayFileError ("<path>: not a valid .npz <what>
    (...)") if it is not a readable zip of arrays.
    """
    path = pathlib.Path(path)
    _check_magic(path, ".npz", what)
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ArrayFileError(f"{path}: not a valid .npz {what} ({_reason(exc)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ArrayFileError(f"{path}: not a valid .npz {what} (NumPy did not read it as an archive)")
    return NpzArrays(archive, path, what)


def load_npz(path: str | os.PathLike, what: str = "array file", keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """All arrays of an `.npz` (or only `keys`, which must all be present) as a dict, read eagerly.

    Errors as `open_npz`; missing `keys` raise ArrayFileError listing them and the file's arrays.
    """
    with open_npz(path, what) as archive:
        wanted = archive.files if keys is None else list(keys)
        missing = [key for key in wanted if key not in archive]
        if missing:
            raise ArrayFileError(f"{archive.path}: {what} lacks arrays {missing} (has {sorted(archive.files)})")
        return {key: archive[key] for key in wanted}


def load_npy(path: str | os.PathLike, what: str = "array file") -> np.ndarray:
    """The array of an `.npy` file; FileNotFoundError if missing, ArrayFileError naming the file otherwise."""
    path = pathlib.Path(path)
    _check_magic(path, ".npy", what)
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ArrayFileError(f"{path}: not a valid .npy {what} ({_reason(exc)})") from None


__all__ = ["ArrayFileError", "NpzArrays", "load_npy", "load_npz", "open_npz"]
