"""Per-person scores of a body estimate against the ground truth: 3D errors (mm) and 2D alignment.

  mpjpe_mm        mean per-joint error after aligning the root (pelvis) joints, mm
  pa_mpjpe_mm     per-joint error after a similarity Procrustes alignment, mm
  pve_mm          per-vertex error after aligning the root joints, mm
  vertex_2d_px    mean distance between projected estimated and ground-truth vertices, pixels
  silhouette_iou  IoU of the estimate's rendered mask with the ground-truth mask

Joint errors are over the body's skeleton joints (24 for the default body), the convention of
3DPW-style tables. Root alignment removes the depth ambiguity of a single view, which no 2D
evidence can settle; `transl_error_mm` reports that part separately.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpose.geometry.procrustes import procrustes_align
from jaxpose.render.camera import Camera, project, screen_vertices
from jaxpose.render.rasterize import rasterize

METRIC_NAMES = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "vertex_2d_px", "silhouette_iou", "transl_error_mm")


def _mean_norm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.linalg.norm(a - b, axis=-1), axis=-1)


@jax.jit
def error_3d_2d(vertices, joints, gt_vertices, gt_joints, camera: Camera) -> dict[str, jax.Array]:
    """3D and 2D errors for a batch: vertices (B, V, 3), joints (B, J, 3) metres → dict of (B,)."""
    root, gt_root = joints[:, :1], gt_joints[:, :1]
    aligned = jax.vmap(procrustes_align)(joints, gt_joints)
    projected, _ = project(vertices, camera)
    gt_projected, _ = project(gt_vertices, camera)
    return {
        "mpjpe_mm": 1000.0 * _mean_norm(joints - root, gt_joints - gt_root),
        "pa_mpjpe_mm": 1000.0 * _mean_norm(aligned, gt_joints),
        "pve_mm": 1000.0 * _mean_norm(vertices - root, gt_vertices - gt_root),
        "vertex_2d_px": _mean_norm(projected, gt_projected),
        "transl_error_mm": 1000.0 * jnp.linalg.norm(root[:, 0] - gt_root[:, 0], axis=-1),
    }


@jax.jit
def _person_iou(vertices: jax.Array, faces: jax.Array, camera: Camera, gt_mask: jax.Array) -> jax.Array:
    mask = rasterize(screen_vertices(vertices, camera), faces, camera.height, camera.width).mask
    union = jnp.sum(mask | gt_mask)
    return jnp.where(union > 0, jnp.sum(mask & gt_mask) / jnp.maximum(union, 1), 1.0)


def silhouette_iou(vertices: jax.Array, faces: jax.Array, camera: Camera, gt_mask: jax.Array) -> jax.Array:
    """(B,) IoU between the rendered masks of vertices (B, V, 3) and the masks gt_mask (B, H, W).

    One person per call of a module-level jitted function: compiled once per (mesh, image) shape."""
    faces = jnp.asarray(faces, jnp.int32)
    return jnp.stack([_person_iou(vertices[i], faces, camera, gt_mask[i]) for i in range(vertices.shape[0])])


def person_metrics(vertices, joints, gt_vertices, gt_joints, faces, camera: Camera, gt_mask) -> dict[str, jax.Array]:
    """Every metric of the module docstring for a batch of people; each value has shape (B,)."""
    metrics = error_3d_2d(vertices, joints, gt_vertices, gt_joints, camera)
    metrics["silhouette_iou"] = silhouette_iou(vertices, faces, camera, gt_mask)
    return metrics


__all__ = ["METRIC_NAMES", "error_3d_2d", "person_metrics", "silhouette_iou"]
