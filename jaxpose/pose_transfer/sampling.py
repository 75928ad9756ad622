"""Training-pair sampling and the device-side vertex shuffling of the pose-transfer training loop.

Training pairs are a pure function of (seed, step, batch_size): `sample_train_pairs`. The vertex
shuffling that 3D-CoreNet applies to every sample runs on device: `random_permutation_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------
# Training pairs
# ----------------------------------------------------------------------------------------------


class PairBatch(NamedTuple):
    """Training pairs (B,) int64 each: identity mesh (identity_ids, identity_poses), pose mesh
    (pose_ids, pose_poses); ground truth = (identity_ids, pose_poses). Values are dataset labels
    (identity numbers and pose numbers as in the file names), not array rows."""

    identity_ids: np.ndarray
    identity_poses: np.ndarray
    pose_ids: np.ndarray
    pose_poses: np.ndarray


def sample_train_pairs(
    seed: int, step: int, batch_size: int, train_identities: Sequence[int], train_poses: Sequence[int]
) -> PairBatch:
    """Pairs for training step `step`: a pure function of (seed, step, batch_size) and the splits.

    Item k of the global stream (k = step * batch_size + b) is drawn from its own counter-based
    generator seeded by (seed, k), so the stream does not depend on how it is cut into batches.
    Identity mesh: uniform train identity in a uniform train pose; pose mesh: an independent uniform
    train identity and train pose (as 3D-CoreNet's training loader).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    ids = np.asarray(train_identities, np.int64)
    poses = np.asarray(train_poses, np.int64)
    if ids.size == 0 or poses.size == 0:
        raise ValueError(f"need at least one train identity and one train pose, got {ids.size} and {poses.size}")
    draws = np.empty((batch_size, 4), np.int64)
    for b in range(batch_size):
        item = int(step) * int(batch_size) + b
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), item, 0x9A1E]))
        draws[b] = rng.integers(0, [ids.size, poses.size, ids.size, poses.size])
    return PairBatch(ids[draws[:, 0]], poses[draws[:, 1]], ids[draws[:, 2]], poses[draws[:, 3]])


def gather_pairs(vertices, identity_rows, identity_cols, pose_rows, pose_cols):
    """Batched gather of (identity, pose, gt) meshes from an (I, P, V, 3) array (NumPy or JAX).

    Rows/cols are (B,) integer positions into the identity and pose axes. Returns three (B, V, 3)
    arrays: identity = vertices[identity_rows, identity_cols], pose = vertices[pose_rows, pose_cols],
    gt = vertices[identity_rows, pose_cols].
    """
    if vertices.ndim != 4 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (I, P, V, 3), got {vertices.shape}")
    return (
        vertices[identity_rows, identity_cols],
        vertices[pose_rows, pose_cols],
        vertices[identity_rows, pose_cols],
    )


# ----------------------------------------------------------------------------------------------
# Device-side vertex shuffling
# ----------------------------------------------------------------------------------------------


class PermutedBatch(NamedTuple):
    """Output of `random_permutation_batch`.

    identity (B, N, 3), gt (B, N, 3) and identity_faces (B, F, 3) in the shuffled identity order;
    pose (B, M, 3) in its own shuffled order; identity_permutation (B, N) and pose_permutation (B, M)
    with shuffled[k] = original[permutation[k]] (so original = shuffled[inverse_permutation(perm)]).
    """

    identity: object
    gt: object
    identity_faces: object
    pose: object
    identity_permutation: object
    pose_permutation: object


def inverse_permutation(permutation):
    """Inverse of permutations along the last axis: inverse[..., permutation[..., k]] = k (JAX)."""
    return jnp.argsort(permutation, axis=-1)


def random_permutation_batch(key, identity, gt, identity_faces, pose) -> PermutedBatch:
    """Shuffle each sample's identity vertices (GT with the same permutation) and pose vertices.

    identity (B, N, 3), gt (B, N, 3), identity_faces (F, 3) or (B, F, 3) int, pose (B, M, 3).
    Faces are remapped through the inverse permutation with one gather, so every shuffled triangle
    is the same triple of points as before. Jittable; independent permutations per sample.
    """
    if identity.ndim != 3 or identity.shape[-1] != 3:
        raise ValueError(f"identity must have shape (B, N, 3), got {identity.shape}")
    if gt.shape != identity.shape:
        raise ValueError(f"gt must have the identity's shape {identity.shape}, got {gt.shape}")
    if pose.ndim != 3 or pose.shape[-1] != 3 or pose.shape[0] != identity.shape[0]:
        raise ValueError(f"pose must have shape ({identity.shape[0]}, M, 3), got {pose.shape}")
    batch, num_id, num_pose = identity.shape[0], identity.shape[1], pose.shape[1]
    identity_faces = jnp.asarray(identity_faces)
    if identity_faces.ndim == 2:
        identity_faces = jnp.broadcast_to(identity_faces[None], (batch,) + identity_faces.shape)
    if identity_faces.ndim != 3 or identity_faces.shape[0] != batch or identity_faces.shape[-1] != 3:
        raise ValueError(f"identity_faces must have shape (F, 3) or ({batch}, F, 3), got {identity_faces.shape}")
    id_keys, pose_keys = jnp.split(jax.random.split(key, 2 * batch), 2)
    perm_id = jax.vmap(lambda k: jax.random.permutation(k, num_id))(id_keys)
    perm_pose = jax.vmap(lambda k: jax.random.permutation(k, num_pose))(pose_keys)
    take = jax.vmap(lambda x, p: x[p])
    inverse = inverse_permutation(perm_id)
    faces = jax.vmap(lambda inv, f: inv[f])(inverse, identity_faces).astype(identity_faces.dtype)
    return PermutedBatch(
        identity=take(identity, perm_id),
        gt=take(gt, perm_id),
        identity_faces=faces,
        pose=take(pose, perm_pose),
        identity_permutation=perm_id,
        pose_permutation=perm_pose,
    )


