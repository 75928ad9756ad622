"""Axis-aligned bounding-box centring, the pre-processing every pose-transfer mesh gets.

3D-CoreNet / NPT centre each mesh on its own bounding-box centre, ``(max + min) / 2`` per axis, with
no scale normalisation (docs/pose_transfer.md, "Task and conventions"). The metrics PMD / CD / EMD are defined on meshes
centred this way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bbox_center(points: jax.Array) -> jax.Array:
    """Centre of the axis-aligned bounding box of a point set.

    Args:
      points: (..., N, D) coordinates, N >= 1.

    Returns:
      (..., D) ``(max + min) / 2`` over the N points, per axis, in the units of ``points``.
    """
    points = jnp.asarray(points)
    if points.ndim < 2 or points.shape[-2] == 0:
        raise ValueError(f"bbox_center expects points of shape (..., N, D) with N >= 1, got {points.shape}")
    return 0.5 * (jnp.max(points, axis=-2) + jnp.min(points, axis=-2))


def center_on_bbox(points: jax.Array) -> jax.Array:
    """Translate a point set so that its bounding-box centre is at the origin.

    Args:
      points: (..., N, D) coordinates.

    Returns:
      (..., N, D) ``points - bbox_center(points)``; each leading batch element is centred on its own box.
    """
    points = jnp.asarray(points)
    return points - bbox_center(points)[..., None, :]
