"""Generalised winding number of a triangle mesh: an inside test that tolerates small holes.

For a closed, consistently oriented (outward normals) mesh the winding number w(p) is 1 inside, 0
outside and 1/2 on the surface. It is the sum of the signed solid angles Omega_f(p) that the triangles
subtend at p, divided by 4 pi; each solid angle uses the Van Oosterom-Strackee formula

    tan(Omega / 2) = a . (b x c) / (|a||b||c| + (a . b)|c| + (b . c)|a| + (c . a)|b|),

with a, b, c the triangle corners relative to p. A hole of solid angle Omega_h seen from p changes
w(p) by at most Omega_h / 4 pi, so with the 0.5 threshold a point is still classified correctly while
the holes it "sees" cover less than half the sphere around it: points deep inside a body mesh with a
few missing triangles keep w ~ 1, points within about a hole's radius of the hole may flip. This is
what makes it a drop-in replacement for kaolin's `check_sign` on registration meshes.

Memory is bounded: points are processed in chunks of `point_chunk` (a `lax.map`), and for each chunk
the faces are accumulated in chunks of `face_chunk` (a `lax.scan`), so the largest temporary is
O(point_chunk * face_chunk). Padding (points at the origin, degenerate triangles whose solid angle is
exactly 0) makes every chunk the same shape, so one compiled program serves any P and F that round up
to the same chunk counts.

Far-field acceleration (`far_field_ratio=beta`, off by default): faces are grouped into spatially
compact clusters of `face_chunk` faces (Morton order of their centroids) and points into compact
chunks (Morton order). A cluster whose centre is farther than beta x its radius from every point of a
chunk contributes its dipole term N_k . (c_k - p) / |c_k - p|^3 (N_k = sum of area-weighted face
normals, c_k the area-weighted centroid; error O((r/d)^2) relative to the cluster's solid angle, as in
Barill et al. 2018's fast winding numbers) instead of face-by-face solid angles; near clusters are
exact. The branch is a `lax.cond` per (point chunk, cluster), so only near clusters cost P x C.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _check_inputs(points, vertices, faces) -> tuple[jax.Array, jax.Array, np.ndarray]:
    points = jnp.asarray(points)
    vertices = jnp.asarray(vertices)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (P, 3), got {points.shape}")
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if not jnp.issubdtype(points.dtype, jnp.floating):
        points = points.astype(jnp.float32)
    if not jnp.issubdtype(vertices.dtype, jnp.floating):
        vertices = vertices.astype(jnp.float32)
    faces_np = np.asarray(faces)
    if faces_np.ndim != 2 or faces_np.shape[1] != 3 or not np.issubdtype(faces_np.dtype, np.integer):
        raise ValueError(f"faces must be an integer array of shape (F, 3), got {faces_np.dtype} {faces_np.shape}")
    if faces_np.size and (faces_np.min() < 0 or faces_np.max() >= vertices.shape[0]):
        raise ValueError(
            f"faces index vertices out of range [0, {vertices.shape[0]}): min {faces_np.min()}, max {faces_np.max()}"
        )
    return points, vertices, faces_np


def _check_chunk(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def triangle_solid_angles(points: jax.Array, triangles: jax.Array) -> jax.Array:
    """Signed solid angle (steradians) of every triangle seen from every point.

    points (P, 3), triangles (F, 3, 3) corner coordinates -> (P, F). Positive when the triangle's
    right-hand-rule normal points away from the point. A degenerate triangle gives exactly 0; a point
    lying on a triangle gives 0 for that triangle (atan2(0, 0) = 0).
    """
    # Written per coordinate on (P, F) arrays rather than on (P, F, 3): XLA fuses this into one
    # elementwise loop, about twice as fast on CPU as the vector form.
    px, py, pz = points[:, 0, None], points[:, 1, None], points[:, 2, None]
    corners = [[triangles[None, :, k, i] for i in range(3)] for k in range(3)]
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = [(x - px, y - py, z - pz) for x, y, z in corners]
    la = jnp.sqrt(ax * ax + ay * ay + az * az)
    lb = jnp.sqrt(bx * bx + by * by + bz * bz)
    lc = jnp.sqrt(cx * cx + cy * cy + cz * cz)
    det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
    denom = (
        la * lb * lc
        + (ax * bx + ay * by + az * bz) * lc
        + (bx * cx + by * cy + bz * cz) * la
        + (cx * ax + cy * ay + cz * az) * lb
    )
    return 2.0 * jnp.arctan2(det, denom)


@functools.partial(jax.jit, static_argnames=("point_chunk", "face_chunk"))
def _winding_chunked(points: jax.Array, triangles: jax.Array, *, point_chunk: int, face_chunk: int) -> jax.Array:
    """points (Cp * point_chunk, 3), triangles (Cf * face_chunk, 3, 3) -> (Cp * point_chunk,)."""
    point_chunks = points.reshape(-1, point_chunk, 3)
    face_chunks = triangles.reshape(-1, face_chunk, 3, 3)

    def one_point_chunk(chunk_points):
        def add_faces(total, chunk_triangles):
            return total + jnp.sum(triangle_solid_angles(chunk_points, chunk_triangles), axis=1), None

        total, _ = jax.lax.scan(add_faces, jnp.zeros(point_chunk, points.dtype), face_chunks)
        return total

    return (jax.lax.map(one_point_chunk, point_chunks) / (4.0 * jnp.pi)).reshape(-1)


def _pad_rows(x: jax.Array, multiple: int) -> jax.Array:
    pad = (-x.shape[0]) % multiple
    if pad == 0:
        return x
    return jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)], axis=0)


def _bucketed_rows(num_rows: int, chunk: int) -> int:
    """Rows after padding to whole chunks, with the chunk count rounded up to at most 4 significant
    bits (<= 12.5% waste), so varying point counts (e.g. per-frame label sets) reuse few compilations."""
    chunks = -(-num_rows // chunk)
    step = 1 << max(0, chunks.bit_length() - 4)
    return -(-chunks // step) * step * chunk


def winding_number(
    points: jax.Array,
    vertices: jax.Array,
    faces,
    *,
    point_chunk: int = 256,
    face_chunk: int = 4096,
    far_field_ratio: float | None = None,
) -> jax.Array:
    """Generalised winding number of the mesh (vertices, faces) at each query point.

    Args:
      points: (P, 3) query points, same units as `vertices` (metres for bodies).
      vertices: (V, 3) mesh vertices.
      faces: (F, 3) integer triangles; outward normals by the right-hand rule give w = +1 inside.
      point_chunk, face_chunk: chunk sizes; the largest temporary holds point_chunk * face_chunk
        triangle-point pairs (a few floats each). They change the summation order only (float
        round-off), never the result beyond that.
      far_field_ratio: None (exact, default) or beta > 1: clusters of `face_chunk` faces farther than
        beta x their radius from a point chunk use their dipole approximation (module docstring).
        beta = 3 with face_chunk = 128 agrees with the exact labels on the body meshes (tests) at a
        fraction of the cost on large meshes.

    Returns:
      (P,) winding numbers in the dtype of the inputs (float32 unless x64 inputs are given):
      ~1 inside, ~0 outside, 1/2 on the surface; inside-out meshes give negative values.
    """
    points, vertices, faces_np = _check_inputs(points, vertices, faces)
    point_chunk = _check_chunk(point_chunk, "point_chunk")
    face_chunk = _check_chunk(face_chunk, "face_chunk")
    num_points = points.shape[0]
    dtype = jnp.result_type(points.dtype, vertices.dtype)
    if num_points == 0:
        return jnp.zeros((0,), dtype)
    if faces_np.shape[0] == 0:
        return jnp.zeros((num_points,), dtype)
    point_chunk = min(point_chunk, num_points)
    face_chunk = min(face_chunk, faces_np.shape[0])
    if far_field_ratio is not None:
        if not (np.isfinite(far_field_ratio) and far_field_ratio > 1.0):
            raise ValueError(f"far_field_ratio must be None or a finite number > 1, got {far_field_ratio!r}")
        return _winding_number_far_field(points, vertices, faces_np, float(far_field_ratio), point_chunk, face_chunk, dtype)
    triangles = vertices.astype(dtype)[jnp.asarray(faces_np)]  # (F, 3, 3)
    padded_points = _pad_rows(points.astype(dtype), _bucketed_rows(num_points, point_chunk))
    padded_triangles = _pad_rows(triangles, face_chunk)  # zero triangles: solid angle exactly 0
    return _winding_chunked(padded_points, padded_triangles, point_chunk=point_chunk, face_chunk=face_chunk)[:num_points]


def _morton_order(points: np.ndarray) -> np.ndarray:
    """Indices sorting points (N, 3) along a 3-D Morton (Z-order) curve, 10 bits per axis."""
    lo, hi = points.min(0), points.max(0)
    q = ((points - lo) / np.maximum(hi - lo, 1e-12) * 1023).astype(np.int64)
    code = np.zeros(len(points), np.int64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> bit) & 1) << (3 * bit + axis)
    return np.argsort(code, kind="stable")


def _face_clusters(triangles: np.ndarray, cluster_size: int):
    """Morton-ordered clusters: triangles (K, C, 3, 3), centres (K, 3), radii (K,), dipoles (K, 3); float64."""
    order = _morton_order(triangles.mean(axis=1))
    tri = triangles[order]
    pad = (-len(tri)) % cluster_size
    if pad:  # zero-area triangles on an existing corner: solid angle 0, radius not inflated
        tri = np.concatenate([tri, np.repeat(tri[-1:, :1], 3, axis=1).repeat(pad, axis=0)])
    tri = tri.reshape(-1, cluster_size, 3, 3)
    cross = 0.5 * np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # (K, C, 3)
    area = np.linalg.norm(cross, axis=-1)
    centroid = tri.mean(axis=2)
    total = area.sum(axis=1, keepdims=True)
    weights = np.where(total > 0, area / np.where(total > 0, total, 1.0), 1.0 / cluster_size)
    centres = np.einsum("kc,kci->ki", weights, centroid)
    radii = np.linalg.norm(tri - centres[:, None, None, :], axis=-1).max(axis=(1, 2))
    return tri, centres, radii, cross.sum(axis=1)


@functools.partial(jax.jit, static_argnames=("point_chunk",))
def _winding_far_field(points, triangles, centres, radii, dipoles, ratio, *, point_chunk: int):
    """points (Cp * point_chunk, 3) Morton-ordered; clusters as `_face_clusters` -> (Cp * point_chunk,)."""

    def one_point_chunk(chunk_points):
        lo, hi = chunk_points.min(axis=0), chunk_points.max(axis=0)

        def add_cluster(total, cluster):
            tri, centre, radius, dipole = cluster
            gap = jnp.linalg.norm(jnp.maximum(jnp.maximum(lo - centre, centre - hi), 0.0))

            def far():
                diff = centre[None, :] - chunk_points
                dist = jnp.linalg.norm(diff, axis=1)
                return jnp.sum(diff * dipole[None, :], axis=1) / (dist * dist * dist)

            def near():
                return jnp.sum(triangle_solid_angles(chunk_points, tri), axis=1)

            return total + jax.lax.cond(gap > ratio * radius, far, near), None

        total, _ = jax.lax.scan(add_cluster, jnp.zeros(point_chunk, points.dtype), (triangles, centres, radii, dipoles))
        return total

    return (jax.lax.map(one_point_chunk, points.reshape(-1, point_chunk, 3)) / (4.0 * jnp.pi)).reshape(-1)


def _winding_number_far_field(points, vertices, faces_np, ratio, point_chunk, face_chunk, dtype):
    points_np = np.asarray(points, np.float64)
    order = _morton_order(points_np)
    sorted_points = points_np[order]
    pad = _bucketed_rows(len(sorted_points), point_chunk) - len(sorted_points)
    if pad:  # repeat the last point: keeps the last chunk's bounding box tight
        sorted_points = np.concatenate([sorted_points, np.repeat(sorted_points[-1:], pad, axis=0)])
    tri, centres, radii, dipoles = _face_clusters(np.asarray(vertices, np.float64)[faces_np], face_chunk)
    values = _winding_far_field(
        *(jnp.asarray(a, dtype) for a in (sorted_points, tri, centres, radii, dipoles)),
        jnp.asarray(ratio, dtype),
        point_chunk=point_chunk,
    )[: len(order)]
    return jnp.zeros(len(order), dtype).at[jnp.asarray(order)].set(values)


def inside(
    points: jax.Array,
    vertices: jax.Array,
    faces,
    threshold: float = 0.5,
    *,
    point_chunk: int = 256,
    face_chunk: int = 4096,
    far_field_ratio: float | None = None,
) -> jax.Array:
    """(P,) bool: winding number > `threshold` (0.5 = the standard inside test).

    Same arguments as `winding_number`. With small holes in the mesh the winding number inside stays
    close to 1 (see the module docstring), so the 0.5 threshold keeps classifying it correctly.
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    values = winding_number(points, vertices, faces, point_chunk=point_chunk, face_chunk=face_chunk, far_field_ratio=far_field_ratio)
    return values > threshold


__all__ = ["inside", "triangle_solid_angles", "winding_number"]
