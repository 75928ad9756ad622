"""Cosine correlation between two sets of per-vertex features (3D-CoreNet's correlation matrix C)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# 3D-CoreNet divides by (norm + 2.2e-16) rather than clamping the norm; kept for weight parity.
NORM_EPSILON = 2.2e-16

# Full float32 matmuls: on GPUs the default precision may be TF32, whose ~1e-3 relative error is
# amplified by 1/epsilon (~33x at epsilon = 0.03) in the Sinkhorn exponent. PyTorch (the original)
# defaults to full float32 matmuls.
MATMUL_PRECISION = jax.lax.Precision.HIGHEST


def normalize_rows(features: jax.Array) -> jax.Array:
    """Per-row L2 normalisation as in 3D-CoreNet: `f / (||f||_2 + 2.2e-16)`.

    Args:
      features: (N, D) features.

    Returns:
      (N, D) rows of unit length (a zero row stays zero).
    """
    squared = jnp.sum(features * features, axis=-1, keepdims=True)
    # sqrt has an infinite derivative at 0: route zero rows through a dummy value so their gradient
    # is 0 (PyTorch's norm subgradient) instead of NaN.
    nonzero = squared > 0
    norms = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, squared, 1.0)), 0.0)
    return features / (norms + NORM_EPSILON)


def _check_feature_pair(x: jax.Array, y: jax.Array) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"features must be 2-D (num_vertices, feature_dim); got shapes {x.shape} and {y.shape}"
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"feature widths differ: x has {x.shape[1]} channels, y has {y.shape[1]}"
        )
    if x.shape[0] == 0 or y.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be non-empty; got shapes {x.shape} and {y.shape}")


def cosine_correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """3D-CoreNet's correlation matrix C = x̂ ŷᵀ of row-normalised features.

    Args:
      x: (N, D) features (e.g. θ projections of identity features), not necessarily normalised.
      y: (M, D) features (e.g. φ projections of pose features).

    Returns:
      (N, M) cosine similarities in [-1, 1] (a zero feature row gives a zero row/column).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    _check_feature_pair(x, y)
    return jnp.matmul(normalize_rows(x), normalize_rows(y).T, precision=MATMUL_PRECISION)
