"""Occupancy IoU (INS / SNARF protocol, docs/skinning.md, "Evaluation protocol").

IoU = |GT ∧ Pred| / |GT ∨ Pred| over a set of sampled query points, computed per frame; the reported
number is the mean of per-frame IoUs (not a pooled IoU over all frames). The protocol labels a point
inside when GT occupancy > 0.5 and when the predicted logit (max over converged roots) > 0: threshold
before calling ``occupancy_iou``, which takes booleans so that no threshold is silently assumed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def occupancy_iou(pred_occ: jax.Array, gt_occ: jax.Array, *, empty_union_value: float = 1.0) -> jax.Array:
    """Intersection over union of two boolean occupancy labellings of the same query points.

    Args:
      pred_occ: (..., P) bool, True = predicted inside.
      gt_occ: (..., P) bool, True = inside the ground-truth surface.
      empty_union_value: value returned where neither labelling has any inside point (empty union).
        Default 1.0: both agree that nothing is occupied. Pass ``float('nan')`` to make such frames
        visible (and use ``jnp.nanmean`` to average).

    Returns:
      (...) float32 IoU in [0, 1] per leading index.
    """
    pred_occ = jnp.asarray(pred_occ)
    gt_occ = jnp.asarray(gt_occ)
    for name, occ in (("pred_occ", pred_occ), ("gt_occ", gt_occ)):
        if occ.dtype != jnp.bool_:
            raise ValueError(
                f"{name} must be a boolean array (threshold first, e.g. logits > 0 or occupancy > 0.5), "
                f"got dtype {occ.dtype}"
            )
        if occ.ndim < 1:
            raise ValueError(f"{name} must have shape (..., P), got a scalar")
    if pred_occ.shape != gt_occ.shape:
        raise ValueError(f"pred_occ and gt_occ must have the same shape, got {pred_occ.shape} and {gt_occ.shape}")
    intersection = jnp.sum(pred_occ & gt_occ, axis=-1)
    union = jnp.sum(pred_occ | gt_occ, axis=-1)
    ratio = intersection.astype(jnp.float32) / jnp.maximum(union, 1).astype(jnp.float32)
    return jnp.where(union > 0, ratio, jnp.float32(empty_union_value))
