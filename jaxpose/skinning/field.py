"""Learned linear-blend-skinning weight fields and forward LBS of points (SNARF / INS).

Spaces and transforms:
  * canonical space: the body in a fixed canonical pose (SNARF's "star" pose: hips rotated
    ±π/6 about the forward z axis, legs apart; `jaxpose.bodies.canonical.star_pose`), metres;
  * posed (deformed) space: the body in a target pose;
  * rectified bone transforms B_b = T_b(pose) · T_b(canonical_pose)⁻¹
    (`jaxpose.bodies.canonical.rectified_bone_transforms`) map canonical space rigidly with bone b;
    forward LBS of a canonical point x with weights w is x' = Σ_b w_b B_b x (`lbs_points`).

`SkinningField` is SNARF's weight network: canonical xyz (…, 3) → weights (…, J), an MLP (depth × width,
softplus β = 100) whose logits are multiplied by `logit_scale` (20) before a softmax, or before SNARF's
hierarchical softmax along the kinematic tree (J + number of extra branching nodes logits: 25 for
SMPL's 24 joints).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.bodies.skeleton import SMPL_PARENTS
from jaxpose.geometry.lbs import blend_transforms, lbs_points  # noqa: F401  (re-exported)

SOFTPLUS_BETA = 100.0
"""SNARF's activation: softplus(β x) / β with β = 100 (a smooth ReLU)."""


def softplus100(x: jax.Array) -> jax.Array:
    """softplus with β = 100: log(1 + exp(100 x)) / 100, numerically stable."""
    return jax.nn.softplus(SOFTPLUS_BETA * x) / SOFTPLUS_BETA


def _children(parents: Sequence[int]) -> list[list[int]]:
    children: list[list[int]] = [[] for _ in parents]
    for joint, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(joint)
    return children


def hierarchical_num_logits(parents: Sequence[int] = SMPL_PARENTS) -> int:
    """Number of logits the hierarchical softmax needs: one per joint plus one per branching joint
    (≥ 2 children) other than the root (the root's "continue" logit is logit 0). 25 for SMPL."""
    children = _children(parents)
    return len(parents) + sum(1 for j, c in enumerate(children) if len(c) >= 2 and parents[j] >= 0)


def hierarchical_softmax(logits: jax.Array, parents: Sequence[int] = SMPL_PARENTS) -> jax.Array:
    """SNARF's hierarchical softmax along the kinematic tree, (…, L) → (…, J) weights summing to 1.

    Probability mass enters at the root and flows down the tree. At joint j it continues to the
    children with probability σ(c_j) and stays at j with 1 − σ(c_j), where c_j is the logit of j's
    only child, or, for a branching joint, the root's own logit 0 / an extra logit (J, J+1, … in
    joint order); the continuing mass of a branching joint is split by a softmax over its
    children's logits. For SMPL this is exactly SNARF's 25-logit layout (extra logit 24 for spine3).
    """
    num_joints = len(parents)
    expected = hierarchical_num_logits(parents)
    if logits.shape[-1] != expected:
        raise ValueError(f"hierarchical softmax over {num_joints} joints needs {expected} logits, got shape {logits.shape}")
    children = _children(parents)
    next_extra = num_joints
    reach: list[jax.Array | None] = [None] * num_joints
    weights: list[jax.Array | None] = [None] * num_joints
    reach[0] = jnp.ones(logits.shape[:-1], logits.dtype)
    for joint in range(num_joints):  # parents[j] < j, so reach[joint] is known here
        kids = children[joint]
        if not kids:
            weights[joint] = reach[joint]
            continue
        if len(kids) == 1:
            go_on = jax.nn.sigmoid(logits[..., kids[0]])
            reach[kids[0]] = reach[joint] * go_on
        else:
            if parents[joint] < 0:
                gate_index = joint
            else:
                gate_index = next_extra
                next_extra += 1
            go_on = jax.nn.sigmoid(logits[..., gate_index])
            split = jax.nn.softmax(logits[..., kids], axis=-1)
            for slot, kid in enumerate(kids):
                reach[kid] = reach[joint] * go_on * split[..., slot]
        weights[joint] = reach[joint] * (1.0 - go_on)
    return jnp.stack(weights, axis=-1)


class SkinningField(nnx.Module):
    """SNARF's LBS weight network: canonical points (…, 3) → skinning weights (…, J), rows sum to 1.

    MLP: `depth` hidden layers of `width` units with softplus β = 100, then a linear layer to J logits
    (or `hierarchical_num_logits(parents)` logits when `hierarchical`); logits × `logit_scale`, then
    softmax (or `hierarchical_softmax`). SNARF: depth 4, width 128, scale 20; CAPE config hierarchical.
    """

    def __init__(
        self,
        num_joints: int = 24,
        *,
        width: int = 128,
        depth: int = 4,
        logit_scale: float = 20.0,
        hierarchical: bool = False,
        parents: Sequence[int] = SMPL_PARENTS,
        rngs: nnx.Rngs,
    ):
        if depth < 1 or width < 1:
            raise ValueError(f"SkinningField needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        if hierarchical and len(parents) != num_joints:
            raise ValueError(f"hierarchical softmax: {len(parents)} parents given for num_joints={num_joints}")
        self.num_joints = num_joints
        self.logit_scale = float(logit_scale)
        self.hierarchical = bool(hierarchical)
        self.parents = tuple(int(p) for p in parents)
        num_logits = hierarchical_num_logits(self.parents) if hierarchical else num_joints
        dims = [3] + [width] * depth
        self.hidden = nnx.List([nnx.Linear(dims[i], dims[i + 1], rngs=rngs) for i in range(depth)])
        self.out = nnx.Linear(width, num_logits, rngs=rngs)

    def logits(self, x: jax.Array) -> jax.Array:
        """Scaled logits (…, L) before the (hierarchical) softmax."""
        if x.shape[-1:] != (3,):
            raise ValueError(f"SkinningField expects points of shape (..., 3), got {x.shape}")
        h = x
        for layer in self.hidden:
            h = softplus100(layer(h))
        return self.out(h) * self.logit_scale

    def __call__(self, x: jax.Array) -> jax.Array:
        logits = self.logits(x)
        if self.hierarchical:
            return hierarchical_softmax(logits, self.parents)
        return jax.nn.softmax(logits, axis=-1)


def skinning_weight_loss(field, points: jax.Array, target_weights: jax.Array) -> jax.Array:
    """Mean squared error between `field(points)` (N, J) and `target_weights` (N, J) (distillation
    from a body's skinning weights, or SNARF's one-hot joint targets). Scalar."""
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    predicted = field(points)
    if target_weights.shape != predicted.shape:
        raise ValueError(f"target_weights must have shape {predicted.shape}, got {target_weights.shape}")
    return jnp.mean((predicted - target_weights) ** 2)


def joint_weight_targets(joints: jax.Array, parents: Sequence[int] = SMPL_PARENTS) -> tuple[jax.Array, jax.Array]:
    """SNARF's first-epoch weight targets at the canonical joints.

    joints (J, 3) canonical joint positions. Returns points (J + J', 3) and one-hot targets (J + J', J):
    every joint k with target one-hot(k), then every non-root joint k again with one-hot(parent(k))
    (J' = number of non-root joints). A joint thus gets the average of its own and its parent's
    one-hot in the least-squares optimum, as in SNARF.
    """
    num_joints = len(parents)
    if joints.shape != (num_joints, 3):
        raise ValueError(f"joints must have shape ({num_joints}, 3), got {joints.shape}")
    child_ids = [k for k in range(num_joints) if parents[k] >= 0]
    points = jnp.concatenate([joints, joints[np.asarray(child_ids, np.int32)]], axis=0)
    labels = np.concatenate([np.arange(num_joints), np.asarray([parents[k] for k in child_ids])])
    targets = jax.nn.one_hot(labels, num_joints, dtype=joints.dtype)
    return points, targets


def joint_one_hot_loss(field, joints: jax.Array, parents: Sequence[int] = SMPL_PARENTS) -> jax.Array:
    """SNARF's first-epoch regulariser (λ = 10 there): MSE of `field` against `joint_weight_targets`."""
    points, targets = joint_weight_targets(joints, parents)
    return skinning_weight_loss(field, points, targets)


__all__ = [
    "SOFTPLUS_BETA",
    "SkinningField",
    "blend_transforms",
    "hierarchical_num_logits",
    "hierarchical_softmax",
    "joint_one_hot_loss",
    "joint_weight_targets",
    "lbs_points",
    "skinning_weight_loss",
    "softplus100",
]
