"""Spectral normalisation with explicit power-iteration state (as ``torch.nn.utils.spectral_norm``).

The weight used in the forward pass is ``W / σ`` with ``σ = uᵀ W v`` where ``W`` is the kernel viewed
as a matrix (out, in·k) in PyTorch's flattening order. ``u`` (out,) and ``v`` (in·k,) are
``SpectralState`` variables: they are not trained, travel with ``nnx.split`` state and checkpoints,
and are updated by one power iteration per forward pass in training mode only:
``v ← normalize(Wᵀ u)``, ``u ← normalize(W v)`` (gradient stopped), then σ is computed with the new
vectors. In evaluation mode (``module.eval()`` sets ``deterministic=True``) the stored ``u, v`` are
used as they are, exactly like PyTorch's ``module.eval()``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.nn import init as initializers
from jaxpose.nn.pointwise import pointwise_linear, vertex_conv

POWER_ITERATION_EPS = 1e-12
"""Lower bound on a vector norm in the power iteration (PyTorch's spectral_norm default)."""


class SpectralState(nnx.Variable):
    """Power-iteration vector of a spectral-normalised layer: state, not a trainable parameter."""


def kernel_as_matrix(kernel: jax.Array) -> jax.Array:
    """PyTorch's matrix view (out, in·k) of a jaxpose kernel (in, out) or (k, in, out)."""
    if kernel.ndim == 2:
        return kernel.T
    if kernel.ndim == 3:
        size, fan_in, fan_out = kernel.shape
        return jnp.transpose(kernel, (2, 1, 0)).reshape(fan_out, fan_in * size)
    raise ValueError(f"kernel must be (in, out) or (k, in, out), got shape {kernel.shape}")


def _normalize(vector: jax.Array, eps: float) -> jax.Array:
    return vector / jnp.maximum(jnp.linalg.norm(vector), eps)


def power_iteration(
    matrix: jax.Array, u: jax.Array, num_iterations: int = 1, eps: float = POWER_ITERATION_EPS
) -> tuple[jax.Array, jax.Array]:
    """Run ``num_iterations`` power-iteration steps on matrix (out, in), starting from u (out,).

    Returns (u, v) with gradients stopped: u (out,), v (in,).
    """
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    matrix = jax.lax.stop_gradient(matrix)
    u = jax.lax.stop_gradient(u)
    v = None
    for _ in range(num_iterations):
        v = _normalize(matrix.T @ u, eps)
        u = _normalize(matrix @ v, eps)
    return u, v


def spectral_sigma(matrix: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """σ = uᵀ W v (differentiable in W only when u, v are stopped). Scalar."""
    return jnp.dot(u, matrix @ v)


class SpectralNormConv(nnx.Module):
    """Spectral-normalised per-vertex linear layer (``kernel_size=1``) or vertex-axis convolution.

    Parameters: ``kernel`` (in, out) for kernel_size 1, else (k, in, out); ``bias`` (out,) if
    ``use_bias``. State: ``u`` (out,), ``v`` (in·k,) as ``SpectralState``.
    ``init_power_iterations`` power-iteration steps warm up u, v at construction (PyTorch: none).
    Attribute ``deterministic`` (False = training: update u, v each call); toggled by
    ``model.train()`` / ``model.eval()``.

    Call: (..., N, in_features) -> (..., N, out_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 1,
        *,
        use_bias: bool = True,
        num_power_iterations: int = 1,
        init_power_iterations: int = 15,
        eps: float = POWER_ITERATION_EPS,
        kernel_init: initializers.Initializer = initializers.xavier_normal(0.02),
        bias_init: initializers.Initializer = initializers.zeros,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if num_power_iterations < 1:
            raise ValueError(f"num_power_iterations must be >= 1, got {num_power_iterations}")
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = kernel_size
        self.num_power_iterations = num_power_iterations
        self.eps = eps
        self.deterministic = deterministic
        shape = (
            (in_features, out_features)
            if kernel_size == 1
            else (kernel_size, in_features, out_features)
        )
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, jnp.float32))
        self.bias = (
            nnx.Param(bias_init(rngs.params(), (out_features,), jnp.float32)) if use_bias else None
        )
        u0 = _normalize(jax.random.normal(rngs.params(), (out_features,), jnp.float32), eps)
        v0 = _normalize(
            jax.random.normal(rngs.params(), (in_features * kernel_size,), jnp.float32), eps
        )
        if init_power_iterations > 0:
            # PyTorch starts from random u, v; a fresh model in eval mode then divides by a random
            # (possibly ~0 or negative) σ. Warming the vectors up makes eval of an untrained model sane.
            u0, v0 = power_iteration(kernel_as_matrix(self.kernel[...]), u0, init_power_iterations, eps)
        self.u = SpectralState(u0)
        self.v = SpectralState(v0)

    def normalized_kernel(self, deterministic: bool | None = None) -> jax.Array:
        """The kernel divided by its estimated top singular value; updates u, v in training mode."""
        deterministic = self.deterministic if deterministic is None else deterministic
        kernel = self.kernel[...]
        matrix = kernel_as_matrix(kernel)
        if deterministic:
            u, v = jax.lax.stop_gradient(self.u[...]), jax.lax.stop_gradient(self.v[...])
        else:
            u, v = power_iteration(matrix, self.u[...], self.num_power_iterations, self.eps)
            self.u[...] = u
            self.v[...] = v
        return kernel / spectral_sigma(matrix, u, v)

    def __call__(self, x: jax.Array, *, deterministic: bool | None = None) -> jax.Array:
        if x.ndim < 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"SpectralNormConv expects (..., N, {self.in_features}) inputs, got shape {x.shape}"
            )
        kernel = self.normalized_kernel(deterministic)
        bias = None if self.bias is None else self.bias[...]
        if self.kernel_size == 1:
            return pointwise_linear(x, kernel, bias)
        return vertex_conv(x, kernel, bias)
