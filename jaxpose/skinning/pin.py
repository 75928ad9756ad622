"""Pose-conditioned Invertible Networks (PINs) of Invertible Neural Skinning (Kant et al., CVPR 2023).

A PIN is a bijection of R³ conditioned on a body pose: a chain of coupling layers. Each layer keeps
some coordinates ``x_a`` of a point, and transforms the others ``x_b`` with a scale and shift that
depend only on ``x_a`` and the pose, so the layer is inverted in closed form::

    affine:    y_a = x_a,  y_b = x_b · exp(s(x_a, θ)) + t(x_a, θ)       log|det J| = Σ s
    additive:  y_a = x_a,  y_b = x_b + t(x_a, θ)                        log|det J| = 0

Conditioning of one layer (INS slides: bone pose encoder + "dot product" with a spatial embedding):

1. Bone pose encoder, once per PIN: for each bone b its rectified transform
   ``B_b = T_b(θ) T_b(θ_c)⁻¹`` (identity at the canonical pose) gives the input
   ``(enc(R_b) − enc(I), t_b)``, exactly zero at the canonical pose; a bias-free MLP per bone maps
   it to ``e_b ∈ R^k`` (so ``e_b = 0`` exactly at the canonical pose).
2. Spatial embedding ``φ(x_a) ∈ R^k`` (SIREN, Fourier features + MLP, or MLP) and per-bone spatial
   weights ``ω(x_a) = softmax(L φ(x_a)) ∈ Δ^J``; per-point pose code ``c = Σ_b ω_b e_b``.
3. ``pose_combine="multiply"``: ``h = φ(x_a) ⊙ c`` (the slides' dot product);
   ``"concat"``: ``h = [φ(x_a), c]`` (the "w/o pose multiplication" ablation).
4. Bias-free MLP heads (GELU, ``gelu(0) = 0``) give ``s`` and ``t`` from ``h``.

Invariants (tested): the conditioner of a layer reads only ``x_a`` and the pose; with the canonical
pose (all ``B_b = I`` exactly) every ``e_b``, ``c``, ``h``, ``s``, ``t`` is exactly zero, so
``PIN(x; θ_c) = x`` bit-exactly — *with* ``pose_combine="multiply"``. With ``"concat"`` ``h`` keeps
``φ(x_a) ≠ 0`` and the invariant is deliberately lost: that is what the ablation measures (the
slides credit the product with "deformations only occur when the pose-embedding is non-zero").

INS has no public code; its paper body was not read. Knobs marked [unverified] (docs/skinning.md,
"PIN coupling layers"), with the defaults chosen here and why:

* ``coupling="affine"``: Neural Parts' ``SimpleNVP`` (the nearest verified relative) is affine;
  ``"additive"`` is volume-preserving and available.
* ``n_layers=4``: Neural Parts' block count.
* ``mask_schedule="cycle"`` with ``kept_dims=2``: layer ``l`` transforms coordinate ``l mod 3`` and
  conditions on the other two (x|yz-type "1D/2D" splits of the patent; Neural Parts also keeps 2
  of 3). ``kept_dims=1`` keeps one coordinate and transforms two; ``"random"`` draws a stored
  permutation per layer from ``mask_seed``.
* ``bone_rot_encoding="6d"``, ``pose_code_dim=32``, ``spatial_embedding="siren"``: the documented
  defaults; 6D is continuous (Zhou et al.), SIREN matches INS's "w/o SIREN" ablation.
* ``spatial_omega0=10`` (not SIREN's 30): on metre-scale coordinates ω0 = 30 puts wiggles of a
  few centimetres into the deformation field; the PIN then has large Jacobians (float32 round
  trips lose digits, and H_d in front of the LBS root finder makes Broyden's job harder). 10 keeps
  the sine embedding at body-part scale. The occupancy SIREN keeps ω0 = 30 (surface detail).
* Bone encoder: one bias-free MLP per bone (``per_bone_encoder=True``), because the slides say each
  bone pose is encoded separately; ``encoder_width=64``, one hidden GELU layer.
* Spatial bone weights from a linear head on the spatial embedding (shares its features; cheap).
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

from jaxpose.geometry.rotations import matrix_to_axis_angle, matrix_to_quaternion, matrix_to_rotation_6d
from jaxpose.nn.mlp import MLP, lecun_uniform
from jaxpose.nn.siren import SineLayer

ROTATION_ENCODINGS = {"6d": 6, "matrix": 9, "quaternion": 4, "axis_angle": 3}
"""Bone rotation encodings and their widths; each is shifted so the identity encodes to zero."""

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


def check_bone_transforms(bone_transforms: jax.Array, num_joints: int, where: str) -> None:
    """Raise ValueError unless ``bone_transforms`` is (num_joints, 4, 4) (and finite when concrete)."""
    if bone_transforms.shape != (num_joints, 4, 4):
        raise ValueError(
            f"{where}: bone_transforms must be the {num_joints} rectified bone transforms of one pose, "
            f"shape ({num_joints}, 4, 4); got {bone_transforms.shape}"
        )
    if not isinstance(bone_transforms, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(bone_transforms))):
        raise ValueError(f"{where}: bone_transforms contains NaN or Inf")


def bone_pose_features(bone_transforms: jax.Array, rot_encoding: str = "6d", *, use_rotation: bool = True,
                       use_translation: bool = True) -> jax.Array:
    """Per-bone pose input that is exactly zero for the identity transform.

    Args:
      bone_transforms: (..., J, 4, 4) rectified bone transforms B_b = T_b(θ) T_b(θ_c)⁻¹.
      rot_encoding: "6d" (first two columns of R − I), "matrix" (R − I, 9), "quaternion"
        (q − (1, 0, 0, 0) with w ≥ 0) or "axis_angle" (3, radians).
      use_rotation / use_translation: include the rotation / the translation t_b (metres).
    Returns:
      (..., J, D) with D = width(rot_encoding)·use_rotation + 3·use_translation.
    """
    if rot_encoding not in ROTATION_ENCODINGS:
        raise ValueError(f"bone_rot_encoding must be one of {sorted(ROTATION_ENCODINGS)}, got {rot_encoding!r}")
    if not (use_rotation or use_translation):
        raise ValueError("the bone pose encoder needs use_rotation or use_translation (both are False)")
    if bone_transforms.shape[-2:] != (4, 4):
        raise ValueError(f"bone_transforms must be (..., J, 4, 4), got {bone_transforms.shape}")
    rotation = bone_transforms[..., :3, :3]
    lead = (1,) * (bone_transforms.ndim - 2)  # explicit broadcasting of the identity's encoding
    parts = []
    if use_rotation:
        if rot_encoding == "6d":
            identity = jnp.asarray([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], rotation.dtype)
            encoded = matrix_to_rotation_6d(rotation) - identity.reshape(lead + (6,))
        elif rot_encoding == "matrix":
            encoded = (rotation - jnp.eye(3, dtype=rotation.dtype).reshape(lead + (3, 3))).reshape(rotation.shape[:-2] + (9,))
        elif rot_encoding == "quaternion":
            encoded = matrix_to_quaternion(rotation) - jnp.asarray([1.0, 0.0, 0.0, 0.0], rotation.dtype).reshape(lead + (4,))
        else:
            encoded = matrix_to_axis_angle(rotation)
        parts.append(encoded)
    if use_translation:
        parts.append(bone_transforms[..., :3, 3])
    return jnp.concatenate(parts, axis=-1)


class BonePoseEncoder(nnx.Module):
    """Bone pose encoder: rectified transforms (J, 4, 4) -> bone codes e (J, code_dim).

    Each bone's (rotation, translation) input goes through its own bias-free MLP
    (``per_bone=True``; one shared MLP otherwise): D -> ``width`` (GELU) -> ``code_dim``. Bias-free
    with gelu(0) = 0, so the canonical pose (zero input) gives exactly zero codes.
    """

    def __init__(self, num_joints: int = 24, code_dim: int = 32, *, rot_encoding: str = "6d",
                 use_rotation: bool = True, use_translation: bool = True, width: int = 64,
                 per_bone: bool = True, rngs: nnx.Rngs, dtype=jnp.float32):
        self.num_joints = num_joints
        self.rot_encoding = rot_encoding
        self.use_rotation = use_rotation
        self.use_translation = use_translation
        in_dim = bone_pose_features(jnp.eye(4, dtype=dtype)[None], rot_encoding, use_rotation=use_rotation,
                                    use_translation=use_translation).shape[-1]
        self.in_dim = in_dim
        lead = (num_joints,) if per_bone else ()
        self.per_bone = per_bone
        self.kernel_in = nnx.Param(lecun_uniform(rngs.params(), lead + (in_dim, width), in_dim, dtype))
        self.kernel_out = nnx.Param(lecun_uniform(rngs.params(), lead + (width, code_dim), width, dtype))

    def __call__(self, bone_transforms: jax.Array) -> jax.Array:
        """(J, 4, 4) -> (J, code_dim)."""
        check_bone_transforms(bone_transforms, self.num_joints, "BonePoseEncoder")
        features = bone_pose_features(bone_transforms, self.rot_encoding, use_rotation=self.use_rotation,
                                      use_translation=self.use_translation)
        if self.per_bone:
            hidden = jax.nn.gelu(jnp.einsum("jd,jdh->jh", features, self.kernel_in[...]))
            return jnp.einsum("jh,jhk->jk", hidden, self.kernel_out[...])
        return jnp.matmul(jax.nn.gelu(jnp.matmul(features, self.kernel_in[...])), self.kernel_out[...])


@dataclasses.dataclass(frozen=True)
class PINConfig:
    """Every knob of a PIN; see the module docstring for the defaults' reasons."""

    n_layers: int = 4
    coupling: Literal["affine", "additive"] = "affine"
    mask_schedule: Literal["cycle", "random"] = "cycle"
    kept_dims: int = 2
    mask_seed: int = 0
    pose_code_dim: int = 32
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
    """One pose-conditioned coupling layer (see the module docstring); kept coordinates ``kept``."""

    def __init__(self, kept: tuple[int, ...], config: PINConfig, num_joints: int, *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.kept = tuple(kept)
        self.changed = tuple(i for i in range(3) if i not in self.kept)
        self.config = config
        k = config.pose_code_dim
        self.embedding = SpatialEmbedding(len(self.kept), k, kind=config.spatial_embedding,
                                          width=config.embed_width, depth=config.embed_depth,
                                          omega0=config.spatial_omega0,
                                          num_frequencies=config.fourier_frequencies, rngs=rngs, dtype=dtype)
        self.bone_logits = MLP(k, 1, 0, num_joints, rngs=rngs, dtype=dtype)
        head_in = k if config.pose_combine == "multiply" else 2 * k
        n_out = len(self.changed)
        head = dict(activation="gelu", use_bias=False, zero_init_output=config.zero_init_heads, rngs=rngs, dtype=dtype)
        self.shift_head = MLP(head_in, config.head_width, config.head_depth, n_out, **head)
        self.log_scale_head = (
            MLP(head_in, config.head_width, config.head_depth, n_out, **head) if config.coupling == "affine" else None
        )

    def spatial_bone_weights(self, x_kept: jax.Array) -> jax.Array:
        """ω(x_a): (..., len(kept)) -> (..., J), softmax over bones."""
        return jax.nn.softmax(self.bone_logits(self.embedding(x_kept)), axis=-1)

    def conditioner(self, x_kept: jax.Array, bone_codes: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(log-scale s, shift t), each (..., len(changed)), from x_a (..., len(kept)) and e (J, k)."""
        phi = self.embedding(x_kept)
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
        """Bone codes e (J, pose_code_dim) of one pose."""
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
