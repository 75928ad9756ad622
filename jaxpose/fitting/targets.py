"""Per-vertex 2D targets from a per-pixel displacement field (the refinement method's step 5).

For every covered pixel p of the initial rendering, with face f_p, perspective-correct barycentrics
w_p, predicted displacement d_p and confidence c_p, and for k = 1..3 (scatter-add):

    acc[f_pk]  += w_pk · c_p · d_p        norm[f_pk] += w_pk · c_p

Vertex v is visible when norm_v > τ; its displacement is d̄_v = acc_v / norm_v (the barycentric
interpolation of the per-pixel field onto the vertices, as the method describes) and its target is

    TargetAnchor.VERTEX (default):  t_v = π(v_init) + d̄_v
    TargetAnchor.PIXEL:             t_v = Σ w c (p + d) / Σ w c   (the pixel-centre average)

The two agree up to the spread of the pixels around each vertex (≲ 1 px). VERTEX is exact for the two
reference fields: d = 0 gives t_v = π(v_init), and a constant d shifts every target by d. Pixel centres
are at integer + 0.5 (the rasteriser's convention).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp


class TargetAnchor(enum.Enum):
    """Where a vertex's averaged displacement starts: its own projection, or the pixel centres."""

    VERTEX = "vertex"
    PIXEL = "pixel"


class VertexTargets(NamedTuple):
    """targets (V, 2) pixels (0 where not visible); weights (V,) accumulated pixel weight (norm_v, 0
    where not visible); visible (V,) bool."""

    targets: jax.Array
    weights: jax.Array
    visible: jax.Array


def pixel_centres(height: int, width: int, dtype=jnp.float32) -> jax.Array:
    """(H, W, 2) (u, v) pixel-centre coordinates: column + 0.5, row + 0.5."""
    v, u = jnp.meshgrid(jnp.arange(height, dtype=dtype) + 0.5, jnp.arange(width, dtype=dtype) + 0.5, indexing="ij")
    return jnp.stack([u, v], axis=-1)


def vertex_targets(
    face_id: jax.Array,
    barycentric: jax.Array,
    mask: jax.Array,
    displacement: jax.Array,
    confidence: jax.Array | None,
    faces: jax.Array,
    num_vertices: int,
    threshold: float = 0.5,
    *,
    projected_vertices: jax.Array | None = None,
    anchor: TargetAnchor = TargetAnchor.VERTEX,
) -> VertexTargets:
    """Scatter a displacement field onto the vertices of the rendered mesh.

    Args:
      face_id: (H, W) int face index of each pixel of the initial rendering (−1 on background).
      barycentric: (H, W, 3) perspective-correct barycentrics of `faces[face_id]`.
      mask: (H, W) bool coverage of the initial rendering.
      displacement: (H, W, 2) displacement (du, dv) in pixels from the rendering to the image.
      confidence: (H, W) per-pixel confidence in [0, 1], or None for 1 everywhere.
      faces: (F, 3) int vertex indices of the rendered mesh.
      num_vertices: V (static).
      threshold: visibility threshold τ on the accumulated pixel weight.
      projected_vertices: (V, 2) pixel positions of the rendered mesh's vertices (needed for
        `TargetAnchor.VERTEX`; e.g. `screen_vertices(...)[:, :2]`).
      anchor: see the module docstring.

    Returns:
      `VertexTargets`; differentiable w.r.t. `displacement` and `confidence` (the scatter is linear).
    """
    height, width = mask.shape
    if face_id.shape != (height, width) or barycentric.shape != (height, width, 3):
        raise ValueError(f"face_id {face_id.shape} and barycentric {barycentric.shape} must be ({height}, {width}) and ({height}, {width}, 3)")
    if displacement.shape != (height, width, 2):
        raise ValueError(f"displacement must have shape ({height}, {width}, 2), got {displacement.shape}")
    dtype = jnp.result_type(displacement.dtype, jnp.float32)
    if confidence is None:
        confidence = jnp.ones((height, width), dtype)
    elif confidence.shape != (height, width):
        raise ValueError(f"confidence must have shape ({height}, {width}), got {confidence.shape}")
    covered = mask & (face_id >= 0)
    corners = jnp.asarray(faces)[jnp.where(covered, face_id, 0)]  # (H, W, 3)
    pixel_weight = jnp.where(covered, confidence.astype(dtype), 0.0)[..., None] * barycentric.astype(dtype)  # (H, W, 3)
    if not isinstance(anchor, TargetAnchor):
        raise ValueError(f"anchor must be a TargetAnchor, got {anchor!r}")
    if anchor is TargetAnchor.VERTEX:
        if projected_vertices is None or jnp.shape(projected_vertices) != (num_vertices, 2):
            shape = None if projected_vertices is None else jnp.shape(projected_vertices)
            raise ValueError(f"TargetAnchor.VERTEX needs projected_vertices of shape ({num_vertices}, 2), got {shape}")
        destination = displacement.astype(dtype)  # (H, W, 2)
    else:
        destination = pixel_centres(height, width, dtype) + displacement.astype(dtype)
    flat_corners = corners.reshape(-1)
    flat_weight = pixel_weight.reshape(-1)
    flat_position = jnp.broadcast_to(destination[:, :, None, :], (height, width, 3, 2)).reshape(-1, 2)
    norm = jnp.zeros(num_vertices, dtype).at[flat_corners].add(flat_weight)
    accumulated = jnp.zeros((num_vertices, 2), dtype).at[flat_corners].add(flat_weight[:, None] * flat_position)
    visible = norm > threshold
    safe_norm = jnp.where(visible, norm, 1.0)
    average = accumulated / safe_norm[:, None]
    if anchor is TargetAnchor.VERTEX:
        average = average + jnp.asarray(projected_vertices, dtype)
    targets = jnp.where(visible[:, None], average, 0.0)
    return VertexTargets(targets=targets, weights=jnp.where(visible, norm, 0.0), visible=visible)


__all__ = ["TargetAnchor", "VertexTargets", "pixel_centres", "vertex_targets"]
