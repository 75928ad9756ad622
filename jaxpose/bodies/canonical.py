"""The canonical "star" pose of SNARF-style models and bone transforms relative to a canonical pose.

Spaces and transforms:
  * canonical space: the body in a fixed canonical pose (SNARF's "star" pose: hips rotated ±π/6
    about the forward z axis, legs apart; `star_pose`), metres;
  * posed space: the body in a target pose;
  * rectified bone transforms B_b = T_b(pose) · T_b(canonical_pose)⁻¹ (`rectified_bone_transforms`)
    map canonical space rigidly with bone b; forward LBS of a canonical point x with weights w is
    x' = Σ_b w_b B_b x (`jaxpose.geometry.lbs.lbs_points`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.model import BodyModel, forward


def star_pose(num_joints: int = 24, dtype=np.float32) -> np.ndarray:
    """SNARF's canonical pose (num_joints, 3) axis-angle: left hip +π/6, right hip −π/6 about z.

    In the SMPL / jaxpose frame (y up, +z forward, +x the body's left) this abducts both legs.
    """
    if num_joints < 3:
        raise ValueError(f"the star pose needs joints 1 and 2 (the hips), got num_joints={num_joints}")
    pose = np.zeros((num_joints, 3), dtype)
    pose[1, 2] = np.pi / 6
    pose[2, 2] = -np.pi / 6
    return pose


def _rigid_inverse(transforms: jax.Array) -> jax.Array:
    """Inverse of rigid (…, 4, 4) transforms [R | t]: [Rᵀ | −Rᵀ t]."""
    rot_t = jnp.swapaxes(transforms[..., :3, :3], -1, -2)
    trans = -jnp.einsum("...ab,...b->...a", rot_t, transforms[..., :3, 3])
    top = jnp.concatenate([rot_t, trans[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], transforms.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def rectified_bone_transforms(
    body: BodyModel, betas: jax.Array, pose: jax.Array, canonical_pose: jax.Array
) -> jax.Array:
    """Bone transforms from canonical-pose space to posed space, (…, J, 4, 4).

    B_b = T_b(pose) · T_b(canonical_pose)⁻¹ where T_b are the body's joint world transforms (rigid),
    so that `lbs_points(canonical_vertices, body.weights, B)` equals the posed vertices (for a body
    without pose correctives). betas (K',); pose (…, J, 3) axis-angle radians; canonical_pose (J, 3).
    """
    num_joints = body.num_joints
    pose = jnp.asarray(pose)
    canonical_pose = jnp.asarray(canonical_pose, pose.dtype)
    if pose.shape[-2:] != (num_joints, 3):
        raise ValueError(f"pose must have shape (..., {num_joints}, 3), got {pose.shape}")
    if canonical_pose.shape != (num_joints, 3):
        raise ValueError(f"canonical_pose must have shape ({num_joints}, 3), got {canonical_pose.shape}")
    posed = forward(body, betas, pose).transforms
    canonical = forward(body, betas, canonical_pose).transforms
    return jnp.einsum("...jab,jbc->...jac", posed, _rigid_inverse(canonical))


__all__ = ["rectified_bone_transforms", "star_pose"]
