"""Invertible Neural Skinning (INS, Kant et al., CVPR 2023): canonical occupancy behind PINs and LBS.

Spaces (metres): deformed x_d (the posed subject), LBS-output x′, pose-dependent canonical x″,
pose-independent canonical x_c (where the pose-free occupancy network is read).

Query (training and IoU), deformed point → occupancy logit::

    x′ = H_d(x_d; θ)                       PIN on the deformed side of LBS
    x″ = LBS⁻¹(x′; θ)                      one candidate per initial bone (root finding)
    x_c = H_c(x″; θ)                       PIN, pose-dependent → pose-independent canonical
    logit = aggregate_i o(x_c,i)           SNARF's soft blend in training, max at evaluation

Reposing (extract the canonical mesh once, then move its vertices), the exact inverse::

    x″ = H_c⁻¹(x_c; θ),  x′ = Σ_b w_b(x″) B_b x″,  x_d = H_d⁻¹(x′; θ)

Pose input: ``bone_transforms`` (J, 4, 4), the rectified bone transforms B_b = T_b(θ) T_b(θ_c)⁻¹ of
ONE frame, computed outside by ``jaxpose.bodies.rectified_bone_transforms(body, betas,
pose, canonical_pose)``. They drive LBS and both PINs' bone pose encoders; the identity (the
canonical pose) makes both PINs exact identities, so INS then reduces to (inverse) LBS. (Computed
as T(θ_c) T(θ_c)⁻¹, the transforms of the canonical pose are the identity only up to float rounding,
~1e-7, and the PINs then move points by the same order.) vmap over frames outside.

INS has no public code and its paper body was not read: the choices below are knobs
(docs/skinning.md, "INS pipeline"), with these defaults and reasons.

* ``lbs_inversion="broyden"``: skinning weights live on the canonical side (SNARF's field), LBS is
  inverted by ``invert_lbs`` (Broyden, implicit gradients). Reposing is then closed-form forward
  LBS, which is what makes "extract once, repose fast" work. ``"backward_weights"``: weights
  predicted on the deformed side from (x′, pose) and the blended transform inverted in closed form
  (one root, always valid); reposing then needs an iterative solve (``repose`` runs Broyden on the
  deformed side), so it loses that speed advantage.
* Root aggregation in training, ``aggregation="snarf"`` (default): SNARF's code (``masked_softmax``,
  ``jaxpose.skinning.snarf.aggregate_root_logits``) — per root p_i = σ(logit_i), weights
  softmax_i(5 p_i) over the valid (converged) roots, p = Σ_i w_i p_i, returned as the logit of p
  clamped to [eps, 1 − eps] (float eps; a point with no valid root gets logit(eps) ≈ −15.9 in
  float32). ``"logit_softmax"``: Σ_i softmax_i(5 logit_i) logit_i over the valid roots, invalid
  roots counted as ``INVALID_LOGIT`` (this module's behaviour before the option; it blends logits,
  not probabilities, so it is NOT SNARF's). The temperature 5 is ``train_temperature``.
  Evaluation (both): max over the valid roots' logits; a point with no valid root gets
  ``INVALID_LOGIT`` (−1e5, finite so BCE stays finite) and is classified outside.
* Initial bones: SNARF's 9 in training, all 24 at evaluation; Broyden 50 steps, tol 1e-5,
  divergence 1 m (SNARF). ``__call__`` / ``canonicalize`` also take per-point initial bones
  ``init_bones`` (N, I) (a pre-filter, e.g. the k bones of each point's nearest vertex of the posed
  minimal body, ``jaxpose.geometry.root_finding.nearest_vertex_bones``); None = the config's bones.
* Occupancy network: SIREN 5 × 256, ω0 = 30, pose-free, one logit ([unverified] default,
  docs/skinning.md, "Occupancy and skinning networks"). ``use_siren=False`` ("w/o SIREN"): a
  softplus(β = 100) MLP of the same size (SNARF's activation) — and the PINs' SIREN spatial
  embeddings become ReLU MLPs, since which SIREN the ablation removes is not known.
* Skinning field: SNARF's (4 × 128, logits × 20, flat softmax).
* Both PINs share one ``PINConfig`` (see ``jaxpose.skinning.pin`` for its defaults).

Ablation switches (INS Table 3): ``use_pose_multiplication=False`` → ``pose_combine="concat"``
(the PINs are then no longer the identity at the canonical pose — that is the point of the
ablation); ``use_siren``; ``use_rotation=False`` → bone encoders see translations only;
``use_h_d`` / ``use_h_c`` = False → that PIN is the identity (not built); ``use_lbs=False`` → no
skinning: H_d and H_c compose directly (x_c = H_c(H_d(x_d)), one always-valid root), so the PINs
alone must carry the whole articulated deformation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.geometry.root_finding import SNARF_TEST_BONES, SNARF_TRAIN_BONES, broyden, inverse_3x3, invert_lbs
from jaxpose.skinning.pin import PIN, PINConfig, bone_pose_features, check_bone_transforms
from jaxpose.skinning.field import SkinningField, lbs_points
from jaxpose.skinning.snarf import aggregate_root_logits as snarf_aggregate_root_logits
from jaxpose.nn.mlp import MLP
from jaxpose.nn.siren import Siren

INVALID_LOGIT = -1e5
"""Occupancy logit given to non-converged LBS roots (classified outside; finite, so BCE stays finite)."""


AGGREGATIONS = ("snarf", "logit_softmax")
"""Training-time root aggregations (module docstring)."""


def aggregate_root_logits(logits: jax.Array, valid: jax.Array, *, training: bool, temperature: float = 5.0,
                          aggregation: Literal["snarf", "logit_softmax"] = "snarf") -> jax.Array:
    """Combine per-root logits (N, I) with validity (N, I) into one logit per point (N,).

    training, ``aggregation="snarf"``: SNARF's soft blend of probabilities p_i = σ(l_i) with weights
    softmax(temperature · p) over the valid roots, back to a logit (clamped at eps; no valid root →
    logit(eps)); ``"logit_softmax"``: Σ_i softmax(temperature · l)_i · l_i over valid roots (invalid
    roots count as ``INVALID_LOGIT``). Evaluation: max over valid roots, ``INVALID_LOGIT`` where
    none is valid.
    """
    if logits.shape != valid.shape or logits.ndim != 2:
        raise ValueError(f"logits and valid must both be (N, I), got {logits.shape} and {valid.shape}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    masked = jnp.where(valid, logits, INVALID_LOGIT)
    if not training:
        return jnp.max(masked, axis=-1)
    if aggregation == "snarf":
        return snarf_aggregate_root_logits(logits, valid, training=True, soft_blend=temperature)
    weights = jax.nn.softmax(temperature * masked, axis=-1)
    return jnp.sum(weights * masked, axis=-1)


@dataclasses.dataclass(frozen=True)
class INSConfig:
    """Every knob of the INS model; see the module docstring for the defaults' reasons."""

    num_joints: int = 24
    pin: PINConfig = PINConfig()
    occupancy_width: int = 256
    occupancy_depth: int = 5
    occupancy_omega0: float = 30.0
    skinning_width: int = 128
    skinning_depth: int = 4
    skinning_logit_scale: float = 20.0
    skinning_hierarchical: bool = False
    lbs_inversion: Literal["broyden", "backward_weights"] = "broyden"
    train_init_bones: tuple[int, ...] = SNARF_TRAIN_BONES
    eval_init_bones: tuple[int, ...] = SNARF_TEST_BONES
    root_max_steps: int = 50
    root_tol: float = 1e-5
    root_diverge: float = 1.0
    root_jacobian_init: Literal["blend", "autodiff"] = "blend"
    root_chunk_size: int | None = None
    train_temperature: float = 5.0
    aggregation: Literal["snarf", "logit_softmax"] = "snarf"
    use_pose_multiplication: bool = True
    use_siren: bool = True
    use_rotation: bool = True
    use_h_d: bool = True
    use_h_c: bool = True
    use_lbs: bool = True

    def __post_init__(self):
        if self.lbs_inversion not in ("broyden", "backward_weights"):
            raise ValueError(f"INSConfig.lbs_inversion must be 'broyden' or 'backward_weights', got {self.lbs_inversion!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"INSConfig.aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if not (self.use_lbs or self.use_h_d or self.use_h_c):
            raise ValueError("INSConfig: use_lbs, use_h_d and use_h_c are all False — the model could not deform at all")
        for name in ("train_init_bones", "eval_init_bones"):
            bones = getattr(self, name)
            if not bones or any(not 0 <= b < self.num_joints for b in bones):
                raise ValueError(f"INSConfig.{name} must be non-empty bone ids in [0, {self.num_joints}), got {bones}")
        if not isinstance(self.pin, PINConfig):
            raise ValueError(f"INSConfig.pin must be a PINConfig, got {type(self.pin).__name__}")

    def resolved_pin_config(self) -> PINConfig:
        """The PIN configuration after applying the ablation switches."""
        pin = self.pin
        changes = {}
        if not self.use_pose_multiplication:
            changes["pose_combine"] = "concat"
        if not self.use_rotation:
            changes["use_rotation"] = False
            changes["use_translation"] = True
        if not self.use_siren and pin.spatial_embedding == "siren":
            changes["spatial_embedding"] = "mlp"
        return dataclasses.replace(pin, **changes)


class BackwardSkinningField(nnx.Module):
    """Deformed-side, pose-conditioned skinning weights for ``lbs_inversion="backward_weights"``.

    (x′ (..., 3), bone_transforms (J, 4, 4)) -> weights (..., J): a softplus(β = 100) MLP on
    [x′, flattened (R_b − I, t_b) of all bones], logits × ``logit_scale``, softmax.
    """

    def __init__(self, num_joints: int, *, width: int, depth: int, logit_scale: float, rngs: nnx.Rngs):
        self.num_joints = num_joints
        self.logit_scale = float(logit_scale)
        self.net = MLP(3 + num_joints * 12, width, depth, num_joints, activation="softplus", softplus_beta=100.0,
                       rngs=rngs)

    def __call__(self, x: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        pose = bone_pose_features(bone_transforms, "matrix").reshape(-1)
        pose = jnp.broadcast_to(pose, x.shape[:-1] + pose.shape)
        return jax.nn.softmax(self.logit_scale * self.net(jnp.concatenate([x, pose], axis=-1)), axis=-1)


def _blend(weights: jax.Array, bone_transforms: jax.Array) -> jax.Array:
    """Blended affine transforms I + Σ_b w_b (B_b − I): weights (N, J), transforms (J, 4, 4) -> (N, 3, 4)."""
    eye34 = jnp.eye(3, 4, dtype=bone_transforms.dtype)
    delta = jnp.einsum("nj,jab->nab", weights, bone_transforms[:, :3, :] - eye34[None])
    return eye34[None] + delta


def _check_points(x: jax.Array, where: str) -> None:
    if x.ndim != 2 or x.shape[-1] != 3:
        raise ValueError(f"{where}: points must have shape (N, 3), got {x.shape}")


def _check_init_bones(init_bones: jax.Array, num_points: int, num_joints: int, where: str) -> None:
    """Per-point initial bones must be an int array (N, I) of ids in [0, J) (range checked when concrete)."""
    if init_bones.ndim != 2 or init_bones.shape[0] != num_points or not jnp.issubdtype(init_bones.dtype, jnp.integer):
        raise ValueError(f"{where}: init_bones must be an integer array of shape ({num_points}, I), got "
                         f"{init_bones.shape} {init_bones.dtype}")
    if init_bones.shape[1] == 0:
        raise ValueError(f"{where}: init_bones needs at least one bone per point")
    if not isinstance(init_bones, jax.core.Tracer):
        ids = np.asarray(init_bones)
        if ids.min() < 0 or ids.max() >= num_joints:
            raise ValueError(f"{where}: init_bones must be bone ids in [0, {num_joints}), got [{ids.min()}, {ids.max()}]")


class INS(nnx.Module):
    """The INS model. ``INS(config=INSConfig(...), *, rngs)`` or ``INS(rngs=..., **INSConfig fields)``.

    Main entry points (points in metres, one frame's ``bone_transforms`` (J, 4, 4)):
      ``__call__(x_d (N, 3), bone_transforms, *, training=False, init_bones=None)`` → logits (N,);
      ``canonicalize(x_d, bone_transforms, *, training=False, init_bones=None)``
        → (x_c (N, I, 3), valid (N, I));
      ``repose(canonical_vertices (V, 3), bone_transforms)`` → deformed vertices (V, 3);
      ``canonical_occupancy(x_c (..., 3))`` → logits (...).
    """

    def __init__(self, config: INSConfig | None = None, *, rngs: nnx.Rngs, **overrides):
        config = dataclasses.replace(config or INSConfig(), **overrides)
        self.config = config
        num_joints = config.num_joints
        if config.use_siren:
            self.occupancy = Siren(3, config.occupancy_width, config.occupancy_depth, 1,
                                   omega0=config.occupancy_omega0, rngs=rngs)
        else:
            self.occupancy = MLP(3, config.occupancy_width, config.occupancy_depth, 1, activation="softplus",
                                 softplus_beta=100.0, rngs=rngs)
        pin_config = config.resolved_pin_config()
        self.h_d = PIN(num_joints, config=pin_config, rngs=rngs) if config.use_h_d else None
        self.h_c = PIN(num_joints, config=pin_config, rngs=rngs) if config.use_h_c else None
        broyden_lbs = config.use_lbs and config.lbs_inversion == "broyden"
        self.skinning = SkinningField(
            num_joints, width=config.skinning_width, depth=config.skinning_depth,
            logit_scale=config.skinning_logit_scale, hierarchical=config.skinning_hierarchical, rngs=rngs,
        ) if broyden_lbs else None
        self.backward_skinning = BackwardSkinningField(
            num_joints, width=config.skinning_width, depth=config.skinning_depth,
            logit_scale=config.skinning_logit_scale, rngs=rngs,
        ) if config.use_lbs and not broyden_lbs else None

    def canonical_occupancy(self, x_c: jax.Array) -> jax.Array:
        """Pose-free occupancy logit of pose-independent canonical points: (..., 3) -> (...)."""
        if x_c.shape[-1] != 3:
            raise ValueError(f"canonical_occupancy: points must have shape (..., 3), got {x_c.shape}")
        return self.occupancy(x_c)[..., 0]

    def _invert_skinning(self, x_lbs: jax.Array, bone_transforms: jax.Array, training: bool,
                         init_bones: jax.Array | None):
        """x′ (N, 3) -> (x″ (N, I, 3), valid (N, I))."""
        cfg = self.config
        if not cfg.use_lbs:
            return x_lbs[:, None, :], jnp.ones(x_lbs.shape[:1] + (1,), bool)
        if cfg.lbs_inversion == "broyden":
            if init_bones is None:
                init_bones = cfg.train_init_bones if training else cfg.eval_init_bones
            return invert_lbs(
                x_lbs, self.skinning, bone_transforms,
                init_bones=init_bones,
                max_steps=cfg.root_max_steps, tol=cfg.root_tol, diverge=cfg.root_diverge,
                jacobian_init=cfg.root_jacobian_init, chunk_size=cfg.root_chunk_size,
            )
        blended = _blend(self.backward_skinning(x_lbs, bone_transforms), bone_transforms)
        x_canonical = jnp.einsum("nab,nb->na", inverse_3x3(blended[:, :, :3]), x_lbs - blended[:, :, 3])
        valid = jnp.all(jnp.isfinite(x_canonical), axis=-1)
        return x_canonical[:, None, :], valid[:, None]

    def canonicalize(self, x_deformed: jax.Array, bone_transforms: jax.Array, *, training: bool = False,
                     init_bones: jax.Array | None = None):
        """Query-path canonicalisation: x_d (N, 3) -> (x_c (N, I, 3), valid (N, I)).

        I = number of initial bones (broyden) or 1 (backward weights, no LBS). ``init_bones``: None
        (the config's train / eval bones) or an int array (N, I) of per-point bone ids, a nearest-bones
        pre-filter (``nearest_vertex_bones``); ignored where there is a single root (I = 1).
        Differentiable in the parameters (implicit gradients through the root finding).
        """
        _check_points(x_deformed, "INS.canonicalize")
        check_bone_transforms(bone_transforms, self.config.num_joints, "INS.canonicalize")
        if init_bones is not None:
            init_bones = jnp.asarray(init_bones)
            _check_init_bones(init_bones, x_deformed.shape[0], self.config.num_joints, "INS.canonicalize")
        x_lbs = self.h_d.forward(x_deformed, bone_transforms) if self.h_d is not None else x_deformed
        x_pose_canonical, valid = self._invert_skinning(x_lbs, bone_transforms, training, init_bones)
        if self.h_c is not None:
            x_pose_canonical = self.h_c.forward(x_pose_canonical, bone_transforms)
        return x_pose_canonical, valid

    def __call__(self, x_deformed: jax.Array, bone_transforms: jax.Array, *, training: bool = False,
                 init_bones: jax.Array | None = None) -> jax.Array:
        """Occupancy logits (N,) of deformed points x_d (N, 3) in the pose of ``bone_transforms``.

        ``init_bones``: None or per-point initial bones (N, I), as in ``canonicalize``.
        """
        x_canonical, valid = self.canonicalize(x_deformed, bone_transforms, training=training,
                                               init_bones=init_bones)
        logits = self.canonical_occupancy(x_canonical)
        return aggregate_root_logits(logits, valid, training=training, temperature=self.config.train_temperature,
                                     aggregation=self.config.aggregation)

    def _forward_skinning(self, x_pose_canonical: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        cfg = self.config
        if not cfg.use_lbs:
            return x_pose_canonical
        if cfg.lbs_inversion == "broyden":
            return lbs_points(x_pose_canonical, self.skinning(x_pose_canonical), bone_transforms)
        return self._solve_backward_skinning(x_pose_canonical, bone_transforms)

    def _solve_backward_skinning(self, x_pose_canonical: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        """Backward-weights mode: find x′ with LBS⁻¹(x′) = x″ by Broyden from every eval init bone."""
        cfg = self.config
        bones = jnp.asarray(cfg.eval_init_bones, jnp.int32)
        num_points, num_init = x_pose_canonical.shape[0], bones.shape[0]
        targets = jnp.repeat(x_pose_canonical, num_init, axis=0)
        flat_bones = jnp.tile(bones, num_points)
        x_init = jnp.einsum("nab,nb->na", bone_transforms[flat_bones, :3, :3], targets) + bone_transforms[flat_bones, :3, 3]

        def residual_fn(x_lbs):
            blended = _blend(self.backward_skinning(x_lbs, bone_transforms), bone_transforms)
            return jnp.einsum("nab,nb->na", inverse_3x3(blended[:, :, :3]), x_lbs - blended[:, :, 3]) - targets

        # ∂LBS⁻¹/∂x′ ≈ (blended rotation)⁻¹, so the inverse Jacobian starts at the blended rotation.
        blended = _blend(self.backward_skinning(x_init, bone_transforms), bone_transforms)
        result = broyden(residual_fn, x_init, blended[:, :, :3], max_steps=cfg.root_max_steps, tol=cfg.root_tol,
                         diverge=cfg.root_diverge)
        residual = result.residual_norm.reshape(num_points, num_init)
        best = jnp.argmin(residual, axis=1)
        return result.x.reshape(num_points, num_init, 3)[jnp.arange(num_points), best]

    def repose(self, canonical_vertices: jax.Array, bone_transforms: jax.Array) -> jax.Array:
        """Move pose-independent canonical points (V, 3) to the pose of ``bone_transforms``: (V, 3).

        x″ = H_c⁻¹(x_c), x′ = Σ_b w_b(x″) B_b x″, x_d = H_d⁻¹(x′) — closed form in the default
        (broyden) mode; the exact inverse of ``canonicalize`` at its converged roots.
        """
        _check_points(canonical_vertices, "INS.repose")
        check_bone_transforms(bone_transforms, self.config.num_joints, "INS.repose")
        x = canonical_vertices
        if self.h_c is not None:
            x = self.h_c.inverse(x, bone_transforms)
        x = self._forward_skinning(x, bone_transforms)
        if self.h_d is not None:
            x = self.h_d.inverse(x, bone_transforms)
        return x


def occupancy_bce(logits: jax.Array, occupancy: jax.Array) -> jax.Array:
    """Mean binary cross-entropy with logits: logits (N,), occupancy labels (N,) in {0, 1}. Scalar."""
    if logits.shape != occupancy.shape:
        raise ValueError(f"logits {logits.shape} and occupancy labels {occupancy.shape} must have the same shape")
    labels = occupancy.astype(logits.dtype)
    return jnp.mean(jax.nn.softplus(logits) - labels * logits)


__all__: Sequence[str] = (
    "INS",
    "INSConfig",
    "INVALID_LOGIT",
    "AGGREGATIONS",
    "BackwardSkinningField",
    "aggregate_root_logits",
    "occupancy_bce",
)
