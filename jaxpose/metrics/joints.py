"""Body-fitting errors: MPJPE, PA-MPJPE and PVE.

All take (..., K, 3) corresponding points (joints or vertices) in any length unit and return (...)
in that same unit; the papers report millimetres (multiply metres by ``MM_PER_M``). Each is a mean
over points of the Euclidean (not squared) distance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpose.geometry.procrustes import procrustes_align
from jaxpose.metrics._checks import check_point_sets

MM_PER_M = 1000.0
"""Multiply metre-valued errors by this to report millimetres."""


def _mean_euclidean_error(pred: jax.Array, target: jax.Array) -> jax.Array:
    difference = pred - target
    return jnp.mean(jnp.sqrt(jnp.sum(difference * difference, axis=-1)), axis=-1)


def mpjpe(pred: jax.Array, target: jax.Array, *, root_index: int | None = None) -> jax.Array:
    """Mean per-joint position error.

    Args:
      pred: (..., J, 3) predicted joints.
      target: (..., J, 3) ground-truth joints, same order.
      root_index: if given, both skeletons are first translated so that this joint (e.g. the pelvis)
        is at the origin ("root-relative" MPJPE, the Human3.6M convention); None compares as given.

    Returns:
      (...) mean over joints of ||pred_j − target_j||, in the input unit.
    """
    check_point_sets("pred", pred, "target", target, same_num_points=True)
    pred = jnp.asarray(pred)
    target = jnp.asarray(target)
    if root_index is not None:
        num_joints = pred.shape[-2]
        if not -num_joints <= root_index < num_joints:
            raise ValueError(f"root_index {root_index} out of range for {num_joints} joints")
        root = root_index % num_joints
        pred = pred - pred[..., root : root + 1, :]
        target = target - target[..., root : root + 1, :]
    return _mean_euclidean_error(pred, target)


def pa_mpjpe(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Procrustes-aligned MPJPE: MPJPE after the best similarity transform of pred onto target.

    The alignment (``jaxpose.geometry.procrustes``) fits scale, a proper rotation (reflections are
    excluded) and translation per batch element by least squares, so the result is invariant to any
    rigid motion and uniform scaling of ``pred``.

    Args:
      pred: (..., J, 3); target: (..., J, 3). Returns (...) in the input unit.
    """
    check_point_sets("pred", pred, "target", target, same_num_points=True)
    aligned = procrustes_align(jnp.asarray(pred), jnp.asarray(target), with_scale=True)
    return _mean_euclidean_error(aligned, jnp.asarray(target))


def pve(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Per-vertex error: mean over vertices of the Euclidean distance, no alignment applied.

    For the common pelvis-aligned variant, subtract each mesh's pelvis joint from its vertices first.

    Args:
      pred: (..., V, 3); target: (..., V, 3) in the same vertex order. Returns (...) in the input unit.
    """
    check_point_sets("pred", pred, "target", target, same_num_points=True)
    return _mean_euclidean_error(jnp.asarray(pred), jnp.asarray(target))
