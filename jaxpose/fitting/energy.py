"""SMPLify-style energy terms as pure functions of arrays (pixels, radians, shape coefficients).

Every term returns a scalar for one person; `vmap` them for a batch. The robustifier and weights
follow SMPLify's public descendants (docs/fitting.md, "SMPLify reference values"); the per-point
normalisation of the two reprojection terms is jaxpose's (so that the weights mean "per point" and
do not change with the number of keypoints or visible vertices).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpose.bodies.prior import PriorWeights, pose_prior


def gmof(residual: jax.Array, sigma) -> jax.Array:
    """Geman–McClure robustifier σ² r² / (σ² + r²), elementwise; r and σ in the same units (px).

    Quadratic (≈ r²) for |r| ≪ σ, saturating at σ² for |r| ≫ σ.
    """
    squared = residual * residual
    sigma_squared = jnp.asarray(sigma, residual.dtype) ** 2
    return sigma_squared * squared / (sigma_squared + squared)


def keypoint_reprojection(projected: jax.Array, keypoints: jax.Array, confidence: jax.Array, sigma) -> jax.Array:
    """Confidence²-weighted, GMoF-robustified keypoint reprojection error (SPIN's form), normalised.

    Args:
      projected: (K, 2) projected model keypoints, pixels.
      keypoints: (K, 2) detected 2D keypoints, pixels.
      confidence: (K,) detection confidences in [0, 1]; 0 drops a keypoint.
      sigma: GMoF scale, pixels.

    Returns:
      () Σ_k c_k² Σ_{x,y} ρ_σ(projected − keypoints) / max(Σ_k c_k², 1e-8), pixels².
    """
    weight = confidence.astype(projected.dtype) ** 2
    per_point = jnp.sum(gmof(projected - keypoints, sigma), axis=-1)
    return jnp.sum(weight * per_point) / jnp.maximum(jnp.sum(weight), 1e-8)


def dense_reprojection(projected: jax.Array, targets: jax.Array, weights: jax.Array, sigma) -> jax.Array:
    """Weighted, GMoF-robustified dense per-vertex reprojection error, normalised by the total weight.

    Args:
      projected: (V, 2) projected vertices, pixels.
      targets: (V, 2) per-vertex 2D targets, pixels (any value where the weight is 0).
      weights: (V,) per-vertex weights ≥ 0 (0 for vertices without a target).
      sigma: GMoF scale, pixels.

    Returns:
      () Σ_v w_v Σ_{x,y} ρ_σ(projected_v − target_v) / max(Σ_v w_v, 1e-8), pixels².
    """
    weights = weights.astype(projected.dtype)
    # Targets of weight-0 vertices may be garbage (e.g. NaN from 0/0): mask them before the arithmetic.
    residual = jnp.where(weights[:, None] > 0, projected - targets, 0.0)
    per_vertex = jnp.sum(gmof(residual, sigma), axis=-1)
    return jnp.sum(weights * per_vertex) / jnp.maximum(jnp.sum(weights), 1e-8)


def shape_l2(betas: jax.Array) -> jax.Array:
    """() Σ β² (the shape coefficients are ~N(0, 1) over the body's population)."""
    return jnp.sum(betas * betas)


def pose_anchor(pose: jax.Array, initial_pose: jax.Array) -> jax.Array:
    """() Σ ‖θ_j − θ_j,init‖² over the body joints 1..J−1 (CamSMPLify's anchor to the initial estimate)."""
    difference = pose[..., 1:, :] - initial_pose[..., 1:, :]
    return jnp.sum(difference * difference)


def shape_anchor(betas: jax.Array, initial_betas: jax.Array) -> jax.Array:
    """() Σ (β − β_init)²."""
    difference = betas - initial_betas
    return jnp.sum(difference * difference)


def depth_anchor(depth: jax.Array, depth_estimate: jax.Array) -> jax.Array:
    """() (z − z_est)², metres² (SPIN's camera-depth term that keeps the first stage from drifting)."""
    return (depth - depth_estimate) ** 2


def body_pose_prior(pose: jax.Array, weights: PriorWeights = PriorWeights()) -> jax.Array:
    """() the project's pose prior on a (J, 3) pose (`jaxpose.bodies.prior.pose_prior`)."""
    return pose_prior(pose, weights)


__all__ = [
    "body_pose_prior", "dense_reprojection", "depth_anchor", "gmof", "keypoint_reprojection",
    "pose_anchor", "shape_anchor", "shape_l2",
]
