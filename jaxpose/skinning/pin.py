"""Pose-conditioned Invertible Networks (PINs) of Invertible Neural Skinning (Kant et al., CVPR 2023).

A PIN is a bijection of R³ conditioned on a body pose: a chain of coupling layers. Each layer keeps
some coordinates ``x_a`` of a point, and transforms the others ``x_b`` with a scale and shift that
depend only on ``x_a`` and the pose, so the layer is inverted in closed form::

    affine:    y_a = x_a,  y_b = x_b · exp(s(x_a, θ)) + t(x_a, θ)       log|det J| = Σ s
    additive:  y_a = x_a,  y_b = x_b + t(x_a, θ)                        log|det J| = 0

Conditioning of one layer (INS slides: bone pose encoder + "dot product" with a spatial embedding):

1. Bone pose encoder, once per PIN (``jaxpose.skinning.bone_codes``): for each bone b its rectified
   transform ``B_b = T_b(θ) T_b(θ_c)⁻¹`` (identity at the canonical pose) — or, with
   ``root_relative=True``, ``B_0⁻¹ B_b`` — gives the input ``(enc(R_b) − enc(I), t_b)``, exactly
   zero at the canonical pose; a bias-free MLP per bone maps it to ``e_b ∈ R^k`` (so ``e_b = 0``
   exactly at the canonical pose).
2. ``bone_code_mode`` — how the J codes reach one point:

   * ``"mixture"``: spatial embedding ``φ(x_a) ∈ R^k`` and per-bone spatial weights
     ``ω(x_a) = softmax(L φ(x_a)) ∈ Δ^J``; per-point pose code ``c = Σ_b ω_b e_b ∈ R^k``.
   * ``"literal"``: the codes are concatenated over bones, ``E = [e_0, …, e_{J−1}] ∈ R^{J·k}``
     (bone-major: ``E[b·k + i] = e_b[i]``), the spatial embedding has width J·k,
     ``φ(x_a) ∈ R^{J·k}``, and ``c = E`` (no bone weights).

3. ``pose_combine="multiply"``: ``h = φ(x_a) ⊙ c`` (the slides' dot product; k or J·k wide);
   ``"concat"``: ``h = [φ(x_a), c]`` (the "w/o pose multiplication" ablation).
4. Bias-free MLP heads (GELU, ``gelu(0) = 0``) give ``s`` and ``t`` from ``h``.

Which mode is the paper's? The slides show one pose embedding — each bone's pose encoded
separately, the bone encodings concatenated — multiplied element-wise with a spatial embedding of
the same width. ``"literal"`` is that reading, word for word: the spatial embedding must be J·k
wide (768 for 24 bones, k = 32) and every point sees every bone's code. ``"mixture"`` (the default,
so existing configurations and checkpoints keep their meaning) is this library's interpretation: the product
stays k wide and a learned, spatially varying softmax over bones selects which bones' codes a point
sees, a locality prior that the slides do not show. Both keep every invariant below.

Invariants (tested, both modes): the conditioner of a layer reads only ``x_a`` and the pose; with
the canonical pose (all ``B_b = I`` exactly) every ``e_b``, ``c``, ``h``, ``s``, ``t`` is exactly
zero, so ``PIN(x; θ_c) = x`` bit-exactly — *with* ``pose_combine="multiply"``. With ``"concat"``
``h`` keeps ``φ(x_a) ≠ 0`` and the invariant is deliberately lost: that is what the ablation
measures (the slides credit the product with "deformations only occur when the pose-embedding is
non-zero").

INS has no public code; its paper body was not read. Knobs marked [unverified] (docs/skinning.md,
"PIN coupling layers"), with the defaults chosen here and why:

======================  ======================================  =====================================
knob                    options                                 default (reason)
======================  ======================================  =====================================
``coupling``            affine, additive                        affine (Neural Parts' ``SimpleNVP``)
``n_layers``            int ≥ 1                                 4 (Neural Parts)
``mask_schedule``       cycle, random                           cycle (alternating splits)
``kept_dims``           2, 1                                    2 (the patent's 1D/2D splits)
``bone_code_mode``      mixture, literal                        mixture (see above)
``root_relative``       bool                                    False (codes see the global pose)
``bone_rot_encoding``   6d, matrix, quaternion, axis_angle      6d (continuous)
``pose_code_dim`` k     int                                     32
``pose_combine``        multiply, concat                        multiply (the slides' product)
``spatial_embedding``   siren, fourier, mlp                     siren ("w/o SIREN" ablation)
``spatial_omega0``      float                                   10 (see below)
``log_scale_clamp``     tanh, hardtanh, none                    tanh, ``max_log_scale=1``
``zero_init_heads``     bool                                    True (starts as the identity)
======================  ======================================  =====================================

* ``coupling="affine"``: Neural Parts' ``SimpleNVP`` (the nearest verified relative) is affine;
  ``"additive"`` is volume-preserving and available.
* ``n_layers=4``: Neural Parts' block count; any count works (6 or more: the splits keep cycling).
* ``mask_schedule="cycle"`` with ``kept_dims=2``: layer ``l`` transforms coordinate ``l mod 3`` and
  conditions on the other two (x|yz-type "1D/2D" splits of the patent; Neural Parts also keeps 2
  of 3), so consecutive layers alternate and every 3 layers transform each coordinate once.
  ``kept_dims=1`` keeps one coordinate and transforms two; ``"random"`` draws a stored
  permutation per layer from ``mask_seed``.
* ``root_relative=True`` ("drop the root rotation"): codes from ``B_0⁻¹ B_b`` (bone 0 = pelvis),
  invariant to any rigid map applied to the whole body (all ``B_b`` left-multiplied by one M);
  the root's own code is then always zero. Only the codes become invariant: the PIN still moves
  points given in world coordinates.
* ``bone_rot_encoding="6d"``, ``pose_code_dim=32``, ``spatial_embedding="siren"``: the documented
  defaults; 6D is continuous (Zhou et al.), SIREN matches INS's "w/o SIREN" ablation.
* ``spatial_omega0=10`` (not SIREN's 30): on metre-scale coordinates ω0 = 30 puts wiggles of a
  few centimetres into the deformation field; the PIN then has large Jacobians (float32 round
  trips lose digits, and H_d in front of the LBS root finder makes Broyden's job harder). 10 keeps
  the sine embedding at body-part scale. The occupancy SIREN keeps ω0 = 30 (surface detail).
* Bone encoder: one bias-free MLP per bone (``per_bone_encoder=True``), because the slides say each
  bone pose is encoded separately; ``encoder_width=64``, one hidden GELU layer.
* ``"mixture"``: spatial bone weights from a linear head on the spatial embedding (shares its
  features; cheap).
* Bias-free GELU heads: zero in → zero out without homogeneity (ReLU) or oddness (tanh) in the pose.
* ``log_scale_clamp="tanh"``, ``max_log_scale=1.0``: ``s = m·tanh(s_raw/m)``. The PINs model a
  residual (cloth) deformation near the identity; a smooth bound keeps gradients everywhere (a
  hardtanh has none outside its range) and keeps the per-layer stretch within e^±1, which keeps the
  map well conditioned for LBS root finding. ``"hardtanh"`` with ``max_log_scale=10`` is Neural
  Parts' choice.
* ``zero_init_heads=True``: the last layer of each head starts at zero, so an untrained PIN is the
  identity for every pose and INS starts as plain LBS (Glow-style). Set False to get a random map.

Shapes: points ``(..., 3)`` (any leading axes) with ONE pose, given as rectified bone transforms
``(J, 4, 4)``; vmap over frames outside. Units are those of the points (metres).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.nn.mlp import MLP
from jaxpose.nn.siren import SineLayer
from jaxpose.skinning.bone_codes import (  # re-exported: the bone pose encoder is part of the PIN's API
    ROTATION_ENCODINGS,
    BonePoseEncoder,
    bone_pose_features,
    check_bone_transforms,
    root_relative_transforms,
)


def fourier_features(x: jax.Array, num_frequencies: int) -> jax.Array:
    """[x, sin(2^l π x), cos(2^l π x)] for l < L: (..., d) -> (..., d (1 + 2L))."""
    freqs = (2.0 ** jnp.arange(num_frequencies, dtype=x.dtype)) * jnp.pi
    angles = (x[..., :, None] * freqs.reshape((1,) * x.ndim + (-1,))).reshape(x.shape[:-1] + (-1,))
    return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], axis=-1)


class SpatialEmbedding(nnx.Module):
    """Embedding φ of the kept coordinates: (..., in_features) -> (..., out_features).

    kind: ``"siren"`` — ``depth`` sine layers (Sitzmann init, ω0 = ``omega0``), the last of width
    ``out_features``, so φ = sin(·) ∈ [−1, 1] is of order one (a SIREN's final linear layer is
    initialised ~1/ω0 smaller, which would make the pose signal φ ⊙ c tiny at initialisation);
    ``"fourier"`` — ``fourier_features`` then a ReLU MLP; ``"mlp"`` — a ReLU MLP on the raw
    coordinates. The MLPs have ``depth`` hidden layers of ``width``.
    """

    def __init__(self, in_features: int, out_features: int, *, kind: str = "siren", width: int = 64,
                 depth: int = 2, omega0: float = 30.0, num_frequencies: int = 6, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        if kind not in ("siren", "fourier", "mlp"):
            raise ValueError(f"spatial embedding kind must be 'siren', 'fourier' or 'mlp', got {kind!r}")
        self.kind = kind
        self.num_frequencies = num_frequencies
        if kind == "siren":
            sizes = [in_features] + [width] * (depth - 1) + [out_features]
            self.net = nnx.List([
                SineLayer(n_in, n_out, omega0=omega0, is_first=i == 0, rngs=rngs, dtype=dtype)
                for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))
            ])
        else:
            n_in = in_features * (1 + 2 * num_frequencies) if kind == "fourier" else in_features
            self.net = MLP(n_in, width, depth, out_features, activation="relu", rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "siren":
            for layer in self.net:
                x = layer(x)
            return x
        if self.kind == "fourier":
            x = fourier_features(x, self.num_frequencies)
        return self.net(x)


@dataclasses.dataclass(frozen=True)
class PINConfig:
    """Every knob of a PIN; see the module docstring for the defaults' reasons."""

    n_layers: int = 4
    coupling: Literal["affine", "additive"] = "affine"
    mask_schedule: Literal["cycle", "random"] = "cycle"
    kept_dims: int = 2
    mask_seed: int = 0
    pose_code_dim: int = 32
    bone_code_mode: Literal["mixture", "literal"] = "mixture"
    root_relative: bool = False
    bone_rot_encoding: Literal["6d", "matrix", "quaternion", "axis_angle"] = "6d"
    use_rotation: bool = True
    use_translation: bool = True
    per_bone_encoder: bool = True
    encoder_width: int = 64
    pose_combine: Literal["multiply", "concat"] = "multiply"
    spatial_embedding: Literal["siren", "fourier", "mlp"] = "siren"
    embed_width: int = 64
    embed_depth: int = 2
    spatial_omega0: float = 10.0
    fourier_frequencies: int = 6
    head_width: int = 64
    head_depth: int = 2
    log_scale_clamp: Literal["tanh", "hardtanh", "none"] = "tanh"
    max_log_scale: float = 1.0
    zero_init_heads: bool = True

    def __post_init__(self):
        choices = {
            "coupling": ("affine", "additive"),
            "mask_schedule": ("cycle", "random"),
            "bone_code_mode": ("mixture", "literal"),
            "bone_rot_encoding": tuple(ROTATION_ENCODINGS),
            "pose_combine": ("multiply", "concat"),
            "spatial_embedding": ("siren", "fourier", "mlp"),
            "log_scale_clamp": ("tanh", "hardtanh", "none"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"PINConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.kept_dims not in (1, 2):
            raise ValueError(f"PINConfig.kept_dims must be 1 or 2 (an xyz split into 1 + 2), got {self.kept_dims}")
        for name in ("n_layers", "pose_code_dim", "encoder_width", "embed_width", "embed_depth", "head_width"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise ValueError(f"PINConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.head_depth < 0:
            raise ValueError(f"PINConfig.head_depth must be >= 0, got {self.head_depth}")
        if not self.max_log_scale > 0:
            raise ValueError(f"PINConfig.max_log_scale must be positive, got {self.max_log_scale}")
        if not (self.use_rotation or self.use_translation):
            raise ValueError("PINConfig: use_rotation and use_translation cannot both be False")
        if not isinstance(self.root_relative, bool):
            raise ValueError(f"PINConfig.root_relative must be a bool, got {self.root_relative!r}")

    def kept_coordinates(self) -> tuple[tuple[int, ...], ...]:
        """Per layer, the sorted indices of the kept (conditioning) coordinates."""
        if self.mask_schedule == "cycle":
            orders = [np.roll(np.arange(3), -(layer % 3)) for layer in range(self.n_layers)]
        else:
            rng = np.random.default_rng(self.mask_seed)
            orders = [rng.permutation(3) for _ in range(self.n_layers)]
        if self.kept_dims == 2:  # the first of each order is transformed, the rest condition
            return tuple(tuple(sorted(int(i) for i in order[1:])) for order in orders)
        return tuple((int(order[0]),) for order in orders)


class CouplingLayer(nnx.Module):
    """One pose-conditioned coupling layer (see the module docstring); kept coordinates ``kept``.

    Spatial embedding width: k (``bone_code_mode="mixture"``) or J·k (``"literal"``); heads' input
    width: that, doubled with ``pose_combine="concat"``.
    """

    def __init__(self, kept: tuple[int, ...], config: PINConfig, num_joints: int, *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.kept = tuple(kept)
        self.changed = tuple(i for i in range(3) if i not in self.kept)
        self.config = config
        k = config.pose_code_dim
        literal = config.bone_code_mode == "literal"
        embed_dim = num_joints * k if literal else k
        self.embedding = SpatialEmbedding(len(self.kept), embed_dim, kind=config.spatial_embedding,
                                          width=config.embed_width, depth=config.embed_depth,
                                          omega0=config.spatial_omega0,
                                          num_frequencies=config.fourier_frequencies, rngs=rngs, dtype=dtype)
        self.bone_logits = None if literal else MLP(k, 1, 0, num_joints, rngs=rngs, dtype=dtype)
        head_in = embed_dim if config.pose_combine == "multiply" else 2 * embed_dim
        n_out = len(self.changed)
        head = dict(activation="gelu", use_bias=False, zero_init_output=config.zero_init_heads, rngs=rngs, dtype=dtype)
        self.shift_head = MLP(head_in, config.head_width, config.head_depth, n_out, **head)
        self.log_scale_head = (
            MLP(head_in, config.head_width, config.head_depth, n_out, **head) if config.coupling == "affine" else None
        )

    def spatial_bone_weights(self, x_kept: jax.Array) -> jax.Array:
        """ω(x_a): (..., len(kept)) -> (..., J), softmax over bones (``bone_code_mode="mixture"`` only)."""
        if self.bone_logits is None:
            raise ValueError("spatial_bone_weights: bone_code_mode='literal' has no spatial bone weights")
        return jax.nn.softmax(self.bone_logits(self.embedding(x_kept)), axis=-1)

    def conditioner(self, x_kept: jax.Array, bone_codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(log-scale s, shift t), each (..., len(changed)), from x_a (..., len(kept)) and e (J, k)."""
        phi = self.embedding(x_kept)
        if self.bone_logits is None:  # literal: E = [e_0, …, e_{J−1}] (J·k), the same for every point
            pose_code = jnp.broadcast_to(bone_codes.reshape(-1), phi.shape)
        else:  # mixture: c = Σ_b ω_b(x_a) e_b (k)
            weights = jax.nn.softmax(self.bone_logits(phi), axis=-1)
            pose_code = jnp.matmul(weights, bone_codes)
        if self.config.pose_combine == "multiply":
            h = phi * pose_code
        else:
            h = jnp.concatenate([phi, pose_code], axis=-1)
        shift = self.shift_head(h)
        if self.log_scale_head is None:
            return jnp.zeros_like(shift), shift
        raw = self.log_scale_head(h)
        bound = self.config.max_log_scale
        if self.config.log_scale_clamp == "tanh":
            log_scale = bound * jnp.tanh(raw / bound)
        elif self.config.log_scale_clamp == "hardtanh":
            log_scale = jnp.clip(raw, -bound, bound)
        else:
            log_scale = raw
        return log_scale, shift

    def _split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return x[..., list(self.kept)], x[..., list(self.changed)]

    def _merge(self, x: jax.Array, new_changed: jax.Array) -> jax.Array:
        return x.at[..., list(self.changed)].set(new_changed)

    def forward(self, x: jax.Array, bone_codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x (..., 3) -> (y (..., 3), log|det ∂y/∂x| (...))."""
        x_kept, x_changed = self._split(x)
        log_scale, shift = self.conditioner(x_kept, bone_codes)
        if self.log_scale_head is None:
            y_changed = x_changed + shift
        else:
            y_changed = x_changed * jnp.exp(log_scale) + shift
        return self._merge(x, y_changed), jnp.sum(log_scale, axis=-1)

    def inverse(self, y: jax.Array, bone_codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """y (..., 3) -> (x (..., 3), log|det ∂x/∂y| (...))."""
        y_kept, y_changed = self._split(y)
        log_scale, shift = self.conditioner(y_kept, bone_codes)
        if self.log_scale_head is None:
            x_changed = y_changed - shift
        else:
            x_changed = (y_changed - shift) * jnp.exp(-log_scale)
        return self._merge(y, x_changed), -jnp.sum(log_scale, axis=-1)


def _check_points(x: jax.Array, where: str) -> None:
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{where}: points must have shape (..., 3), got {x.shape}")


class PIN(nnx.Module):
    """Pose-conditioned invertible network: bone pose encoder + ``n_layers`` coupling layers.

    ``PIN(num_joints=24, *, rngs, config=PINConfig(...))`` or ``PIN(rngs=..., n_layers=4, ...)``
    (keyword overrides of ``PINConfig``). Pose input everywhere: ``bone_transforms`` (J, 4, 4), the
    rectified transforms B_b = T_b(θ) T_b(θ_c)⁻¹ of ONE pose (identity = canonical pose).
    Points: (..., 3).
    """

    def __init__(self, num_joints: int = 24, *, rngs: nnx.Rngs, config: PINConfig | None = None,
                 dtype=jnp.float32, **overrides):
        config = dataclasses.replace(config or PINConfig(), **overrides)
        self.config = config
        self.num_joints = num_joints
        self.encoder = BonePoseEncoder(num_joints, config.pose_code_dim, rot_encoding=config.bone_rot_encoding,
                                       use_rotation=config.use_rotation, use_translation=config.use_translation,
                                       width=config.encoder_width, per_bone=config.per_bone_encoder,
                                       rngs=rngs, dtype=dtype)
        self.layers = nnx.List([
            CouplingLayer(kept, config, num_joints, rngs=rngs, dtype=dtype) for kept in config.kept_coordinates()
        ])

    def encode_pose(self, bone_transforms: jax.Array) -> jax.Array:
        """Bone codes e (J, pose_code_dim) of one pose (of ``B_0⁻¹ B_b`` with ``root_relative``)."""
        check_bone_transforms(bone_transforms, self.num_joints, "PIN.encode_pose")
        if self.config.root_relative:
            bone_transforms = root_relative_transforms(bone_transforms)
        return self.encoder(bone_transforms)

    def forward_codes(self, x: jax.Array, bone_codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Forward map with precomputed codes: x (..., 3) -> (y (..., 3), log-det (...))."""
        _check_points(x, "PIN.forward")
        log_det = jnp.zeros(x.shape[:-1], x.dtype)
        for layer in self.layers:
            x, layer_log_det = layer.forward(x, bone_codes)
            log_det = log_det + layer_log_det
        return x, log_det

    def inverse_codes(self, y: jax.Array, bone_codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Inverse map with precomputed codes: y (..., 3) -> (x (..., 3), log-det of the inverse (...))."""
        _check_points(y, "PIN.inverse")
        log_det = jnp.zeros(y.shape[:-1], y.dtype)
        for layer in reversed(self.layers):
            y, layer_log_det = layer.inverse(y, bone_codes)
            log_det = log_det + layer_log_det
        return y, log_det

    def forward_and_log_det(self, x: jax.Array, bone_transforms: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x (..., 3) -> (PIN(x; θ) (..., 3), log|det ∂PIN/∂x| (...))."""
        return self.forward_codes(x, self.encode_pose(bone_transforms))

    def inverse_and_log_det(self, y: jax.Array, bone_transforms: jax.Array) -> tuple[jax.Array, jax.Array]:
        """y (..., 3) -> (PIN⁻¹(y; θ) (..., 3), log|det ∂PIN⁻¹/∂y| (...))."""
        return self.inverse_codes(y, self.encode_pose(bone_transforms))

    def forward(self, x: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        """PIN(x; θ): (..., 3) -> (..., 3)."""
        return self.forward_and_log_det(x, bone_transforms)[0]

    def inverse(self, y: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        """PIN⁻¹(y; θ): (..., 3) -> (..., 3)."""
        return self.inverse_and_log_det(y, bone_transforms)[0]

    def __call__(self, x: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        return self.forward(x, bone_transforms)


__all__ = [
    "PIN", "ROTATION_ENCODINGS", "BonePoseEncoder", "CouplingLayer", "PINConfig", "SpatialEmbedding",
    "bone_pose_features", "check_bone_transforms", "fourier_features", "root_relative_transforms",
]
