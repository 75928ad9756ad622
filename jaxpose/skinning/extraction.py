"""Mesh extraction from an occupancy function: dense grid queries in chunks, then marching cubes.

`extract_mesh(occupancy_fn, bounds, resolution=128)` evaluates `occupancy_fn` ((N, 3) points in
metres → (N,) logits, positive inside) on a `resolution`³ grid spanning the axis-aligned box `bounds`
(lo (3,), hi (3,)), in chunks of `chunk_size` points under one `jax.lax.map` (one compilation per
grid/chunk shape), and runs scikit-image's marching cubes at `level` (0 for logits). Optionally only
the largest connected component is kept (SNARF removes disconnected parts). The pieces are public:
`grid_points`, `evaluate_on_grid`, `marching_cubes_mesh`, `largest_component`.

INS extracts its pose-independent canonical shape once (`INS.canonical_occupancy`); SNARF must
extract per target pose (its canonical shape depends on the pose).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import marching_cubes


def _check_bounds(bounds) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = (np.asarray(b, np.float64).reshape(-1) for b in bounds)
    if lo.shape != (3,) or hi.shape != (3,):
        raise ValueError(f"bounds must be (lo (3,), hi (3,)), got shapes {lo.shape} and {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ValueError(f"bounds need finite lo < hi on every axis, got lo={lo}, hi={hi}")
    return lo, hi


def _check_resolution(resolution) -> int:
    if not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    return int(resolution)


def grid_points(bounds, resolution: int) -> np.ndarray:
    """Grid nodes (R³, 3) float32 in x-major (i, j, k) order, R = resolution, spanning `bounds` inclusively."""
    lo, hi = _check_bounds(bounds)
    r = _check_resolution(resolution)
    axes = [np.linspace(lo[d], hi[d], r) for d in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float32)


def evaluate_on_grid(occupancy_fn: Callable[[jax.Array], jax.Array], points: jax.Array, chunk_size: int = 65_536) -> jax.Array:
    """`occupancy_fn` on points (N, 3) in chunks of `chunk_size` (padded; `jax.lax.map`): values (N,).

    Traceable: call it inside `jax.jit` to compile the whole grid evaluation once.
    """
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    n = points.shape[0]
    chunk = min(int(chunk_size), n)
    pad = (-n) % chunk
    padded = jnp.concatenate([points, jnp.broadcast_to(points[:1], (pad, 3))]) if pad else points
    values = jax.lax.map(occupancy_fn, padded.reshape(-1, chunk, 3))
    if values.shape != (padded.shape[0] // chunk, chunk):
        raise ValueError(f"occupancy_fn must map (n, 3) points to (n,) values, got {values.shape[1:]} for n={chunk}")
    return values.reshape(-1)[:n]


def largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the connected component (through shared vertices) with the most faces; vertices re-indexed."""
    if faces.shape[0] == 0:
        return vertices, faces
    v = vertices.shape[0]
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    adjacency = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(v, v))
    _, labels = connected_components(adjacency, directed=False)
    face_labels = labels[faces[:, 0]]
    keep_label = np.bincount(face_labels).argmax()
    kept_faces = faces[face_labels == keep_label]
    used = np.unique(kept_faces)
    remap = np.full(v, -1, np.int64)
    remap[used] = np.arange(used.size)
    return vertices[used], remap[kept_faces].astype(np.int32)


def marching_cubes_mesh(values, bounds, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of grid values (R, R, R) (x-major, larger = inside) spanning `bounds`.

    Returns vertices (V, 3) float32 metres and faces (F, 3) int32, oriented outwards.
    """
    values = np.array(values, np.float32)  # a writable copy (scikit-image needs one)
    if values.ndim != 3 or len(set(values.shape)) != 1:
        raise ValueError(f"values must be a cubic (R, R, R) grid, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("occupancy grid holds non-finite values")
    if not values.min() < level < values.max():
        raise ValueError(f"the occupancy never crosses level {level} on the grid (range [{values.min():.4g}, "
                         f"{values.max():.4g}]): nothing to extract")
    lo, hi = _check_bounds(bounds)
    spacing = (hi - lo) / (values.shape[0] - 1)
    vertices, faces, _, _ = marching_cubes(values, level=level, spacing=tuple(spacing))
    # scikit-image winds the triangles of a larger-inside field inwards; flip them to face outwards.
    return (vertices + lo).astype(np.float32), np.ascontiguousarray(faces[:, ::-1], np.int32)


def extract_mesh(
    occupancy_fn: Callable[[jax.Array], jax.Array],
    bounds,
    resolution: int = 128,
    *,
    level: float = 0.0,
    chunk_size: int = 65_536,
    keep_largest_component: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Mesh (vertices (V, 3) float32, faces (F, 3) int32) of {x : occupancy_fn(x) > level} in `bounds`."""
    points = jnp.asarray(grid_points(bounds, resolution))
    values = jax.jit(lambda p: evaluate_on_grid(occupancy_fn, p, chunk_size))(points)
    r = _check_resolution(resolution)
    vertices, faces = marching_cubes_mesh(np.asarray(values).reshape(r, r, r), bounds, level)
    if keep_largest_component:
        vertices, faces = largest_component(vertices, faces)
    return vertices, faces


__all__ = ["evaluate_on_grid", "extract_mesh", "grid_points", "largest_component", "marching_cubes_mesh"]
