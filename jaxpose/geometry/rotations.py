"""Rotation representations and conversions, batched over any leading dimensions.

Conventions:
  * axis-angle: (..., 3) vector, direction = axis, norm = angle in radians.
  * matrix: (..., 3, 3) proper rotation, acting on column vectors (x' = R @ x).
  * quaternion: (..., 4) as (w, x, y, z), unit norm; q and -q are the same rotation.
  * 6D (Zhou et al., CVPR 2019): (..., 6) = the first two *columns* of the matrix, concatenated.

Every function is differentiable everywhere, including at the identity (angle 0) and at angle pi,
where naive formulas divide by zero: small-angle branches use Taylor series and the `where`
double-masking trick so that gradients of the unused branch stay finite.
"""

from __future__ import annotations

import jax.numpy as jnp

# Below this squared angle (rad^2) the Taylor branches are used; the series used are accurate to
# ~1e-16 relative there in float64, and to float32 round-off in float32.
_SMALL_ANGLE_SQ = 1e-6


def _check_last_dims(x: jnp.ndarray, shape: tuple[int, ...], name: str) -> None:
    if x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"{name} must have trailing shape {shape}, got array of shape {x.shape}")


def skew(v: jnp.ndarray) -> jnp.ndarray:
    """Cross-product matrix [v]x, (..., 3) -> (..., 3, 3), such that [v]x @ u = v x u."""
    _check_last_dims(v, (3,), "v")
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], axis=-1),
            jnp.stack([z, zero, -x], axis=-1),
            jnp.stack([-y, x, zero], axis=-1),
        ],
        axis=-2,
    )


def axis_angle_to_matrix(axis_angle: jnp.ndarray) -> jnp.ndarray:
    """Rodrigues' formula, (..., 3) radians -> (..., 3, 3); exact and smooth at angle 0."""
    _check_last_dims(axis_angle, (3,), "axis_angle")
    theta_sq = jnp.sum(axis_angle * axis_angle, axis=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_theta_sq = jnp.where(small, 1.0, theta_sq)
    safe_theta = jnp.sqrt(safe_theta_sq)
    # sin(t)/t and (1 - cos t)/t^2 with their Taylor series near 0.
    sinc = jnp.where(small, 1.0 - theta_sq / 6.0 + theta_sq**2 / 120.0, jnp.sin(safe_theta) / safe_theta)
    cosc = jnp.where(
        small, 0.5 - theta_sq / 24.0 + theta_sq**2 / 720.0, (1.0 - jnp.cos(safe_theta)) / safe_theta_sq
    )
    k = skew(axis_angle)
    eye = jnp.broadcast_to(jnp.eye(3, dtype=k.dtype), k.shape)
    return eye + sinc[..., None, None] * k + cosc[..., None, None] * (k @ k)


def matrix_to_quaternion(matrix: jnp.ndarray) -> jnp.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternion (w, x, y, z) with w >= 0.

    Shepperd's method: of the four algebraically equivalent formulas, use the one whose divisor
    (4 * the largest of |w|, |x|, |y|, |z|) is largest, so it is stable for every rotation.
    """
    _check_last_dims(matrix, (3, 3), "matrix")
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # 4 * squares of (w, x, y, z), each computed from the diagonal.
    sq4 = jnp.stack([1 + trace, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=-1)
    # Candidate quaternions scaled by 4*component: row k is q * 4 q_k.
    cand = jnp.stack(
        [
            jnp.stack([sq4[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            jnp.stack([m[..., 2, 1] - m[..., 1, 2], sq4[..., 1], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1),
            jnp.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], sq4[..., 2], m[..., 2, 1] + m[..., 1, 2]], -1),
            jnp.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], sq4[..., 3]], -1),
        ],
        axis=-2,
    )
    best = jnp.argmax(sq4, axis=-1)
    chosen = jnp.take_along_axis(cand, best[..., None, None], axis=-2)[..., 0, :]
    denom = 2.0 * jnp.sqrt(jnp.maximum(jnp.take_along_axis(sq4, best[..., None], axis=-1), 1e-12))
    quat = chosen / denom
    return quat * jnp.where(quat[..., :1] < 0, -1.0, 1.0)


def quaternion_to_matrix(quaternion: jnp.ndarray) -> jnp.ndarray:
    """(..., 4) quaternion (w, x, y, z), normalised first -> (..., 3, 3)."""
    _check_last_dims(quaternion, (4,), "quaternion")
    q = quaternion / jnp.linalg.norm(quaternion, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def quaternion_to_axis_angle(quaternion: jnp.ndarray) -> jnp.ndarray:
    """(..., 4) (w, x, y, z) -> (..., 3) with angle in [0, pi]; smooth at angle 0."""
    _check_last_dims(quaternion, (4,), "quaternion")
    q = quaternion / jnp.linalg.norm(quaternion, axis=-1, keepdims=True)
    q = q * jnp.where(q[..., :1] < 0, -1.0, 1.0)
    w, v = q[..., 0], q[..., 1:]
    s_sq = jnp.sum(v * v, axis=-1)
    small = s_sq < _SMALL_ANGLE_SQ
    safe_s = jnp.sqrt(jnp.where(small, 1.0, s_sq))
    # angle / sin(angle/2) = 2 atan2(s, w) / s; near s = 0 (w ~ 1): 2/w - (2/3) s^2 / w^3.
    safe_w = jnp.where(small, w, 1.0)
    ratio = jnp.where(small, 2.0 / safe_w - (2.0 / 3.0) * s_sq / safe_w**3, 2.0 * jnp.arctan2(safe_s, w) / safe_s)
    return v * ratio[..., None]


def axis_angle_to_quaternion(axis_angle: jnp.ndarray) -> jnp.ndarray:
    """(..., 3) radians -> (..., 4) (w, x, y, z); smooth at angle 0."""
    _check_last_dims(axis_angle, (3,), "axis_angle")
    theta_sq = jnp.sum(axis_angle * axis_angle, axis=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_theta = jnp.sqrt(jnp.where(small, 1.0, theta_sq))
    half_sinc = jnp.where(small, 0.5 - theta_sq / 48.0, jnp.sin(safe_theta / 2) / safe_theta)
    w = jnp.where(small, 1.0 - theta_sq / 8.0, jnp.cos(safe_theta / 2))
    return jnp.concatenate([w[..., None], axis_angle * half_sinc[..., None]], axis=-1)


def matrix_to_axis_angle(matrix: jnp.ndarray) -> jnp.ndarray:
    """(..., 3, 3) -> (..., 3), angle in [0, pi]; stable near 0 and near pi (via quaternions)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rotation_6d_to_matrix(rot6d: jnp.ndarray) -> jnp.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt on the two 3-vectors (they become columns 0 and 1)."""
    _check_last_dims(rot6d, (6,), "rot6d")
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = a1 / jnp.linalg.norm(a1, axis=-1, keepdims=True)
    a2 = a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2 / jnp.linalg.norm(a2, axis=-1, keepdims=True)
    b3 = jnp.cross(b1, b2)
    return jnp.stack([b1, b2, b3], axis=-1)


def matrix_to_rotation_6d(matrix: jnp.ndarray) -> jnp.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns, concatenated."""
    _check_last_dims(matrix, (3, 3), "matrix")
    return jnp.concatenate([matrix[..., :, 0], matrix[..., :, 1]], axis=-1)


def as_rotation_matrices(rotations: jnp.ndarray) -> jnp.ndarray:
    """Accept axis-angle (..., 3), 6D (..., 6), quaternion (..., 4) or matrices (..., 3, 3)."""
    if rotations.ndim >= 2 and rotations.shape[-2:] == (3, 3):
        return rotations
    converters = {3: axis_angle_to_matrix, 4: quaternion_to_matrix, 6: rotation_6d_to_matrix}
    if rotations.ndim >= 1 and rotations.shape[-1] in converters:
        return converters[rotations.shape[-1]](rotations)
    raise ValueError(
        "rotations must be axis-angle (...,3), quaternion (...,4), 6D (...,6) or matrices (...,3,3); "
        f"got shape {rotations.shape}"
    )
