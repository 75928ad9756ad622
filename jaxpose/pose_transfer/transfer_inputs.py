"""The inputs of a pose transfer: identity and pose from paths, trimesh objects or arrays; checks; frames.

- Identity: a mesh file (`load_mesh`; faces needed, the output uses them), a trimesh-like object with
  `vertices` and `faces`, or an (N, 3) array (then the output is an array too).
- Pose: a point cloud: any file `load_points` reads (mesh or vertices-only OBJ/PLY, `.npy`, `.npz`), a
  trimesh-like object (`vertices` used, faces ignored), or an (M, 3) array. Its faces are never used.
- Degenerate inputs are refused by name (`DegenerateInputError`): fewer than `MIN_DISTINCT_POINTS`
  distinct points, all points on a line or a plane (rank of the centred points < 3), and an identity
  mesh whose faces have (almost) no area.
- Frames: the models expect y-up metre-scale bodies. `UpAxis` rotates inputs whose up axis is z or x
  to y-up (and the output back); `warn_if_misoriented` warns (`InputWarning`) when a body looks
  like it has another up axis or is not about human-sized; `check_metre_scale` refuses bodies the
  2·tanh output cannot reproduce.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import warnings

import numpy as np

from jaxpose.io.mesh import load_mesh, validate_mesh
from jaxpose.io.points import load_points, validate_points

MIN_DISTINCT_POINTS = 16
FLATNESS_TOLERANCE = 1e-3
"""Points whose smallest principal extent is below this fraction of their largest count as flat."""
MIN_AREA_FRACTION = 1e-9
"""A mesh whose total face area is below this fraction of its squared bbox diagonal has no area."""
MAX_HALF_EXTENT = 2.0
"""Mesh units: the 2·tanh output bound of both models; metre-scale bodies have half-extents ≈ 0.9."""
HUMAN_EXTENT_M = (0.5, 2.5)
"""Largest bbox extent (m) of a plausible human body; outside it `warn_if_misoriented` warns."""
ORIENTATION_MARGIN = 1.25
"""Warn about the up axis when another axis is this many times longer than the declared up axis."""


class DegenerateInputError(ValueError):
    """An input has too few distinct points, is flat (collinear/coplanar) or has zero surface area."""


class InputWarning(UserWarning):
    """An input that is accepted but looks wrong (another up axis, not human-sized)."""


class UpAxis(enum.Enum):
    """The up axis of the input meshes; the models work in y-up. `rotation` maps input to y-up."""

    Y = "y"
    Z = "z"
    X = "x"

    @classmethod
    def parse(cls, value) -> UpAxis:
        """An `UpAxis` from itself or its name ("y", "z", "x"); ValueError naming the choices otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"unknown up axis {value!r}; expected one of {', '.join(a.value for a in cls)}") from None

    @property
    def index(self) -> int:
        """The input coordinate (0 = x, 1 = y, 2 = z) that points up."""
        return "xyz".index(self.value)

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) proper rotation R with R @ up = +y: identity; −90° about x (z-up, facing −y, to y-up,
        facing +z, as Blender's convention maps to jaxpose's); +90° about z (x-up to y-up)."""
        return {
            UpAxis.Y: np.eye(3),
            UpAxis.Z: np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
            UpAxis.X: np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),
        }[self]

    def to_y_up(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 3) in this frame -> the y-up frame (float64)."""
        return np.asarray(points, np.float64) @ self.rotation.T

    def from_y_up(self, points: np.ndarray) -> np.ndarray:
        """Points (N, 3) in the y-up frame -> this frame (float64); inverse of `to_y_up`."""
        return np.asarray(points, np.float64) @ self.rotation


@dataclasses.dataclass(frozen=True)
class Body:
    """An input: vertices (N, 3) float32 in its own frame and units, faces (F, 3) int32 or None, and a
    `source` naming it in messages (the file name, or "identity array" etc.)."""

    vertices: np.ndarray
    faces: np.ndarray | None
    source: str


def _is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def identity_from(value, *, triangulate: bool = False) -> Body:
    """The identity `Body` from a mesh path (`load_mesh`), a trimesh-like mesh or an (N, 3) array.

    Raises MeshError / FileNotFoundError for bad files, and ValueError for an object with vertices but
    no faces (pass its vertex array instead) or anything else.
    """
    if _is_path(value):
        mesh = load_mesh(value, triangulate=triangulate)
        return Body(mesh.vertices, mesh.faces, f"identity mesh {value}")
    if hasattr(value, "vertices"):
        faces = getattr(value, "faces", None)
        if faces is None or len(faces) == 0:
            raise ValueError("the identity object has no faces; pass its (N, 3) vertex array to get an array back")
        mesh = validate_mesh(np.asarray(value.vertices), np.asarray(faces), source="identity mesh object")
        return Body(mesh.vertices, mesh.faces, "identity mesh object")
    return Body(validate_points(value, source="identity array"), None, "identity array")


def pose_from(value) -> Body:
    """The pose `Body` (points only, faces None) from a path (`load_points`), a trimesh-like object or an array."""
    if _is_path(value):
        return Body(load_points(value), None, f"pose {value}")
    if hasattr(value, "vertices"):
        return Body(validate_points(np.asarray(value.vertices), source="pose object"), None, "pose object")
    return Body(validate_points(value, source="pose array"), None, "pose array")


def check_not_degenerate(body: Body) -> None:
    """Raise `DegenerateInputError` naming `body.source` for < 16 distinct points, flat points or zero area."""
    vertices = body.vertices.astype(np.float64)
    distinct = len(np.unique(vertices, axis=0))
    if distinct < MIN_DISTINCT_POINTS:
        raise DegenerateInputError(
            f"{body.source}: only {distinct} distinct points (of {len(vertices)}); a body needs at least "
            f"{MIN_DISTINCT_POINTS}"
        )
    singular = np.linalg.svd(vertices - vertices.mean(axis=0), compute_uv=False)
    if singular[2] <= FLATNESS_TOLERANCE * singular[0]:
        shape = "on a line" if singular[1] <= FLATNESS_TOLERANCE * singular[0] else "in a plane"
        raise DegenerateInputError(f"{body.source}: all points lie {shape} (rank of the centred points < 3); not a 3D body")
    if body.faces is not None:
        corners = vertices[body.faces]
        area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1).sum()
        diagonal = np.linalg.norm(vertices.max(axis=0) - vertices.min(axis=0))
        if area <= MIN_AREA_FRACTION * diagonal**2:
            raise DegenerateInputError(f"{body.source}: the {len(body.faces)} faces have zero total area (degenerate mesh)")


def check_metre_scale(vertices: np.ndarray, name: str) -> None:
    """Raise ValueError if `vertices` (V, 3) reach MAX_HALF_EXTENT from their bbox centre."""
    half_extent = 0.5 * float(np.max(vertices.max(axis=0) - vertices.min(axis=0)))
    if half_extent >= MAX_HALF_EXTENT:
        raise ValueError(
            f"{name} extends {half_extent:.4g} units from its bounding-box centre; the models output coordinates "
            f"in (−{MAX_HALF_EXTENT:g}, {MAX_HALF_EXTENT:g}) (2·tanh) and expect metre-scale meshes (a body is "
            "≈1.7 units tall). Rescale it to metres (e.g. divide millimetres by 1000, centimetres by 100)"
        )


def _principal_axis(vertices: np.ndarray) -> int:
    """The coordinate (0, 1, 2) that dominates the first principal direction of the centred points."""
    centred = vertices - vertices.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return int(np.argmax(np.abs(vt[0])))


def warn_if_misoriented(body: Body, up: UpAxis) -> None:
    """Warn (`InputWarning`) if `body` (in its input frame) looks like it has another up axis than `up`
    (its longest bbox axis, also its principal axis, is `ORIENTATION_MARGIN`× longer than `up`'s), or if
    its largest extent is outside `HUMAN_EXTENT_M`."""
    vertices = body.vertices.astype(np.float64)
    extents = vertices.max(axis=0) - vertices.min(axis=0)
    longest = int(np.argmax(extents))
    described = ", ".join(f"{axis} {extent:.3g}" for axis, extent in zip("xyz", extents))
    if longest != up.index and extents[longest] > ORIENTATION_MARGIN * extents[up.index]:
        if _principal_axis(vertices) == longest:
            axis = "xyz"[longest]
            warnings.warn(
                f"{body.source} looks {axis}-up, not {up.value}-up (bbox extents {described}; principal axis {axis}); "
                f"jaxpose bodies are y-up: if it is {axis}-up pass --up-axis {axis} (Python: up_axis={axis!r}), "
                "else the output is wrong",
                InputWarning, stacklevel=2,
            )  # fmt: skip
    low, high = HUMAN_EXTENT_M
    if not low <= extents[longest] <= high:
        warnings.warn(
            f"{body.source} is {extents[longest]:.3g} units across (bbox extents {described}); a human body is about "
            f"{low:g}-{high:g} m: is it in metres?",
            InputWarning, stacklevel=2,
        )  # fmt: skip


__all__ = [
    "Body", "DegenerateInputError", "InputWarning", "MAX_HALF_EXTENT", "MIN_DISTINCT_POINTS", "UpAxis",
    "check_metre_scale", "check_not_degenerate", "identity_from", "pose_from", "warn_if_misoriented",
]
