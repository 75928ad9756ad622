"""SIREN: multilayer perceptrons with sine activations (Sitzmann et al., NeurIPS 2020).

A sine layer computes ``sin(ω0 · (x W + b))``. With the initialisation of the paper the
pre-activations stay roughly standard-normal through depth, whatever the width:

* first layer:  W ~ U(−1/in, 1/in)            (then ω0 spreads the input over several periods);
* later layers: W ~ U(−√(6/in)/ω0, √(6/in)/ω0) (so ω0·W has the variance 2/in that keeps
  arcsine-distributed activations of variance 1/2 mapped to unit-variance pre-activations);
* biases:       U(−1/√in, 1/√in) (PyTorch's ``nn.Linear`` default, which the reference code keeps).

The network ends in a plain linear layer initialised like the hidden ones (U(±√(6/in)/ω0)), as in
the reference implementation. Inputs are expected to be of order 1 (e.g. metre-scale coordinates
of a human body); ω0 = 30 then resolves details down to a few centimetres.

Shapes: inputs ``(..., in_features)``, outputs ``(..., out_features)``; any leading axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float, dtype) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)


def _check_positive(value, name: str) -> None:
    if not (isinstance(value, int) and value > 0):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class SineLayer(nnx.Module):
    """``sin(ω0 · (x W + b))`` with Sitzmann initialisation; x (..., in) -> (..., out)."""

    def __init__(self, in_features: int, out_features: int, *, omega0: float = 30.0, is_first: bool = False,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        _check_positive(in_features, "in_features")
        _check_positive(out_features, "out_features")
        if not omega0 > 0:
            raise ValueError(f"omega0 must be positive, got {omega0}")
        self.in_features = in_features
        self.omega0 = float(omega0)
        self.is_first = is_first
        bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / omega0
        self.kernel = nnx.Param(_uniform(rngs.params(), (in_features, out_features), bound, dtype))
        self.bias = nnx.Param(_uniform(rngs.params(), (out_features,), 1.0 / math.sqrt(in_features), dtype))

    def preactivation(self, x: jax.Array) -> jax.Array:
        """ω0 · (x W + b), (..., out)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"SineLayer expects {self.in_features} input features, got shape {x.shape}")
        y = jnp.matmul(x, self.kernel[...])
        return self.omega0 * (y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.sin(self.preactivation(x))


class Siren(nnx.Module):
    """SIREN MLP: ``depth`` sine layers of width ``hidden_features``, then a linear output layer.

    Args:
      in_features: input dimension.
      hidden_features: width of every sine layer.
      depth: number of sine layers (>= 1).
      out_features: output dimension.
      omega0: frequency factor of every sine layer (30 in the paper).
      output_bias: whether the final linear layer has a bias (False gives f(features = 0) = 0
        for the last layer, useful when the output must vanish with a gating input).
    """

    def __init__(self, in_features: int, hidden_features: int, depth: int, out_features: int, *,
                 omega0: float = 30.0, output_bias: bool = True, rngs: nnx.Rngs, dtype=jnp.float32):
        _check_positive(depth, "depth")
        _check_positive(hidden_features, "hidden_features")
        _check_positive(out_features, "out_features")
        self.in_features = in_features
        self.out_features = out_features
        layers = [SineLayer(in_features, hidden_features, omega0=omega0, is_first=True, rngs=rngs, dtype=dtype)]
        for _ in range(depth - 1):
            layers.append(SineLayer(hidden_features, hidden_features, omega0=omega0, rngs=rngs, dtype=dtype))
        self.layers = nnx.List(layers)
        bound = math.sqrt(6.0 / hidden_features) / omega0
        self.out_kernel = nnx.Param(_uniform(rngs.params(), (hidden_features, out_features), bound, dtype))
        self.out_bias = (
            nnx.Param(_uniform(rngs.params(), (out_features,), 1.0 / math.sqrt(hidden_features), dtype))
            if output_bias else None
        )

    def features(self, x: jax.Array) -> jax.Array:
        """Output of the last sine layer, (..., hidden_features)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Siren expects {self.in_features} input features, got shape {x.shape}")
        for layer in self.layers:
            x = layer(x)
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., in_features) -> (..., out_features)."""
        y = jnp.matmul(self.features(x), self.out_kernel[...])
        if self.out_bias is not None:
            y = y + self.out_bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
        return y
