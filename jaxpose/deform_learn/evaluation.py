"""The paper's evaluation protocol: MPJPE after scaling the predicted skeleton to a canonical size.

Human3.6M Protocol #1 as deform-and-learn reports it: the predicted 3D joints are scaled so that the sum
of all bone lengths equals that of a canonical average skeleton, then the mean per-joint position error
(mm) against the ground truth is taken. Both skeletons are aligned at the root (pelvis, joint 0) first;
the ground truth is not rescaled. On the synthetic data the canonical skeleton is the mean total bone
length of the *training* subjects' ground-truth skeletons (`canonical_bone_length`).

A weak-perspective prediction carries no metric depth or size (the segment scales and the camera scale
trade off), which is why the protocol normalises the size; it also makes the registration, lifter and
ConvNet curves comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.procrustes import procrustes_align


def _check_joints(joints, name: str) -> jax.Array:
    joints = jnp.asarray(joints)
    if joints.ndim < 2 or joints.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., J, 3), got {joints.shape}")
    return joints


def _check_parents(parents: Sequence[int], num_joints: int) -> tuple[int, ...]:
    parents = tuple(int(p) for p in parents)
    if len(parents) != num_joints:
        raise ValueError(f"parents has {len(parents)} entries for {num_joints} joints")
    if parents[0] != -1 or any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
        raise ValueError(f"parents must start with -1 and list each joint's parent before it, got {parents}")
    return parents


def total_bone_length(joints, parents: Sequence[int]) -> jax.Array:
    """Sum of the lengths of every tree edge (joint j to parents[j], j ≥ 1): joints (..., J, 3) → (...)."""
    joints = _check_joints(joints, "joints")
    parents = _check_parents(parents, joints.shape[-2])
    children = np.arange(1, len(parents))
    bones = joints[..., children, :] - joints[..., np.asarray(parents[1:]), :]
    return jnp.sum(jnp.linalg.norm(bones, axis=-1), axis=-1)


def canonical_bone_length(gt_joints, parents: Sequence[int], subjects=None) -> float:
    """The canonical skeleton size: mean total bone length (metres) over subjects.

    Args:
      gt_joints: (N, J, 3) ground-truth joints of the training images (any frame).
      parents: the skeleton's parent indices.
      subjects: optional (N,) subject ids; each subject counts once (its images' mean), so subjects with
        more images do not weigh more. Bone lengths do not depend on the pose, so per-image values of one
        subject agree up to float rounding.
    """
    lengths = np.asarray(total_bone_length(jnp.asarray(gt_joints, jnp.float32), parents), np.float64)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError(f"gt_joints must have shape (N, J, 3) with N > 0, got {np.shape(gt_joints)}")
    if subjects is not None:
        subjects = np.asarray(subjects)
        if subjects.shape != lengths.shape:
            raise ValueError(f"subjects must have shape {lengths.shape}, got {subjects.shape}")
        lengths = np.asarray([lengths[subjects == s].mean() for s in np.unique(subjects)])
    return float(lengths.mean())


def scale_to_bone_length(joints, parents: Sequence[int], bone_length) -> jax.Array:
    """Root-aligned joints (..., J, 3) scaled about the root so their total bone length is `bone_length`."""
    joints = _check_joints(joints, "joints")
    centred = joints - joints[..., :1, :]
    length = total_bone_length(joints, parents)
    scale = jnp.asarray(bone_length, joints.dtype) / jnp.maximum(length, jnp.finfo(joints.dtype).tiny)
    return centred * scale[..., None, None]


def protocol_mpjpe(pred_joints, gt_joints, parents: Sequence[int], bone_length) -> jax.Array:
    """MPJPE (mm) of the paper's protocol: (B, J, 3) predictions and ground truths, metres → (B,).

    The prediction is root-aligned and scaled to total bone length `bone_length` (metres, see
    `canonical_bone_length`); the ground truth is root-aligned only.
    """
    pred_joints = _check_joints(pred_joints, "pred_joints")
    gt_joints = _check_joints(gt_joints, "gt_joints")
    if pred_joints.shape != gt_joints.shape:
        raise ValueError(f"pred_joints {pred_joints.shape} and gt_joints {gt_joints.shape} must have the same shape")
    scaled = scale_to_bone_length(pred_joints, parents, bone_length)
    gt = gt_joints - gt_joints[..., :1, :]
    return 1000.0 * jnp.mean(jnp.linalg.norm(scaled - gt, axis=-1), axis=-1)


def pa_mpjpe(pred_joints, gt_joints) -> jax.Array:
    """MPJPE (mm) after a similarity Procrustes alignment of each prediction: (B, J, 3) → (B,)."""
    pred_joints = _check_joints(pred_joints, "pred_joints")
    gt_joints = _check_joints(gt_joints, "gt_joints")
    if pred_joints.shape != gt_joints.shape:
        raise ValueError(f"pred_joints {pred_joints.shape} and gt_joints {gt_joints.shape} must have the same shape")
    aligned = procrustes_align(pred_joints, gt_joints)
    return 1000.0 * jnp.mean(jnp.linalg.norm(aligned - gt_joints, axis=-1), axis=-1)


__all__ = ["canonical_bone_length", "pa_mpjpe", "protocol_mpjpe", "scale_to_bone_length", "total_bone_length"]
