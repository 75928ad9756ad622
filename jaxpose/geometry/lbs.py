"""Linear blend skinning of points with per-point weights: the geometric core shared by the
learned skinning fields, inverse-LBS root finding and the LBS baselines."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def blend_transforms(weights: jax.Array, transforms: jax.Array) -> jax.Array:
    """Per-point blended affine transform Σ_b w_b B_b as (…, 3, 4): weights (…, J), transforms (J, 4, 4).

    The blend is written as I + Σ_b w_b (B_b − I) so that identity transforms give exactly the
    identity, whatever the float rounding of Σ_b w_b.
    """
    if transforms.ndim != 3 or transforms.shape[1:] != (4, 4):
        raise ValueError(f"transforms must have shape (J, 4, 4), got {transforms.shape}")
    if weights.shape[-1] != transforms.shape[0]:
        raise ValueError(f"weights have {weights.shape[-1]} bones but transforms have {transforms.shape[0]}")
    eye34 = jnp.eye(3, 4, dtype=transforms.dtype)
    blended_delta = jnp.einsum("...j,jab->...ab", weights, transforms[:, :3, :] - eye34[None])
    return jnp.broadcast_to(eye34, blended_delta.shape) + blended_delta


def lbs_points(x: jax.Array, weights: jax.Array, transforms: jax.Array) -> jax.Array:
    """Forward linear blend skinning of points: x (…, 3), weights (…, J), transforms (J, 4, 4) → (…, 3).

    x' = Σ_b w_b (R_b x + t_b), computed as x + Σ_b w_b ((R_b − I) x + t_b) (exact for identity bones).
    """
    if x.shape[-1:] != (3,):
        raise ValueError(f"x must have shape (..., 3), got {x.shape}")
    if weights.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"weights {weights.shape} must have the leading shape of x {x.shape} and a bone axis")
    if transforms.ndim != 3 or transforms.shape[1:] != (4, 4):
        raise ValueError(f"transforms must have shape (J, 4, 4), got {transforms.shape}")
    if weights.shape[-1] != transforms.shape[0]:
        raise ValueError(f"weights have {weights.shape[-1]} bones but transforms have {transforms.shape[0]}")
    eye34 = jnp.eye(3, 4, dtype=transforms.dtype)
    # Blending the (B_b − I) first costs 12 floats per point, against 3 J for moving by every bone.
    delta = jnp.einsum("...j,jab->...ab", weights, transforms[:, :3, :] - eye34[None])
    return x + jnp.einsum("...ab,...b->...a", delta[..., :3], x) + delta[..., 3]

__all__ = ["blend_transforms", "lbs_points"]
