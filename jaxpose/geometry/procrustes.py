"""Orthogonal Procrustes / Umeyama similarity alignment of corresponding point sets.

Finds the scale s, rotation R (det R = +1, never a reflection) and translation t minimising
``sum_i || s R x_i + t - y_i ||^2`` (Umeyama 1991). With ``H = (1/N) sum_i (y_i - ȳ)(x_i - x̄)^T = U S V^T``
the optimum is ``R = U diag(1, ..., 1, det(U V^T)) V^T``, ``s = tr(S diag(...)) / var(x)`` with
``var(x) = (1/N) sum_i ||x_i - x̄||^2`` and ``t = ȳ - s R x̄``. The sign fix on the smallest singular
direction is what keeps R a proper rotation when the best orthogonal fit would be a reflection.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SimilarityTransform(NamedTuple):
    """``y ≈ scale * x @ rotation.T + translation`` for row-vector points x.

    scale: (...); rotation: (..., D, D) with determinant +1; translation: (..., D).
    """

    scale: jax.Array
    rotation: jax.Array
    translation: jax.Array


def _check_correspondence(source: jax.Array, target: jax.Array) -> None:
    if source.shape != target.shape:
        raise ValueError(
            f"Procrustes needs corresponding point sets of equal shape, got source {source.shape} "
            f"and target {target.shape}"
        )
    if source.ndim < 2 or source.shape[-2] < 1:
        raise ValueError(f"Procrustes expects points of shape (..., N, D) with N >= 1, got {source.shape}")


def fit_similarity_transform(
    source: jax.Array, target: jax.Array, *, with_scale: bool = True
) -> SimilarityTransform:
    """Least-squares similarity (or rigid, ``with_scale=False``) transform mapping source onto target.

    Args:
      source: (..., N, D) points x_i.
      target: (..., N, D) corresponding points y_i.
      with_scale: fit the uniform scale s; otherwise s = 1 (rigid fit).

    Returns:
      SimilarityTransform with scale (...), rotation (..., D, D), translation (..., D). If the source
      points all coincide (zero variance) the scale is 0, so the aligned source collapses onto the
      target centroid, which is the least-squares optimum in that case.
    """
    source = jnp.asarray(source)
    target = jnp.asarray(target)
    _check_correspondence(source, target)
    dim = source.shape[-1]
    source_mean = jnp.mean(source, axis=-2)
    target_mean = jnp.mean(target, axis=-2)
    source_centred = source - source_mean[..., None, :]
    target_centred = target - target_mean[..., None, :]
    num_points = source.shape[-2]
    cross_covariance = jnp.einsum("...ni,...nj->...ij", target_centred, source_centred) / num_points
    u, singular_values, vt = jnp.linalg.svd(cross_covariance)
    reflection_sign = jnp.sign(jnp.linalg.det(u) * jnp.linalg.det(vt))
    # det can be exactly 0 for rank-deficient input; treat that as "no reflection".
    reflection_sign = jnp.where(reflection_sign == 0, 1.0, reflection_sign).astype(source.dtype)
    sign_diagonal = jnp.concatenate(
        [jnp.ones(source.shape[:-2] + (dim - 1,), source.dtype), reflection_sign[..., None]], axis=-1
    )
    rotation = jnp.einsum("...ij,...j,...jk->...ik", u, sign_diagonal, vt)
    if with_scale:
        source_variance = jnp.sum(source_centred * source_centred, axis=(-2, -1)) / num_points
        explained = jnp.sum(singular_values * sign_diagonal, axis=-1)
        safe_variance = jnp.where(source_variance > 0, source_variance, 1.0)
        scale = jnp.where(source_variance > 0, explained / safe_variance, 0.0)
    else:
        scale = jnp.ones(source.shape[:-2], source.dtype)
    translation = target_mean - scale[..., None] * jnp.einsum("...ij,...j->...i", rotation, source_mean)
    return SimilarityTransform(scale=scale, rotation=rotation, translation=translation)


def apply_similarity_transform(transform: SimilarityTransform, points: jax.Array) -> jax.Array:
    """Apply ``s R x + t`` to (..., N, D) row-vector points; returns (..., N, D)."""
    points = jnp.asarray(points)
    rotated = jnp.einsum("...ij,...nj->...ni", transform.rotation, points)
    return transform.scale[..., None, None] * rotated + transform.translation[..., None, :]


def procrustes_align(source: jax.Array, target: jax.Array, *, with_scale: bool = True) -> jax.Array:
    """Source points after the best similarity (or rigid) alignment onto target, shape (..., N, D)."""
    transform = fit_similarity_transform(source, target, with_scale=with_scale)
    return apply_similarity_transform(transform, source)
