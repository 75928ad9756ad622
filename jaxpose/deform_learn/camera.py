"""Deform-and-learn's camera: a free 3×3 matrix made a rotation by Gram–Schmidt, and weak perspective.

Image coordinates are **normalised**: n = (pixel − size/2) / (size/2), so a square image spans [−1, 1]
in x (right) and y (down) (OpenCV axes, as `jaxpose.render.camera`). A body point X (body frame,
metres) is seen at camera-frame Y = R·X, image x = s·Y[:2] + t, and its "depth" is s·Y[2]
(normalised image units, z forward, away from the camera).

The paper optimises R as 9 free numbers orthonormalised by Gram–Schmidt, and a determinant term
"makes the determinant of the global transformation positive"; its exact form is jaxpose's
**reconstruction** (`determinant_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _as_matrices(m: jax.Array) -> jax.Array:
    m = jnp.asarray(m)
    if m.ndim >= 1 and m.shape[-1] == 9:
        return m.reshape(m.shape[:-1] + (3, 3))
    if m.ndim >= 2 and m.shape[-2:] == (3, 3):
        return m
    raise ValueError(f"expected raw rotations of shape (..., 9) or (..., 3, 3), got {m.shape}")


def gram_schmidt(m: jax.Array) -> jax.Array:
    """A rotation from 9 free numbers: (..., 9) (row-major) or (..., 3, 3) -> (..., 3, 3).

    Rows are orthonormalised in order: r1 = m1/|m1|, r2 = normalised m2 minus its r1 component, and the
    third row is the cross product r3 = r1 × r2 (m3 is ignored). So the result is a proper rotation
    (det +1) for any input whose first two rows are linearly independent, even one with det < 0; a
    rotation is returned unchanged (up to rounding). Choice of the cross product rather than
    orthonormalising m3 is jaxpose's (reconstruction): it never yields a reflection.
    Differentiable wherever the first two rows are independent.
    """
    m = _as_matrices(m)
    a1, a2 = m[..., 0, :], m[..., 1, :]
    r1 = a1 / jnp.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - jnp.sum(r1 * a2, axis=-1, keepdims=True) * r1
    r2 = b2 / jnp.linalg.norm(b2, axis=-1, keepdims=True)
    r3 = jnp.cross(r1, r2)
    return jnp.stack([r1, r2, r3], axis=-2)


def weak_perspective(points: jax.Array, rotation: jax.Array, cam_scale: jax.Array, cam_trans: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """Weak-perspective projection of body-frame points.

    Args:
      points: (..., N, 3) body-frame points, metres.
      rotation: (..., 3, 3) rotation R (e.g. `gram_schmidt` of θ["rotation"]); body → camera frame.
      cam_scale: (...) weak-perspective scale s, normalised image units per metre.
      cam_trans: (..., 2) translation t, normalised image units.
    The leading dimensions (...) of all four must be equal (no broadcasting).

    Returns:
      xy (..., N, 2) normalised image coordinates s·(R X)[:2] + t, and depth (..., N) = s·(R X)[2]
      (normalised image units, larger = farther from the camera).
    """
    points = jnp.asarray(points)
    rotation = jnp.asarray(rotation)
    cam_scale = jnp.asarray(cam_scale)
    cam_trans = jnp.asarray(cam_trans)
    batch = points.shape[:-2]
    if points.ndim < 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., N, 3), got {points.shape}")
    if rotation.shape != batch + (3, 3):
        raise ValueError(f"rotation must have shape {batch + (3, 3)}, got {rotation.shape}")
    if cam_scale.shape != batch:
        raise ValueError(f"cam_scale must have shape {batch}, got {cam_scale.shape}")
    if cam_trans.shape != batch + (2,):
        raise ValueError(f"cam_trans must have shape {batch + (2,)}, got {cam_trans.shape}")
    camera_points = jnp.einsum("...ij,...nj->...ni", rotation, points)
    scaled = cam_scale[..., None, None] * camera_points
    return scaled[..., :2] + cam_trans[..., None, :], scaled[..., 2]


def determinant_loss(raw: jax.Array) -> jax.Array:
    """relu(−det R̃)² of the raw (not orthonormalised) matrix, (..., 9) or (..., 3, 3) -> (...).

    Reconstruction of the paper's L_det ("makes the determinant of the global transformation
    positive"): zero for det ≥ 0, so it only pushes a reflected raw matrix back towards a rotation.
    """
    m = _as_matrices(raw)
    return jax.nn.relu(-jnp.linalg.det(m)) ** 2


def _centre_and_half(height: int, width: int, ndim: int, dtype) -> tuple[jax.Array, jax.Array]:
    centre = jnp.asarray([width / 2.0, height / 2.0], dtype).reshape((1,) * (ndim - 1) + (2,))
    return centre, jnp.asarray(max(height, width) / 2.0, dtype)


def pixels_to_normalised(pixels: jax.Array, height: int, width: int) -> jax.Array:
    """(..., 2) pixel coordinates (u right, v down; pixel centres at +0.5) -> normalised image coordinates.

    n = (p − (W/2, H/2)) / (max(H, W)/2): one scale for both axes, so a weak-perspective camera (one
    scale) stays exact on non-square images; a square image spans [−1, 1] in x and y.
    """
    pixels = jnp.asarray(pixels)
    if pixels.shape[-1:] != (2,):
        raise ValueError(f"pixels must have shape (..., 2), got {pixels.shape}")
    dtype = pixels.dtype if jnp.issubdtype(pixels.dtype, jnp.floating) else jnp.result_type(float)
    centre, half = _centre_and_half(height, width, pixels.ndim, dtype)
    return (pixels - centre) / half


def normalised_to_pixels(normalised: jax.Array, height: int, width: int) -> jax.Array:
    """Inverse of `pixels_to_normalised`: (..., 2) normalised -> pixel coordinates."""
    normalised = jnp.asarray(normalised)
    if normalised.shape[-1:] != (2,):
        raise ValueError(f"normalised coordinates must have shape (..., 2), got {normalised.shape}")
    centre, half = _centre_and_half(height, width, normalised.ndim, normalised.dtype)
    return normalised * half + centre


__all__ = ["determinant_loss", "gram_schmidt", "normalised_to_pixels", "pixels_to_normalised", "weak_perspective"]
