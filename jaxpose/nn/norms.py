"""Normalisation layers on channels-last point sets ``(..., N, C)``; statistics over the vertex axis.

- ``instance_norm``: PyTorch ``InstanceNorm1d`` default (biased variance, eps 1e-5, no affine, no
  running statistics).
- ``ElaIN``: 3D-CoreNet's elastic instance normalisation (docs/pose_transfer.md, "ElaIN").
- ``SPAdaIN``: NPT's spatially adaptive instance normalisation (docs/pose_transfer.md, "NPT").
- ``l2_normalize``: per-vertex L2 normalisation with the original's ``+ 2.2e-16`` on the norm.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.nn import init as initializers
from jaxpose.nn.pointwise import PointwiseLinear

INSTANCE_NORM_EPS = 1e-5
"""PyTorch's InstanceNorm1d default eps (added to the biased variance)."""

ELAIN_EPS = 1e-5
"""eps added to ElaIN's *unbiased* variance before the square root."""

NORM_EPS = sys.float_info.epsilon
"""2.220446049250313e-16, added to L2 norms by the original (``sys.float_info.epsilon``)."""


def _check_point_set(x: jax.Array, name: str, min_vertices: int = 1) -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} expects (..., N, C) inputs, got shape {x.shape}")
    if x.shape[-2] < min_vertices:
        raise ValueError(
            f"{name} needs at least {min_vertices} vertices on axis -2, got shape {x.shape}"
        )


def l2_normalize(x: jax.Array, eps: float = NORM_EPS) -> jax.Array:
    """x / (‖x‖₂ + eps) per vertex over the channel axis. (..., N, C) -> (..., N, C)."""
    return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """Per-sample, per-channel normalisation over the vertex axis with biased variance.

    Args:
      x: (..., N, C).
    Returns:
      (x − mean_N x) / sqrt(var_N x + eps), same shape. var is the biased (1/N) variance.
    """
    _check_point_set(x, "instance_norm")
    mean = jnp.mean(x, axis=-2, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-2, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps)


def mean_and_unbiased_std(x: jax.Array, eps: float = ELAIN_EPS) -> tuple[jax.Array, jax.Array]:
    """(mean_N x, sqrt(unbiased_var_N x + eps)), each (..., 1, C). Needs N ≥ 2."""
    _check_point_set(x, "mean_and_unbiased_std", min_vertices=2)
    mean = jnp.mean(x, axis=-2, keepdims=True)
    num_vertices = x.shape[-2]
    var = jnp.sum(jnp.square(x - mean), axis=-2, keepdims=True) / (num_vertices - 1)
    return mean, jnp.sqrt(var + eps)


class InstanceNorm(nnx.Module):
    """Parameter-free module form of ``instance_norm``. (..., N, C) -> (..., N, C)."""

    def __init__(self, eps: float = INSTANCE_NORM_EPS):
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        return instance_norm(x, self.eps)


class ElaIN(nnx.Module):
    """Elastic instance normalisation of ``x`` conditioned on per-vertex identity features.

    With f′ = mlp_same(f), γ_id = mlp_gamma(f′), β_id = mlp_beta(f′) (per vertex),
    w = mlp_weight([mean_N f′ ; mean_N x]) (per channel, unconstrained — no sigmoid),
    μ = mean_N x, σ = sqrt(unbiased_var_N x + 1e-5):
        γ = w·γ_id + (1 − w)·σ,  β = w·β_id + (1 − w)·μ,  out = (x − μ)/σ · (1 + γ) + β.

    ``elastic=False`` is the ablation without the elastic blend (w ≡ 1, no ``mlp_weight``):
    out = (x − μ)/σ · (1 + γ_id) + β_id, i.e. SPADE-style modulation by the identity features only.

    Call: x (..., N, num_features), condition (..., N, condition_features) -> (..., N, num_features).
    x and condition must have the same leading shape and vertex count; N ≥ 2.
    """

    def __init__(
        self,
        num_features: int,
        condition_features: int = 256,
        *,
        elastic: bool = True,
        kernel_init: initializers.Initializer = initializers.xavier_normal(0.02),
        rngs: nnx.Rngs,
    ):
        self.num_features = num_features
        self.condition_features = condition_features
        self.elastic = elastic
        linear = dict(kernel_init=kernel_init, rngs=rngs)
        self.mlp_same = PointwiseLinear(condition_features, num_features, **linear)
        self.mlp_gamma = PointwiseLinear(num_features, num_features, **linear)
        self.mlp_beta = PointwiseLinear(num_features, num_features, **linear)
        self.mlp_weight = (
            PointwiseLinear(2 * num_features, num_features, **linear) if elastic else None
        )

    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        _check_point_set(x, "ElaIN", min_vertices=2)
        if condition.shape[:-1] != x.shape[:-1]:
            raise ValueError(
                f"ElaIN condition must match x on all but the channel axis: x {x.shape}, "
                f"condition {condition.shape}"
            )
        aligned = self.mlp_same(condition)
        gamma_id = self.mlp_gamma(aligned)
        beta_id = self.mlp_beta(aligned)
        mean, std = mean_and_unbiased_std(x)
        normalized = (x - mean) / std
        if not self.elastic:
            return normalized * (1.0 + gamma_id) + beta_id
        channel_means = jnp.concatenate([jnp.mean(aligned, axis=-2, keepdims=True), mean], axis=-1)
        weight = self.mlp_weight(channel_means)
        gamma = gamma_id * weight + std * (1.0 - weight)
        beta = beta_id * weight + mean * (1.0 - weight)
        return normalized * (1.0 + gamma) + beta


class SPAdaIN(nnx.Module):
    """NPT's spatially adaptive instance normalisation: IN(x)·conv_weight(c) + conv_bias(c).

    Scale and shift come straight from the conditioning points (raw identity xyz in NPT); there is
    no "1 +". ``use_norm=False`` skips the IN (NPT max-pool model, first decoder block).

    Call: x (..., N, num_features), condition (..., N, condition_features) -> (..., N, num_features).
    """

    def __init__(
        self,
        num_features: int,
        condition_features: int = 3,
        *,
        use_norm: bool = True,
        kernel_init: initializers.Initializer = initializers.normal(0.02),
        bias_init: initializers.Initializer | None = None,
        rngs: nnx.Rngs,
    ):
        self.num_features = num_features
        self.use_norm = use_norm
        if bias_init is None:
            bias_init = initializers.torch_default_bias(condition_features)
        linear = dict(kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        self.conv_weight = PointwiseLinear(condition_features, num_features, **linear)
        self.conv_bias = PointwiseLinear(condition_features, num_features, **linear)

    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        _check_point_set(x, "SPAdaIN")
        if condition.shape[:-1] != x.shape[:-1]:
            raise ValueError(
                f"SPAdaIN condition must match x on all but the channel axis: x {x.shape}, "
                f"condition {condition.shape}"
            )
        normalized = instance_norm(x) if self.use_norm else x
        return normalized * self.conv_weight(condition) + self.conv_bias(condition)
