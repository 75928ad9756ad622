"""Linear blend skinning of whole meshes for the synthetic data generators (host-side convenience)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies import forward_kinematics
from jaxpose.bodies.skeleton import SMPL_PARENTS
from jaxpose.geometry.lbs import lbs_points
from jaxpose.geometry.rotations import axis_angle_to_matrix


@jax.jit
def _lbs(rest: jax.Array, weights: jax.Array, rest_joints: jax.Array, pose: jax.Array) -> jax.Array:
    """rest (T, V, 3), weights (V, 24), rest_joints (24, 3), pose (T, 24, 3) -> posed (T, V, 3) (no transl)."""

    def one(rest_t, pose_t):
        _, skinning = forward_kinematics(axis_angle_to_matrix(pose_t), rest_joints, SMPL_PARENTS)
        return lbs_points(rest_t, weights, skinning)

    return jax.vmap(one)(rest, pose)


def lbs_vertices(rest: np.ndarray, weights: np.ndarray, rest_joints: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Linear blend skinning of per-frame rest meshes: rest (T, V, 3), weights (V, 24), joints (24, 3), pose (T, 24, 3) -> (T, V, 3)."""
    return np.asarray(_lbs(jnp.asarray(rest, jnp.float32), jnp.asarray(weights, jnp.float32), jnp.asarray(rest_joints, jnp.float32), jnp.asarray(pose, jnp.float32)))


__all__ = ["lbs_vertices"]
