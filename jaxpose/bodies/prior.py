"""A differentiable pose prior for the 24-joint SMPL skeleton (fitting, and rejecting bad samples).

No learned prior is available offline (SMPLify's GMM and VPoser are licence-restricted), so the prior
is three hand-made terms on the (..., 24, 3) axis-angle pose in radians:

  angle   SMPLify's bending prior: sum_i exp(s_i theta_i)^2 over the flattened full-pose components
          55, 58 (left / right elbow y) and 12, 15 (left / right knee x) with s = (+1, -1, -1, -1);
          it grows exponentially when an elbow or knee bends the unnatural way (equals 4 at rest).
  hinge   sum over body-joint components of the squared distance beyond the `wide` box of
          `jaxpose.bodies.poses.JOINT_LIMITS_DEG`: max(0, lo - theta)^2 + max(0, theta - hi)^2.
          Exactly 0 inside the box.
  l2      sum of squared body-joint components (joints 1..23; the root/global orientation is free).

The angle weight 15.2^2 is SPIN's SMPLify value. The hinge and L2 weights are jaxpose design values
(no published source; pick them for the task at hand).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.poses import JOINT_LIMITS_DEG
from jaxpose.bodies.skeleton import NUM_SMPL_JOINTS

# Flattened full-pose component indices (joint * 3 + axis) and signs of SMPLify's angle prior.
ANGLE_PRIOR_INDICES = (55, 58, 12, 15)
ANGLE_PRIOR_SIGNS = (1.0, -1.0, -1.0, -1.0)
_LIMITS_RAD = np.deg2rad(JOINT_LIMITS_DEG)


class PriorWeights(NamedTuple):
    """Weights of the three terms of `pose_prior` (dimensionless multipliers of rad^2-ish terms)."""

    angle: float = 15.2**2  # SPIN's SMPLify angle_prior_weight squared
    hinge: float = 100.0  # design value
    l2: float = 1.0  # design value


def _check(pose: jax.Array) -> jax.Array:
    pose = jnp.asarray(pose)
    if pose.ndim < 2 or pose.shape[-2:] != (NUM_SMPL_JOINTS, 3):
        raise ValueError(f"pose must have shape (..., {NUM_SMPL_JOINTS}, 3) axis-angle radians, got {pose.shape}")
    if not jnp.issubdtype(pose.dtype, jnp.floating):
        raise ValueError(f"pose must be floating point, got dtype {pose.dtype}")
    return pose


def angle_prior(pose: jax.Array) -> jax.Array:
    """SMPLify's elbow/knee bending prior, (..., 24, 3) -> (...): sum_i exp(s_i theta_i)^2."""
    pose = _check(pose)
    flat = pose.reshape(pose.shape[:-2] + (NUM_SMPL_JOINTS * 3,))
    theta = flat[..., jnp.asarray(ANGLE_PRIOR_INDICES)]
    signs = jnp.broadcast_to(jnp.asarray(ANGLE_PRIOR_SIGNS, pose.dtype), theta.shape)
    return jnp.sum(jnp.exp(theta * signs) ** 2, axis=-1)


def limit_hinge(pose: jax.Array) -> jax.Array:
    """Squared hinge beyond the `wide` joint limits over joints 1..23, (..., 24, 3) -> (...); 0 inside."""
    pose = _check(pose)
    body = pose[..., 1:, :]
    lo = jnp.broadcast_to(jnp.asarray(_LIMITS_RAD[1:, :, 0], pose.dtype), body.shape)
    hi = jnp.broadcast_to(jnp.asarray(_LIMITS_RAD[1:, :, 1], pose.dtype), body.shape)
    excess = jax.nn.relu(lo - body) + jax.nn.relu(body - hi)
    return jnp.sum(excess**2, axis=(-2, -1))


def body_pose_l2(pose: jax.Array) -> jax.Array:
    """Sum of squared axis-angle components of joints 1..23, (..., 24, 3) -> (...)."""
    pose = _check(pose)
    return jnp.sum(pose[..., 1:, :] ** 2, axis=(-2, -1))


def pose_prior(pose: jax.Array, weights: PriorWeights = PriorWeights()) -> jax.Array:
    """Weighted sum of `angle_prior`, `limit_hinge` and `body_pose_l2`, (..., 24, 3) -> (...).

    Pure and differentiable (finite gradients everywhere, including the rest pose).
    """
    return (
        weights.angle * angle_prior(pose)
        + weights.hinge * limit_hinge(pose)
        + weights.l2 * body_pose_l2(pose)
    )


__all__ = [
    "ANGLE_PRIOR_INDICES",
    "ANGLE_PRIOR_SIGNS",
    "PriorWeights",
    "angle_prior",
    "body_pose_l2",
    "limit_hinge",
    "pose_prior",
]
