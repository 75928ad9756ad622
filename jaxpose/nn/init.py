"""Weight initialisers shared by the jaxpose models.

Kernels follow the jaxpose layout: a pointwise linear kernel is ``(in, out)``, a vertex-axis
convolution kernel is ``(kernel_size, in, out)``. Fan-in and fan-out are computed the way PyTorch
computes them for ``Conv1d`` weights ``(out, in, k)`` (receptive field ``k`` multiplies both), so that
``xavier_normal(gain)`` draws from the same distribution as ``torch.nn.init.xavier_normal_``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel of shape ``(in, out)`` or ``(k, in, out)``."""
    if len(shape) == 2:
        fan_in, fan_out = shape
        return int(fan_in), int(fan_out)
    if len(shape) == 3:
        receptive, fan_in, fan_out = shape
        return int(fan_in * receptive), int(fan_out * receptive)
    raise ValueError(f"kernel shape must be (in, out) or (k, in, out), got {tuple(shape)}")


def xavier_normal(gain: float = 1.0) -> Initializer:
    """Xavier/Glorot normal: N(0, gain² · 2 / (fan_in + fan_out)), as ``torch.nn.init.xavier_normal_``."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        fan_in, fan_out = _fans(shape)
        std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
        return std * jax.random.normal(key, tuple(shape), dtype)

    return init


def normal(stddev: float) -> Initializer:
    """N(0, stddev²) for every element (NPT's ``weights_init``: stddev 0.02)."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


def zeros(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """All zeros (bias init of 3D-CoreNet)."""
    del key
    return jnp.zeros(tuple(shape), dtype)


def torch_default_bias(fan_in: int) -> Initializer:
    """U(−1/√fan_in, 1/√fan_in): PyTorch's default ``Conv1d``/``Linear`` bias init (kept by NPT)."""
    if fan_in <= 0:
        raise ValueError(f"fan_in must be positive, got {fan_in}")
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)

    return init
