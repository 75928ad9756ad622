"""Exact ground-truth displacement fields between a render of an estimate and a render of the truth.

For a covered pixel p of the estimate's render (face f, perspective-correct barycentrics w), the same
surface point on the ground-truth mesh projects to q = π(Σ_k w_k v_k^GT); the displacement is d = q − p
and it is valid where that point is visible in the ground-truth render. These are the CNN's training
targets and the "exact displacement" upper bound of the comparisons.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxpose.render.camera import Camera, project_camera_points, screen_vertices, world_to_camera


def exact_displacement(face_id, barycentric, gt_vertices, faces, camera: Camera, gt_face_id, gt_depth, *, depth_tolerance: float = 0.015):
    """Exact per-pixel displacement from an initial render to the GT render (jit-able).

    Args:
      face_id: (H, W) int face ids of the initial render (−1 background).
      barycentric: (H, W, 3) its perspective-correct barycentrics.
      gt_vertices: (V, 3) world vertices of the GT mesh (same topology `faces` (F, 3)).
      camera: the (perspective or orthographic) camera of both renders.
      gt_face_id, gt_depth: (H, W) face ids and z-buffer (metres) of the GT render.
      depth_tolerance: metres between the GT surface point's depth and the GT visible surface at q.

    Returns:
      displacement (H, W, 2) px (u, v) = q − p, 0 off the initial mask; valid (H, W) bool: covered in the
      initial render, q inside the image and the point visible in the GT render — the GT face at q's
      pixel is f, or that face's plane, evaluated at q, is within `depth_tolerance` of the point's depth.
    """
    faces = jnp.asarray(faces, jnp.int32)
    height, width = face_id.shape
    mask = face_id >= 0
    corners_cam = world_to_camera(gt_vertices, camera)[faces[jnp.where(mask, face_id, 0)]]  # (H, W, 3, 3)
    point = jnp.einsum("hwk,hwkc->hwc", barycentric.astype(corners_cam.dtype), corners_cam)
    q, z_point = project_camera_points(point, camera)
    pixel = jnp.stack(jnp.meshgrid(jnp.arange(width) + 0.5, jnp.arange(height) + 0.5, indexing="xy"), -1).astype(q.dtype)
    displacement = jnp.where(mask[..., None], q - pixel, 0.0)
    col, row = jnp.floor(q[..., 0]).astype(jnp.int32), jnp.floor(q[..., 1]).astype(jnp.int32)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height) & (z_point > 0) & jnp.all(jnp.isfinite(q), -1)
    col, row = jnp.clip(col, 0, width - 1), jnp.clip(row, 0, height - 1)
    seen_face = gt_face_id[row, col]
    # Depth of the GT face visible at q's pixel, on its own plane at the exact location q.
    tri = screen_vertices(gt_vertices, camera)[faces[jnp.maximum(seen_face, 0)]]  # (H, W, 3, 3)
    lam = []
    for k in range(3):
        a, b = tri[..., (k + 1) % 3, :], tri[..., (k + 2) % 3, :]
        lam.append((q[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1]) - (q[..., 1] - a[..., 1]) * (b[..., 0] - a[..., 0]))
    lam = jnp.stack(lam, -1)
    total = jnp.sum(lam, -1, keepdims=True)
    lam = lam / jnp.where(jnp.abs(total) > 0, total, 1.0)
    if camera.orthographic:
        surface = jnp.sum(lam * tri[..., 2], -1)
    else:
        inverse = jnp.sum(lam / tri[..., 2], -1)
        surface = 1.0 / jnp.where(inverse > 0, inverse, jnp.inf)
    visible = (seen_face == face_id) | (jnp.abs(surface - z_point) <= depth_tolerance)
    valid = mask & inside & (seen_face >= 0) & (gt_depth[row, col] > 0) & visible
    return displacement, valid


__all__ = ["exact_displacement"]
