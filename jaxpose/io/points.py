"""Point clouds from files: vertices only, faces (if any) ignored.

`load_points(path)` reads an (N, 3) float32 array of points, in the file's order, from

- `.obj`  the `v` lines (first three numbers of each; faces, normals and texture lines are ignored),
- `.ply`  the `vertex` element (a PLY with or without faces),
- `.npy`  an (N, 3) numeric array,
- `.npz`  an (N, 3) array named `vertices` or `points`, or the archive's only array.

NumPy files are read without pickles (`jaxpose.io.arrays`); a file holding pickled Python objects, or
that is not a NumPy file at all, raises `PointsError` saying so, never advising to allow pickles. Every problem (unsupported
extension, unreadable or corrupt file, no points, wrong shape, non-numeric or NaN/Inf values) raises
`PointsError` (a `MeshError`, hence a ValueError) naming the file; a missing file raises
FileNotFoundError.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxpose.io.arrays import ArrayFileError, NpzArrays, load_npy, open_npz
from jaxpose.io.mesh import MeshError, read_obj_text

POINT_EXTENSIONS = (".obj", ".ply", ".npy", ".npz")
NPZ_NAMES = ("vertices", "points")
"""Array names looked up, in this order, in an `.npz` archive with more than one array."""


class PointsError(MeshError):
    """A point-cloud file or array is unreadable or invalid; the message names the source and the problem."""


def validate_points(points, source: str = "points") -> np.ndarray:
    """Check an (N, 3) array of points; returns it as float32 (same order and units).

    Raises `PointsError` (prefixed with `source`) for a non-numeric dtype, a shape other than (N, 3)
    with N >= 1, or NaN/Inf coordinates (the message gives the count and the first bad point).
    """
    points = np.asarray(points)
    if points.dtype == np.bool_ or not np.issubdtype(points.dtype, np.number) or np.iscomplexobj(points):
        raise PointsError(f"{source}: points must be real numbers, got dtype {points.dtype}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointsError(f"{source}: points must have shape (N, 3), got {points.shape}")
    if points.shape[0] == 0:
        raise PointsError(f"{source}: no points (shape {points.shape})")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise PointsError(
            f"{source}: {int(bad.sum())} points contain NaN or Inf (first: point {first} = {points[first].tolist()})"
        )
    return points.astype(np.float32)


def _obj_vertices(path: pathlib.Path) -> np.ndarray:
    """(V, 3) float64 from the `v` lines of an OBJ file (first three numbers of each line)."""
    text = read_obj_text(path, PointsError)
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line[:2] not in ("v ", "v\t"):
            continue
        tokens = line.split()[1:4]
        try:
            if len(tokens) != 3:
                raise ValueError
            rows.append([float(token) for token in tokens])
        except ValueError:
            raise PointsError(f"{path}: line {number} ({line.strip()!r}) is not a `v x y z` vertex line") from None
    if not rows:
        raise PointsError(f"{path}: no points (no `v` lines)")
    return np.asarray(rows, np.float64)


def _ply_vertices(path: pathlib.Path) -> np.ndarray:
    """(V, 3) vertices of a PLY file's `vertex` element (faces, if present, are ignored)."""
    from trimesh.exchange import ply  # local: trimesh takes ~0.6 s to import and only PLY files need it

    try:
        with open(path, "rb") as handle:
            kwargs = ply.load_ply(handle, skip_materials=True)
    except Exception as exc:  # trimesh raises many types on malformed input
        raise PointsError(f"{path}: corrupt PLY ({type(exc).__name__}: {exc})") from None
    vertices = kwargs.get("vertices")
    if vertices is None or len(vertices) == 0:
        raise PointsError(f"{path}: no points (empty vertex element)")
    return np.asarray(vertices)


def _npz_member(path: pathlib.Path, archive: NpzArrays) -> np.ndarray:
    """The points array of an open `.npz` archive: `vertices`, `points`, or its only array."""
    names = archive.files
    name = next((n for n in NPZ_NAMES if n in names), names[0] if len(names) == 1 else None)
    if name is None:
        raise PointsError(
            f"{path}: .npz must hold an array named {' or '.join(map(repr, NPZ_NAMES))} (or exactly one array), "
            f"found {names}"
        )
    return archive[name]


def _numpy_points(path: pathlib.Path, ext: str) -> np.ndarray:
    """The array of a `.npy` file or the points array of a `.npz` archive, read without pickles
    (`jaxpose.io.arrays`: its ArrayFileError, which never advises loading pickles, becomes a PointsError)."""
    try:
        if ext == ".npy":
            return load_npy(path, what="point file")
        with open_npz(path, what="point file") as archive:
            return _npz_member(path, archive)
    except ArrayFileError as error:
        raise PointsError(str(error)) from None


def load_points(path: str | os.PathLike) -> np.ndarray:
    """Points (N, 3) float32 (file units, metres for jaxpose data) from `.obj`/`.ply`/`.npy`/`.npz`.

    Vertex order is the file's. Mesh faces are ignored, so a point cloud (a PLY/OBJ without faces) and
    a mesh of any polygon type are both accepted. Raises FileNotFoundError for a missing file and
    `PointsError` naming the file for everything else (see the module docstring).
    """
    path = pathlib.Path(path)
    ext = path.suffix.lower()
    if ext not in POINT_EXTENSIONS:
        raise PointsError(
            f"{path}: unsupported point-cloud extension {path.suffix!r} (supported: {', '.join(POINT_EXTENSIONS)})"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: point file does not exist")
    if not path.is_file():
        raise PointsError(f"{path}: not a regular file")
    try:
        if ext == ".obj":
            points = _obj_vertices(path)
        elif ext == ".ply":
            points = _ply_vertices(path)
        else:
            points = _numpy_points(path, ext)
    except OSError as exc:
        raise PointsError(f"{path}: unreadable ({exc})") from None
    return validate_points(points, source=str(path))


__all__ = ["NPZ_NAMES", "POINT_EXTENSIONS", "PointsError", "load_points", "validate_points"]
