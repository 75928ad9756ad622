"""Validated triangle-mesh I/O (OBJ and PLY) that never merges or reorders vertices.

Pose-transfer data relies on vertex i of one mesh being vertex i of every other mesh of the same
topology, so loading uses trimesh with `process=False` / `maintain_order=True` and then checks that the
vertex count equals the count in the file. Every problem (unreadable or corrupt file, empty mesh,
non-triangle faces, out-of-range face indices, NaN/Inf vertices, unsupported extension) raises
`MeshError` (a ValueError) with the file name and the problem; a missing file raises FileNotFoundError.

Writing is atomic (temporary file + rename). OBJ files are written with one vectorised formatting call
(`v x y z` lines, then 1-based `f a b c` lines, as NPT's data); PLY files are binary little-endian
float32/int32 (exact round trip).
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import NamedTuple

import numpy as np

from jaxpose.io.atomic import atomic_open

SUPPORTED_EXTENSIONS = (".obj", ".ply")


class MeshError(ValueError):
    """A mesh file or mesh array is missing, unreadable or invalid; the message names file and problem."""


class Mesh(NamedTuple):
    """A triangle mesh: vertices (V, 3) float32 (file units, metres for jaxpose data), faces (F, 3) int32."""

    vertices: np.ndarray
    faces: np.ndarray


def _extension(path: pathlib.Path) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise MeshError(f"{path}: unsupported mesh extension {path.suffix!r} (supported: {', '.join(SUPPORTED_EXTENSIONS)})")
    return ext


def validate_mesh(vertices, faces, source: str = "mesh") -> Mesh:
    """Check and normalise mesh arrays; returns `Mesh(vertices float32 (V,3), faces int32 (F,3))`.

    Raises `MeshError` (prefixed with `source`) for wrong shapes, an empty mesh (no vertices or no
    faces), non-finite vertices, non-integer or out-of-range face indices.
    """
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise MeshError(f"{source}: vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or (faces.size and faces.shape[1] != 3):
        raise MeshError(f"{source}: faces must be triangles of shape (F, 3), got {faces.shape}")
    if vertices.shape[0] == 0:
        raise MeshError(f"{source}: empty mesh (no vertices)")
    if faces.shape[0] == 0:
        raise MeshError(f"{source}: empty mesh (no faces)")
    if not np.issubdtype(vertices.dtype, np.number):
        raise MeshError(f"{source}: vertices must be numeric, got dtype {vertices.dtype}")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise MeshError(f"{source}: {int(bad.sum())} vertices contain NaN or Inf (first: vertex {first} = {vertices[first].tolist()})")
    if not np.issubdtype(faces.dtype, np.integer):
        if not np.issubdtype(faces.dtype, np.number) or not np.all(np.mod(faces, 1) == 0):
            raise MeshError(f"{source}: face indices must be integers, got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    num_vertices = vertices.shape[0]
    out_of_range = (faces < 0) | (faces >= num_vertices)
    if out_of_range.any():
        row = int(np.argmax(out_of_range.any(axis=1)))
        raise MeshError(
            f"{source}: face indices out of range [0, {num_vertices}): face {row} = {faces[row].tolist()} "
            f"({int(out_of_range.any(axis=1).sum())} bad faces)"
        )
    return Mesh(vertices.astype(np.float32), faces.astype(np.int32))


def _scan_obj(text: str, path: pathlib.Path) -> tuple[int, np.ndarray]:
    """Pre-scan an OBJ text (trimesh silently triangulates polygons and wraps bad indices).

    Returns (number of `v` lines, corner count (F,) of every face line). Raises MeshError for
    non-integer face indices, index 0, positive indices beyond the vertex count, faces with fewer
    than 3 corners. Faces are numbered from 0 in the order of the `f` lines.
    """
    lines = text.splitlines()
    num_v = sum(1 for line in lines if line[:2] in ("v ", "v\t"))
    face_lines = [line[2:] for line in lines if line[:2] in ("f ", "f\t")]
    corner_tokens = [line.split() for line in face_lines]
    arities = np.fromiter((len(tokens) for tokens in corner_tokens), dtype=np.int64, count=len(corner_tokens))
    if arities.size and arities.min() < 3:
        face = int(np.argmax(arities < 3))
        raise MeshError(f"{path}: face {face} ({face_lines[face].strip()!r}) has {arities[face]} corners (need 3)")
    flat = [token.split("/", 1)[0] for tokens in corner_tokens for token in tokens]
    try:
        indices = np.array(flat, dtype=np.int64)
    except ValueError:
        bad = next(token for token in flat if not token.lstrip("+-").isdigit())
        raise MeshError(f"{path}: face index {bad!r} is not an integer") from None
    face_of_corner = np.repeat(np.arange(len(arities)), arities)
    invalid = (indices == 0) | (indices > num_v) | (indices < -num_v)
    if invalid.any():
        corner = int(np.argmax(invalid))
        face = int(face_of_corner[corner])
        raise MeshError(
            f"{path}: face {face} ({face_lines[face].strip()!r}) has index {indices[corner]} out of range "
            f"(OBJ indices are 1-based; the file has {num_v} vertices)"
        )
    return num_v, arities


TRIANGULATE_HINT = (
    "Pass triangulate=True (Python: load_mesh(path, triangulate=True)) or --triangulate (command line: "
    "jaxpose transfer) to split polygons into triangles (fan triangulation; face order may change)."
)
"""How to accept polygon faces, in both the Python keyword and the command-line flag."""


def _polygon_error(path: pathlib.Path, detail: str) -> MeshError:
    """The MeshError for polygon faces met without `triangulate=True`; names the file and both remedies."""
    return MeshError(f"{path}: non-triangle faces ({detail}); jaxpose meshes must be triangle meshes. {TRIANGULATE_HINT}")


def read_obj_text(path: pathlib.Path, error: type[Exception] = MeshError) -> str:
    """The text of an OBJ file; `error` (naming the file) for binary data or text that is not UTF-8."""
    data = path.read_bytes()
    if b"\x00" in data:
        raise error(f"{path}: corrupt OBJ (binary data / NUL bytes in a text format)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: corrupt OBJ (not UTF-8 text: {exc})") from None


def _load_obj(path: pathlib.Path, triangulate: bool) -> tuple[np.ndarray, np.ndarray]:
    import trimesh  # local: trimesh takes ~0.6 s to import and only the OBJ/PLY readers need it

    text = read_obj_text(path)
    num_v, arities = _scan_obj(text, path)
    if num_v == 0:
        raise MeshError(f"{path}: empty mesh (no `v` lines)")
    if arities.size == 0:
        raise MeshError(f"{path}: empty mesh (no `f` lines)")
    polygons = int(np.count_nonzero(arities != 3))
    if polygons and not triangulate:
        first = int(np.argmax(arities != 3))
        raise _polygon_error(
            path, f"{polygons} of {len(arities)} faces have more than 3 corners, up to {arities.max()}; first: face {first}"
        )
    try:
        mesh = trimesh.load(io.StringIO(text), file_type="obj", process=False, maintain_order=True, force="mesh")
    except Exception as exc:  # trimesh raises many types on malformed input
        raise MeshError(f"{path}: corrupt OBJ ({type(exc).__name__}: {exc})") from None
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if vertices.shape[0] != num_v:
        raise MeshError(
            f"{path}: the OBJ reader produced {vertices.shape[0]} vertices for {num_v} `v` lines "
            "(vertices split by texture/normal seams); jaxpose needs one vertex per `v` line"
        )
    return vertices, faces


def _load_ply(path: pathlib.Path, triangulate: bool) -> tuple[np.ndarray, np.ndarray]:
    from trimesh.exchange import ply  # local: trimesh is slow to import (see _load_obj)
    from trimesh.geometry import triangulate_quads

    try:
        with open(path, "rb") as handle:
            kwargs = ply.load_ply(handle, skip_materials=True)
    except Exception as exc:
        raise MeshError(f"{path}: corrupt PLY ({type(exc).__name__}: {exc})") from None
    raw = kwargs.get("metadata", {}).get("_ply_raw", {})
    vertices = kwargs.get("vertices")
    if vertices is None or len(vertices) == 0:
        raise MeshError(f"{path}: empty mesh (no vertices)")
    num_raw_faces = int(raw["face"]["length"]) if "face" in raw else 0
    faces = kwargs.get("faces")
    if faces is None or num_raw_faces == 0:
        raise MeshError(f"{path}: empty mesh (no faces)")
    faces = np.asarray(faces)
    # trimesh triangulates quads/mixed polygons on load: a face count or width that differs from
    # the file's face records reveals polygons.
    is_triangles = faces.ndim == 2 and faces.shape[1] == 3 and faces.shape[0] == num_raw_faces
    if not is_triangles:
        if not triangulate:
            raise _polygon_error(path, f"{num_raw_faces} face records do not all have 3 corners")
        if faces.ndim == 2 and faces.shape[1] == 4:
            faces = triangulate_quads(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise MeshError(f"{path}: could not triangulate the polygon faces (got faces of shape {faces.shape})")
    return np.asarray(vertices), faces


def load_mesh(path: str | os.PathLike, *, triangulate: bool = False) -> Mesh:
    """Load a triangle mesh from an `.obj` or `.ply` file, preserving the file's vertex order.

    Returns `Mesh(vertices (V, 3) float32, faces (F, 3) int32)` with 0-based faces.
    Raises FileNotFoundError if `path` does not exist, and `MeshError` naming the file for an
    unsupported extension, an unreadable/corrupt file, an empty mesh, faces with more than 3 corners
    (unless `triangulate=True`, which fan-splits them and may reorder faces), out-of-range face
    indices, or NaN/Inf vertex coordinates.
    """
    path = pathlib.Path(path)
    ext = _extension(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: mesh file does not exist")
    if not path.is_file():
        raise MeshError(f"{path}: not a regular file")
    try:
        loader = _load_obj if ext == ".obj" else _load_ply
        vertices, faces = loader(path, triangulate)
    except OSError as exc:
        raise MeshError(f"{path}: unreadable ({exc})") from None
    return validate_mesh(vertices, faces, source=str(path))


def format_obj(vertices: np.ndarray, faces: np.ndarray, precision: int = 6) -> str:
    """OBJ text: one `v x y z` line per vertex (fixed-point, `precision` decimals), then 1-based `f` lines."""
    vertex_line = f"v %.{precision}f %.{precision}f %.{precision}f\n"
    vertex_text = (vertex_line * len(vertices)) % tuple(np.asarray(vertices, np.float64).ravel().tolist())
    face_text = ("f %d %d %d\n" * len(faces)) % tuple((np.asarray(faces, np.int64) + 1).ravel().tolist())
    return vertex_text + face_text


def _ply_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment jaxpose\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    records = np.empty(len(faces), dtype=[("count", "u1"), ("indices", "<i4", (3,))])
    records["count"] = 3
    records["indices"] = faces
    return header.encode("ascii") + np.ascontiguousarray(vertices, "<f4").tobytes() + records.tobytes()


def save_mesh(path: str | os.PathLike, vertices, faces, *, precision: int = 6) -> None:
    """Atomically write a triangle mesh to `.obj` (text, `precision` decimals) or `.ply` (binary, exact).

    vertices (V, 3) float, faces (F, 3) int 0-based. The arrays are validated first (`MeshError`
    naming `path` for NaN/Inf, out-of-range faces, empty meshes, wrong shapes). OBJ coordinates are
    rounded to `precision` decimals (metres: 1e-6 m by default); PLY stores float32 exactly.
    """
    path = pathlib.Path(path)
    ext = _extension(path)
    mesh = validate_mesh(vertices, faces, source=str(path))
    if ext == ".obj":
        if not 0 <= precision <= 12:
            raise ValueError(f"precision must be in [0, 12], got {precision}")
        with atomic_open(path, "w", encoding="ascii", newline="\n") as handle:
            handle.write(format_obj(mesh.vertices, mesh.faces, precision))
    else:
        with atomic_open(path, "wb") as handle:
            handle.write(_ply_bytes(mesh.vertices, mesh.faces))


__all__ = [
    "Mesh", "MeshError", "SUPPORTED_EXTENSIONS", "TRIANGULATE_HINT", "format_obj", "load_mesh", "save_mesh", "validate_mesh",
]
