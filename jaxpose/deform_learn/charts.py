"""Per-part UV charts of any skinned body: DensePose-style (I, U, V) labels and the chart → vertex search.

DensePose labels a surface point by a part index I (24 parts) and chart coordinates (U, V) ∈ [0, 1]² on
that part's UV chart; SMPL's charts are not available for other bodies, so this module builds charts of
its own for any `BodyModel` (**reconstruction**, jaxpose's design; the paper uses DensePose's charts):

- parts: `argmax` of the skinning weights (one part per joint; 24 for SMPL-style bodies, as DensePose);
- chart of part j: a cylindrical parametrisation of the part's rest-pose (template) vertices about an
  axis line through their centroid. Axis direction: the bone to the joint's single child where it has
  exactly one (limbs, spine, neck), otherwise (root, branching chest, head, hands, feet) the principal
  axis of the part's vertices, oriented away from the joint. U = normalised position along the axis,
  0 at the part's first vertex and 1 at its last (points beyond are clipped to [0, 1]); V = angle about
  the axis / 2π ∈ [0, 1), measured from the body's forward (+z) direction orthogonalised against the
  axis (or +y where the axis is along z).
- `nearest_chart_vertex`: the paper's pixel → vertex search, the nearest vertex of the same part in
  the chart. Chart distances are measured in metres, (ΔU · length)² + (ΔV · circumference)² with ΔV
  wrapped to [−½, ½] (**reconstruction**: plain (U, V) distances would favour the long axis of
  elongated parts).
- `pixel_labels`: (I, U, V) of every rasterised pixel from the rasteriser's face-id / barycentric
  buffers: I = part of the pixel's argmax-barycentric vertex, (U, V) = chart coordinates of the
  interpolated rest-pose surface point. `exact_vertex` (that argmax-barycentric vertex) is the
  exactness check for the chart search.

A cylindrical chart is not injective on non-convex parts (hands, feet, the head's ears): two surface
points can share (U, V). The measured agreement of the chart search with the exact vertex is stated
in tests/test_deform_learn_data.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.render.rasterize import Fragments, nearest_vertex_ids

_AXIS_EPS = 1e-9


@dataclasses.dataclass(frozen=True)
class PartCharts:
    """Cylindrical UV charts of a body's parts (a JAX pytree; P parts, V vertices; lengths in metres).

    vertex_part (V,) int32 part of every vertex (argmax skinning weight);
    vertex_uv (V, 2) chart coordinates (U, V) of every template vertex in its own part's chart;
    origin (P, 3) a point on each part's axis (centroid of the part's template vertices);
    axis (P, 3) unit axis directions; reference (P, 3) unit direction of V = 0 (orthogonal to axis);
    binormal (P, 3) = axis × reference (direction of V = ¼);
    u_range (P, 2) (min, max) of the template vertices' axial coordinate (metres from `origin`);
    metric (P, 2) (length, circumference) in metres that scale (ΔU, ΔV) in the nearest-vertex search.
    """

    vertex_part: jax.Array
    vertex_uv: jax.Array
    origin: jax.Array
    axis: jax.Array
    reference: jax.Array
    binormal: jax.Array
    u_range: jax.Array
    metric: jax.Array

    @property
    def num_parts(self) -> int:
        return self.origin.shape[0]


jax.tree_util.register_dataclass(PartCharts)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), _AXIS_EPS)


def _part_axis(points: np.ndarray, joints: np.ndarray, parents: tuple[int, ...], part: int) -> np.ndarray:
    """Unit axis direction of `part` (see the module docstring)."""
    children = [c for c, p in enumerate(parents) if p == part]
    if len(children) == 1:
        bone = joints[children[0]] - joints[part]
        if np.linalg.norm(bone) > 1e-6:
            return _unit(bone)
    centred = points - points.mean(axis=0, keepdims=True)
    if len(points) < 2 or not np.any(centred):
        return np.asarray([0.0, 1.0, 0.0])
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    away = points.mean(axis=0) - joints[part]
    if float(direction @ away) < 0.0:
        direction = -direction
    return _unit(direction)


def _cylinder(points, origin, axis, reference, binormal):
    """Axial coordinate (N,), angle fraction V ∈ [0, 1) (N,) and radius (N,) of points about axis lines."""
    rel = points - origin
    along = jnp.sum(rel * axis, axis=-1)
    x = jnp.sum(rel * reference, axis=-1)
    y = jnp.sum(rel * binormal, axis=-1)
    v = jnp.mod(jnp.arctan2(y, x) / (2.0 * jnp.pi), 1.0)
    return along, v, jnp.hypot(x, y)


def part_charts(body) -> PartCharts:
    """Build the `PartCharts` of a `BodyModel` from its template, rest joints and skinning weights.

    Parts without any vertex (possible for arbitrary bodies) get a valid dummy chart and never match.
    Host-side NumPy in float64; the result holds float32 arrays (jnp default dtype).
    """
    template = np.asarray(body.v_template, np.float64)
    joints = np.asarray(body.j_template, np.float64)
    weights = np.asarray(body.weights, np.float64)
    parents = tuple(int(p) for p in body.parents)
    if weights.shape != (template.shape[0], len(parents)):
        raise ValueError(f"body.weights must have shape (V, J) = {(template.shape[0], len(parents))}, got {weights.shape}")
    vertex_part = np.argmax(weights, axis=1).astype(np.int32)
    num_parts = len(parents)
    origin, axis, reference, binormal = (np.zeros((num_parts, 3)) for _ in range(4))
    u_range, metric = np.zeros((num_parts, 2)), np.ones((num_parts, 2))
    for part in range(num_parts):
        points = template[vertex_part == part]
        if len(points) == 0:
            points = joints[part][None]
        origin[part] = points.mean(axis=0)
        axis[part] = _part_axis(points, joints, parents, part)
        forward = np.asarray([0.0, 0.0, 1.0]) if abs(axis[part][2]) < 0.9 else np.asarray([0.0, 1.0, 0.0])
        reference[part] = _unit(forward - (forward @ axis[part]) * axis[part])
        binormal[part] = np.cross(axis[part], reference[part])
        rel = points - origin[part]
        along = rel @ axis[part]
        radius = np.linalg.norm(rel - along[:, None] * axis[part][None], axis=1)
        u_range[part] = (along.min(), max(along.max(), along.min() + 1e-6))
        metric[part] = (u_range[part][1] - u_range[part][0], max(2.0 * np.pi * radius.mean(), 1e-6))
    charts = PartCharts(
        vertex_part=jnp.asarray(vertex_part),
        vertex_uv=jnp.zeros((template.shape[0], 2)),
        origin=jnp.asarray(origin, jnp.result_type(float)),
        axis=jnp.asarray(axis, jnp.result_type(float)),
        reference=jnp.asarray(reference, jnp.result_type(float)),
        binormal=jnp.asarray(binormal, jnp.result_type(float)),
        u_range=jnp.asarray(u_range, jnp.result_type(float)),
        metric=jnp.asarray(metric, jnp.result_type(float)),
    )
    uv = chart_coordinates(charts, jnp.asarray(template, jnp.result_type(float)), charts.vertex_part)
    return dataclasses.replace(charts, vertex_uv=uv)


def chart_coordinates(charts: PartCharts, rest_points, parts) -> jax.Array:
    """(U, V) of rest-pose (template-frame) points in the charts of the given parts.

    Args:
      charts: `PartCharts`.
      rest_points: (..., 3) points in the body's rest (template) frame, metres.
      parts: (...) int part index of every point; negative entries (background) give (0, 0).

    Returns:
      (..., 2) chart coordinates, U ∈ [0, 1] (clipped), V ∈ [0, 1).
    """
    rest_points = jnp.asarray(rest_points)
    parts = jnp.asarray(parts, jnp.int32)
    if rest_points.shape[-1:] != (3,) or rest_points.shape[:-1] != parts.shape:
        raise ValueError(f"rest_points must have shape parts.shape + (3,) = {parts.shape + (3,)}, got {rest_points.shape}")
    safe = jnp.clip(parts, 0, charts.num_parts - 1)
    along, v, _ = _cylinder(rest_points, charts.origin[safe], charts.axis[safe], charts.reference[safe], charts.binormal[safe])
    low, high = charts.u_range[safe, 0], charts.u_range[safe, 1]
    u = jnp.clip((along - low) / (high - low), 0.0, 1.0)
    uv = jnp.stack([u, v], axis=-1)
    return jnp.where((parts >= 0)[..., None], uv, 0.0)


def exact_vertex(faces, face_id, barycentric) -> jax.Array:
    """(...) int32 vertex of the visible face with the largest barycentric weight; −1 on background.

    Args:
      faces: (F, 3) int vertex indices.
      face_id: (...) int face index per pixel, −1 on background (e.g. (H, W) from `rasterize`).
      barycentric: (..., 3) barycentric weights of `faces[face_id]`.
    """
    face_id = jnp.asarray(face_id, jnp.int32)
    barycentric = jnp.asarray(barycentric)
    if barycentric.shape != face_id.shape + (3,):
        raise ValueError(f"barycentric must have shape face_id.shape + (3,) = {face_id.shape + (3,)}, got {barycentric.shape}")
    fragments = Fragments(face_id=face_id, barycentric=barycentric, depth=None, mask=face_id >= 0)
    return nearest_vertex_ids(fragments, faces)


def pixel_labels(charts: PartCharts, faces, face_id, barycentric, rest_vertices) -> tuple[jax.Array, jax.Array]:
    """DensePose-style (I, U, V) labels of rasterised pixels.

    Args:
      charts: `PartCharts` of the body.
      faces: (F, 3) int vertex indices.
      face_id: (...) int visible face per pixel, −1 on background (e.g. (H, W)).
      barycentric: (..., 3) perspective-correct barycentrics of `faces[face_id]`.
      rest_vertices: (V, 3) the body's rest template (`body.v_template`), the frame the charts live in
        (the surface point is identified by face and barycentrics, so this holds for any pose/shape).

    Returns:
      part (...) int32, −1 on background (part of the argmax-barycentric vertex);
      uv (..., 2) chart coordinates of the interpolated rest-pose surface point in that part's chart,
      0 on background.
    """
    face_id = jnp.asarray(face_id, jnp.int32)
    faces = jnp.asarray(faces, jnp.int32)
    vertex = exact_vertex(faces, face_id, barycentric)
    part = jnp.where(vertex >= 0, charts.vertex_part[jnp.maximum(vertex, 0)], -1)
    corners = jnp.asarray(rest_vertices)[faces[jnp.maximum(face_id, 0)]]  # (..., 3, 3)
    rest_point = jnp.sum(jnp.asarray(barycentric)[..., None] * corners, axis=-2)
    return part, chart_coordinates(charts, rest_point, part)


def chart_distance_squared(charts: PartCharts, part, uv_a, uv_b) -> jax.Array:
    """(...) squared metric chart distance (metres²) between (U, V) pairs in the chart of `part` (ΔV wrapped)."""
    part = jnp.clip(jnp.asarray(part, jnp.int32), 0, charts.num_parts - 1)
    delta = jnp.asarray(uv_a) - jnp.asarray(uv_b)
    du = delta[..., 0]
    dv = delta[..., 1] - jnp.round(delta[..., 1])
    scale = charts.metric[part]
    return (du * scale[..., 0]) ** 2 + (dv * scale[..., 1]) ** 2


def nearest_chart_vertex(charts: PartCharts, part, uv) -> jax.Array:
    """The paper's pixel → vertex search: nearest vertex of the same part in the part's chart.

    Args:
      charts: `PartCharts`.
      part: (P,) int part per point (negative: no label).
      uv: (P, 2) chart coordinates.

    Returns:
      (P,) int32 vertex ids; −1 where `part` < 0 or the part has no vertex. Memory O(P · V).
    """
    part = jnp.asarray(part, jnp.int32)
    uv = jnp.asarray(uv)
    if part.ndim != 1 or uv.shape != part.shape + (2,):
        raise ValueError(f"part must have shape (P,) and uv (P, 2), got {part.shape} and {uv.shape}")
    distance = chart_distance_squared(charts, part[:, None], uv[:, None, :], charts.vertex_uv[None, :, :])  # (P, V)
    same = charts.vertex_part[None, :] == part[:, None]
    distance = jnp.where(same, distance, jnp.inf)
    best = jnp.argmin(distance, axis=1).astype(jnp.int32)
    return jnp.where(jnp.any(same, axis=1) & (part >= 0), best, -1)
