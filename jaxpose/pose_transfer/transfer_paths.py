"""Up-front checks of `jaxpose transfer`'s file arguments, before anything slow (model load, inference).

Inputs must exist, be regular files and have a supported extension (identity: a mesh, `.obj`/`.ply`;
pose: also a point cloud, `.npy`/`.npz`). The output must have a mesh extension, must not be a
directory, must not be one of the inputs (compared with `os.path.samefile`, so links and `./a.obj`
vs `a.obj` are caught), must not exist unless `overwrite`, and its parent must be a writable
directory or creatable inside one (the nearest existing ancestor is checked; nothing is created
here: `save_mesh` creates the parents when it writes). Every problem raises `TransferPathError`
naming the argument and the path.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from jaxpose.io.mesh import SUPPORTED_EXTENSIONS
from jaxpose.io.points import POINT_EXTENSIONS


class TransferPathError(ValueError):
    """A transfer's input or output path is missing, of an unsupported type, unwritable or would destroy a file."""


@dataclasses.dataclass(frozen=True)
class TransferPaths:
    """Checked paths of one transfer: identity mesh, pose (mesh or point cloud), output mesh."""

    identity: pathlib.Path
    pose: pathlib.Path
    out: pathlib.Path


def check_input(path: str | os.PathLike, role: str, extensions: tuple[str, ...]) -> pathlib.Path:
    """`path` as a Path if it is an existing regular file with one of `extensions`; else TransferPathError."""
    path = pathlib.Path(path)
    if path.suffix.lower() not in extensions:
        supported = ", ".join(extensions)
        raise TransferPathError(f"{role} {path}: unsupported extension {path.suffix!r} (supported: {supported})")
    if not path.exists():
        raise TransferPathError(f"{role} {path}: file does not exist")
    if not path.is_file():
        raise TransferPathError(f"{role} {path}: not a regular file")
    return path


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
    """`path` or its nearest ancestor that exists (the current directory for a relative path's root)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return pathlib.Path.cwd()


def check_output(path: str | os.PathLike, inputs: tuple[pathlib.Path, ...], *, overwrite: bool = False) -> pathlib.Path:
    """`path` as a Path if a mesh can be written there without destroying anything; else TransferPathError."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise TransferPathError(f"output {path}: is a directory; give a mesh file name such as {path / 'out.obj'}")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise TransferPathError(
            f"output {path}: unsupported mesh extension {path.suffix!r} (supported: {', '.join(SUPPORTED_EXTENSIONS)})"
        )
    if path.exists():
        for source in inputs:
            if os.path.samefile(path, source):
                raise TransferPathError(f"output {path}: is the input {source}; refusing to overwrite an input")
        if not overwrite:
            raise TransferPathError(f"output {path}: already exists; pass --overwrite to replace it")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise TransferPathError(f"output {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TransferPathError(f"output {path}: directory {existing} is not writable")
    return path


def check_transfer_paths(identity, pose, out, *, overwrite: bool = False) -> TransferPaths:
    """Check all three paths of a transfer (module docstring); raises `TransferPathError` on the first problem."""
    identity = check_input(identity, "identity mesh", SUPPORTED_EXTENSIONS)
    pose = check_input(pose, "pose", POINT_EXTENSIONS)
    return TransferPaths(identity, pose, check_output(out, (identity, pose), overwrite=overwrite))


__all__ = ["TransferPathError", "TransferPaths", "check_input", "check_output", "check_transfer_paths"]
