"""Per-vertex linear maps and the vertex-axis convolution, on channels-last point sets.

Layout convention of ``jaxpose.nn``: a point set is ``(..., N, C)`` — any number of leading batch
axes, then vertices, then channels. PyTorch's ``Conv1d(k=1)`` on ``(B, C, N)`` is a
``PointwiseLinear`` here; ``Conv1d(k, padding=k//2)`` along the vertex axis is ``VertexConv``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.nn import init as initializers


def _channels_last_bias(bias: jax.Array, ndim: int) -> jax.Array:
    """Reshape a (C,) bias to (1, ..., 1, C) so adding it needs no rank promotion."""
    return bias.reshape((1,) * (ndim - 1) + (bias.shape[0],))


def _check_channels(x: jax.Array, in_features: int, name: str) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} expects (..., N, C) inputs, got shape {x.shape}")
    if x.shape[-1] != in_features:
        raise ValueError(f"{name} expects {in_features} input channels, got shape {x.shape}")


def pointwise_linear(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """Apply the same linear map to every vertex.

    Args:
      x: (..., N, C_in) features.
      kernel: (C_in, C_out).
      bias: optional (C_out,).
    Returns:
      (..., N, C_out).
    """
    y = jnp.matmul(x, kernel)
    if bias is not None:
        y = y + _channels_last_bias(bias, y.ndim)
    return y


def vertex_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """1-D cross-correlation along the vertex axis with zero padding ``k // 2`` (odd ``k``).

    Equals PyTorch ``Conv1d(C_in, C_out, k, padding=k//2)`` on the channels-first transpose:
    ``y[n] = Σ_t x[n + t − k//2] @ kernel[t]``. The result depends on vertex storage order.

    Args:
      x: (..., N, C_in).
      kernel: (k, C_in, C_out), k odd.
      bias: optional (C_out,).
    Returns:
      (..., N, C_out).
    """
    size = kernel.shape[0]
    if size % 2 != 1:
        raise ValueError(f"vertex_conv needs an odd kernel size, got {size}")
    pad = size // 2
    num_vertices = x.shape[-2]
    padding = [(0, 0)] * (x.ndim - 2) + [(pad, pad), (0, 0)]
    padded = jnp.pad(x, padding)
    y = None
    for tap in range(size):
        shifted = jax.lax.slice_in_dim(padded, tap, tap + num_vertices, axis=x.ndim - 2)
        term = jnp.matmul(shifted, kernel[tap])
        y = term if y is None else y + term
    if bias is not None:
        y = y + _channels_last_bias(bias, y.ndim)
    return y


class PointwiseLinear(nnx.Module):
    """Per-vertex linear layer (PyTorch ``Conv1d`` with kernel size 1).

    Parameters: ``kernel`` (in_features, out_features), ``bias`` (out_features,) if ``use_bias``.
    Call: (..., N, in_features) -> (..., N, out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        kernel_init: initializers.Initializer = initializers.xavier_normal(0.02),
        bias_init: initializers.Initializer = initializers.zeros,
        rngs: nnx.Rngs,
    ):
        self.in_features = in_features
        self.out_features = out_features
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = (
            nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32)) if use_bias else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_channels(x, self.in_features, type(self).__name__)
        bias = None if self.bias is None else self.bias[...]
        return pointwise_linear(x, self.kernel[...], bias)


class VertexConv(nnx.Module):
    """Convolution along the (arbitrarily ordered) vertex axis, zero padding ``kernel_size // 2``.

    3D-CoreNet's decoder input layer is such a convolution with ``kernel_size=3``; it mixes vertices
    that are neighbours in storage order, so it is *not* permutation-equivariant. ``kernel_size=1``
    reduces to ``PointwiseLinear`` (same parameter count, kernel stored as (1, in, out)).

    Parameters: ``kernel`` (kernel_size, in_features, out_features), ``bias`` (out_features,).
    Call: (..., N, in_features) -> (..., N, out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        *,
        use_bias: bool = True,
        kernel_init: initializers.Initializer = initializers.xavier_normal(0.02),
        bias_init: initializers.Initializer = initializers.zeros,
        rngs: nnx.Rngs,
    ):
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = kernel_size
        shape = (kernel_size, in_features, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))
        self.bias = (
            nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32)) if use_bias else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        _check_channels(x, self.in_features, type(self).__name__)
        bias = None if self.bias is None else self.bias[...]
        return vertex_conv(x, self.kernel[...], bias)
