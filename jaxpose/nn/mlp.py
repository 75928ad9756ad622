"""A plain fully connected network on the last axis (channels-last, any leading axes)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "softplus": jax.nn.softplus, "tanh": jnp.tanh}


def lecun_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype) -> jax.Array:
    """U(−√(3/fan_in), √(3/fan_in)) samples of `shape`: unit-variance outputs for unit-variance inputs."""
    bound = math.sqrt(3.0 / fan_in)
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)


class MLP(nnx.Module):
    """Fully connected network: ``depth`` hidden layers of ``width`` with ``activation``, then linear.

    x (..., in_features) -> (..., out_features). With ``use_bias=False`` and an activation with
    act(0) = 0 (relu, gelu, tanh) the network maps 0 to exactly 0. ``zero_init_output`` starts the
    output layer at zero. ``softplus_beta`` sharpens softplus (SNARF-style β = 100).
    """

    def __init__(self, in_features: int, width: int, depth: int, out_features: int, *,
                 activation: str = "relu", use_bias: bool = True, zero_init_output: bool = False,
                 softplus_beta: float = 1.0, rngs: nnx.Rngs, dtype=jnp.float32):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if depth < 0 or width <= 0 or in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"MLP needs positive sizes and depth >= 0, got in={in_features}, width={width}, "
                f"depth={depth}, out={out_features}"
            )
        self.in_features = in_features
        self.activation = activation
        self.softplus_beta = float(softplus_beta)
        sizes = [in_features] + [width] * depth + [out_features]
        kernels, biases = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            if last and zero_init_output:
                kernels.append(nnx.Param(jnp.zeros((n_in, n_out), dtype)))
            else:
                kernels.append(nnx.Param(lecun_uniform(rngs.params(), (n_in, n_out), n_in, dtype)))
            if use_bias:
                biases.append(nnx.Param(jnp.zeros((n_out,), dtype)))
        self.kernels = nnx.List(kernels)
        self.biases = nnx.List(biases) if use_bias else None

    def _act(self, x: jax.Array) -> jax.Array:
        if self.activation == "softplus":
            return jax.nn.softplus(self.softplus_beta * x) / self.softplus_beta
        return ACTIVATIONS[self.activation](x)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLP expects {self.in_features} input features, got shape {x.shape}")
        n = len(self.kernels)
        for i in range(n):
            x = jnp.matmul(x, self.kernels[i][...])
            if self.biases is not None:
                x = x + self.biases[i][...].reshape((1,) * (x.ndim - 1) + (-1,))
            if i < n - 1:
                x = self._act(x)
        return x
