"""2D evidence for the comparisons: OpenPose-like keypoints, DensePose-like labels, displacement targets.

Each builder returns `Observations` for one person (vmap for a batch). The OpenPose-like and
DensePose-like evidence is synthesised from the ground truth (the free body has neither detector);
both are reconstructions documented in docs/fitting.md ("Comparisons").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpose.fitting.smplify import Observations
from jaxpose.fitting.targets import VertexTargets, pixel_centres


def keypoint_observations(keypoints: jax.Array, confidence: jax.Array, num_vertices: int) -> Observations:
    """Keypoint-only evidence: keypoints (K, 2) pixels with confidences (K,), no dense term."""
    dtype = keypoints.dtype
    return Observations(keypoints, confidence.astype(dtype), jnp.zeros((num_vertices, 2), dtype), jnp.zeros((num_vertices,), dtype))


def openpose_like_keypoints(projected: jax.Array, key: jax.Array, noise_px: float, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    """"OpenPose-like" detections: projected model keypoints (K, 2) + N(0, noise_px²) per coordinate;
    confidence 1, or 0 for a keypoint that lands outside the image. Returns (keypoints, confidence)."""
    noisy = projected + noise_px * jax.random.normal(key, projected.shape, projected.dtype)
    inside = (noisy[:, 0] >= 0) & (noisy[:, 0] < width) & (noisy[:, 1] >= 0) & (noisy[:, 1] < height)
    return noisy, inside.astype(projected.dtype)


def dense_observations(targets: VertexTargets, num_keypoints: int) -> Observations:
    """Dense evidence from per-vertex targets (weights = accumulated pixel weight), no keypoints."""
    dtype = targets.targets.dtype
    return Observations(jnp.zeros((num_keypoints, 2), dtype), jnp.zeros((num_keypoints,), dtype), targets.targets, targets.weights)


def densepose_like_observations(
    face_id: jax.Array,
    barycentric: jax.Array,
    mask: jax.Array,
    faces: jax.Array,
    num_vertices: int,
    key: jax.Array,
    *,
    num_points: int = 150,
    noise_px: float = 1.0,
    num_keypoints: int = 17,
) -> Observations:
    """"DensePose-like" labels: `num_points` covered pixels of the *image* (the ground-truth render),
    each matched to the nearest vertex of its surface point (largest barycentric weight; DensePose's
    pixel → nearest-vertex-in-chart correspondence), its position jittered by N(0, noise_px²).

    Pixels are drawn uniformly among the covered ones (with replacement when fewer are covered). A
    vertex labelled by n pixels gets the mean of their positions as target and weight n.

    Args:
      face_id (H, W) int, barycentric (H, W, 3), mask (H, W) bool: the image's ground-truth buffers.
      faces (F, 3); num_vertices V; key: PRNG key.
    """
    height, width = mask.shape
    flat_mask = mask.reshape(-1)
    choice_key, noise_key = jax.random.split(key)
    probabilities = flat_mask / jnp.maximum(flat_mask.sum(), 1)
    pixels = jax.random.choice(choice_key, height * width, (num_points,), replace=True, p=probabilities)
    valid = flat_mask[pixels]
    corner = jnp.argmax(barycentric.reshape(-1, 3)[pixels], axis=-1)
    vertex = jnp.asarray(faces)[jnp.maximum(face_id.reshape(-1)[pixels], 0), corner]
    position = pixel_centres(height, width).reshape(-1, 2)[pixels]
    position = position + noise_px * jax.random.normal(noise_key, position.shape)
    weight = valid.astype(position.dtype)
    count = jnp.zeros(num_vertices).at[vertex].add(weight)
    total = jnp.zeros((num_vertices, 2)).at[vertex].add(weight[:, None] * position)
    labelled = count > 0
    targets = jnp.where(labelled[:, None], total / jnp.where(labelled, count, 1.0)[:, None], 0.0)
    return Observations(jnp.zeros((num_keypoints, 2)), jnp.zeros((num_keypoints,)), targets, count)


__all__ = [
    "dense_observations", "densepose_like_observations", "keypoint_observations", "openpose_like_keypoints",
]
