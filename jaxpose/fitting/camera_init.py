"""Translation initialisation from torso keypoints (SMPLify's camera initialisation, for a known camera).

With the body posed at zero translation, the depth is chosen by similar triangles so that the 2D
torso has the projected size of the 3D torso, and the lateral offset so that the torso centroid
projects onto the 2D torso centroid. Orientation is taken from the initial estimate (a regressor's
output); SMPLify-X's second, 180°-rotated start is `flipped_orientation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpose.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from jaxpose.render.camera import Camera, world_to_camera

# COCO-17 indices of the torso: left/right shoulder, left/right hip.
COCO_TORSO = (5, 6, 11, 12)


def estimate_translation(
    keypoints3d: jax.Array, keypoints2d: jax.Array, confidence: jax.Array, camera: Camera, torso=COCO_TORSO
) -> jax.Array:
    """(3,) world translation that places the body's torso where the 2D torso is.

    Args:
      keypoints3d: (K, 3) model keypoints of the body at zero translation, metres (world frame).
      keypoints2d: (K, 2) detected keypoints, pixels.
      confidence: (K,) detection confidences; torso points with confidence 0 are ignored.
      camera: the (perspective) camera.
      torso: indices of the torso keypoints (≥ 2 with confidence > 0 are needed).

    Returns:
      translation t such that the body's keypoints + t project with the torso's 2D size and centroid.
    """
    torso = jnp.asarray(torso)
    weight = (confidence[torso] > 0).astype(keypoints3d.dtype)
    if camera.orthographic:
        raise ValueError("estimate_translation needs a perspective camera")
    count = jnp.maximum(weight.sum(), 1.0)
    points3d = world_to_camera(keypoints3d[torso], camera)  # camera-frame, body at zero translation
    centre3d = jnp.sum(weight[:, None] * points3d, axis=0) / count
    centre2d = jnp.sum(weight[:, None] * keypoints2d[torso], axis=0) / count
    # Mean distance of the torso points to their centroid, in 3D (metres) and 2D (pixels).
    spread3d = jnp.sum(weight * jnp.linalg.norm(points3d[:, :2] - centre3d[None, :2], axis=-1)) / count
    spread2d = jnp.sum(weight * jnp.linalg.norm(keypoints2d[torso] - centre2d[None], axis=-1)) / count
    focal = 0.5 * (camera.fx + camera.fy)
    depth = focal * spread3d / jnp.maximum(spread2d, 1e-6)
    target_camera = jnp.stack([
        (centre2d[0] - camera.cx) * depth / camera.fx,
        (centre2d[1] - camera.cy) * depth / camera.fy,
        depth,
    ])
    # Camera-frame offset to apply, mapped back to a world translation.
    return camera.rotation.T @ (target_camera - centre3d)


def flipped_orientation(global_orient: jax.Array, axis=(0.0, 1.0, 0.0)) -> jax.Array:
    """(3,) the root orientation rotated by 180° about the world `axis` (default: vertical y)."""
    flip = axis_angle_to_matrix(jnp.pi * jnp.asarray(axis, global_orient.dtype))
    return matrix_to_axis_angle(flip @ axis_angle_to_matrix(global_orient))


__all__ = ["COCO_TORSO", "estimate_translation", "flipped_orientation"]
