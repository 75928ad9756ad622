"""SNARF (Chen et al., ICCV 2021) and SNARF-NC: canonical occupancy + learned skinning + root finding.

A deformed (posed) point x_d is mapped to its canonical correspondences by inverse LBS
(`jaxpose.geometry.root_finding.invert_lbs`, several initial bones, implicit gradients), the canonical
occupancy network is evaluated at every root, and the per-root logits are aggregated over the valid
(converged) roots — SNARF's `masked_softmax`:
  * training: p_i = σ(logit_i); p = Σ_i softmax_i(5 p_i) p_i over valid roots; logit(p) with p clamped
    to [eps, 1 − eps] (no valid root → p = 0 → logit(eps), as torch's Bernoulli does);
  * evaluation: max over valid roots of the logits; no valid root → −∞ (outside).

Canonical occupancy network (`OccupancyNetwork`): MLP `depth` × `width` (SNARF 8 × 256), softplus
β = 100, skip connection re-injecting the input embedding at layer 4 (concatenated, then / √2),
optional weight normalisation, geometric (sphere) initialisation with positive logits inside a
sphere of `init_radius` metres. Pose conditioning (SNARF's `cond = thetas[3:] / π`, the 69 body-pose
axis-angle values without the global orientation), two variants:
  * CAPE config: 4-frequency positional encoding (27-d input), raw pose / π concatenated at layer 0
    (`num_frequencies=4, pose_layer=0, pose_embed_dim=None`, the defaults);
  * D-FAUST config: no encoding, an 8-d linear embedding of pose / π at layer 4
    (`num_frequencies=0, pose_layer=4, pose_embed_dim=8`).
SNARF-NC = `SNARF(pose_conditioned=False)`: the canonical shape ignores the pose, so one canonical
mesh extraction serves every pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.bodies.skeleton import SMPL_PARENTS
from jaxpose.geometry.root_finding import SNARF_TEST_BONES, SNARF_TRAIN_BONES, invert_lbs, map_in_chunks
from jaxpose.skinning.field import SkinningField, softplus100

SOFT_BLEND = 5.0
"""SNARF's temperature of the softmax over per-root occupancy probabilities in training."""


def positional_encoding(x: jax.Array, num_frequencies: int) -> jax.Array:
    """[x, sin(2^k x), cos(2^k x) for k < num_frequencies] (IDR / NeRF style, no π): (…, 3) → (…, 3 + 6F)."""
    if num_frequencies == 0:
        return x
    parts = [x]
    for k in range(num_frequencies):
        parts += [jnp.sin(x * 2.0**k), jnp.cos(x * 2.0**k)]
    return jnp.concatenate(parts, axis=-1)


class _Dense(nnx.Module):
    """Linear layer y = x W + b with explicit initial values and optional weight normalisation
    (W = g · v / ‖v‖ per output unit, g initialised to ‖v‖ so the initial W is the one given)."""

    def __init__(self, kernel: jax.Array, bias: jax.Array, weight_norm: bool):
        self.weight_norm = weight_norm
        self.kernel = nnx.Param(kernel)
        self.bias = nnx.Param(bias)
        if weight_norm:
            self.gain = nnx.Param(jnp.sqrt(jnp.sum(kernel * kernel, axis=0)))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.weight_norm:
            norm = jnp.sqrt(jnp.sum(kernel * kernel, axis=0))
            kernel = kernel * (self.gain[...] / jnp.maximum(norm, 1e-12))[None, :]
        y = x @ kernel
        return y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))


class OccupancyNetwork(nnx.Module):
    """SNARF's canonical shape MLP: points (N, 3) [+ condition (C,)] → occupancy logits (N,).

    Linear layers 0…depth (depth hidden layers of `width`, then 1 output). Layer 0 sees the
    positional encoding of x (plus the condition if `cond_layer == 0`); each layer in `skip_layers`
    sees [h, encoding] / √2; layer `cond_layer` > 0 additionally sees the condition.
    """

    def __init__(
        self,
        *,
        width: int = 256,
        depth: int = 8,
        skip_layers: Sequence[int] = (4,),
        num_frequencies: int = 0,
        cond_dim: int = 0,
        cond_layer: int = 0,
        geometric_init: bool = True,
        init_radius: float = 0.5,
        weight_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        if depth < 1 or width < 1:
            raise ValueError(f"OccupancyNetwork needs depth >= 1 and width >= 1, got {depth}, {width}")
        if any(not 0 < s <= depth for s in skip_layers):
            raise ValueError(f"skip_layers must be in (0, {depth}], got {tuple(skip_layers)}")
        if cond_dim and not 0 <= cond_layer <= depth:
            raise ValueError(f"cond_layer must be in [0, {depth}], got {cond_layer}")
        self.num_frequencies = int(num_frequencies)
        self.skip_layers = tuple(int(s) for s in skip_layers)
        self.cond_dim = int(cond_dim)
        self.cond_layer = int(cond_layer)
        embed_dim = 3 + 6 * self.num_frequencies
        layers = []
        for layer in range(depth + 1):
            in_dim = embed_dim if layer == 0 else width
            extra_embed = layer in self.skip_layers
            in_dim += embed_dim if extra_embed else 0
            has_cond = self.cond_dim > 0 and layer == self.cond_layer
            in_dim += self.cond_dim if has_cond else 0
            out_dim = 1 if layer == depth else width
            key = rngs.params()
            if geometric_init and layer == depth:
                kernel = -math.sqrt(math.pi) / math.sqrt(in_dim) + 1e-4 * jax.random.normal(key, (in_dim, out_dim))
                bias = jnp.full((out_dim,), init_radius)
            elif geometric_init:
                kernel = math.sqrt(2.0) / math.sqrt(out_dim) * jax.random.normal(key, (in_dim, out_dim))
                # Only raw xyz drives the initial field: encoding extras and the condition start at 0,
                # so the network starts as the same sphere for every pose.
                mask = np.zeros(in_dim, bool)
                if layer == 0:
                    mask[3:embed_dim] = True
                if extra_embed:
                    mask[width + 3 : width + embed_dim] = True
                if has_cond:
                    mask[in_dim - self.cond_dim :] = True
                kernel = jnp.where(jnp.asarray(mask)[:, None], 0.0, kernel)
                bias = jnp.zeros((out_dim,))
            else:  # PyTorch's nn.Linear default
                bound = 1.0 / math.sqrt(in_dim)
                k_kernel, k_bias = jax.random.split(key)
                kernel = jax.random.uniform(k_kernel, (in_dim, out_dim), minval=-bound, maxval=bound)
                bias = jax.random.uniform(k_bias, (out_dim,), minval=-bound, maxval=bound)
            layers.append(_Dense(kernel, bias, weight_norm))
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        if x.ndim != 2 or x.shape[-1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {x.shape}")
        if self.cond_dim:
            if cond is None or cond.shape != (self.cond_dim,):
                raise ValueError(f"this network needs a condition of shape ({self.cond_dim},), got {None if cond is None else cond.shape}")
            cond_rows = jnp.broadcast_to(cond.astype(x.dtype), (x.shape[0], self.cond_dim))
        embedding = positional_encoding(x, self.num_frequencies)
        h = embedding
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            if index in self.skip_layers:
                h = jnp.concatenate([h, embedding], axis=-1) / math.sqrt(2.0)
            if self.cond_dim and index == self.cond_layer:
                h = jnp.concatenate([h, cond_rows], axis=-1)
            h = layer(h)
            if index < last:
                h = softplus100(h)
        return h[:, 0]


def aggregate_root_logits(logits: jax.Array, valid: jax.Array, *, training: bool, soft_blend: float = SOFT_BLEND) -> jax.Array:
    """SNARF's aggregation of per-root occupancy logits (N, I) with validity (N, I) → (N,).

    training: softmax (temperature `soft_blend`) over valid roots of their probabilities, the
    probability-weighted mean, back to a logit (clamped to [eps, 1−eps]); evaluation: max over valid
    logits, −∞ where no root is valid.
    """
    if logits.shape != valid.shape or logits.ndim != 2:
        raise ValueError(f"logits and valid must both be (N, I), got {logits.shape} and {valid.shape}")
    if not training:
        return jnp.max(jnp.where(valid, logits, -jnp.inf), axis=-1)
    probs = jax.nn.sigmoid(logits)
    scores = jnp.where(valid, soft_blend * probs, -jnp.inf)
    top = jnp.max(jnp.where(valid, scores, 0.0), axis=-1, keepdims=True)
    exps = jnp.where(valid, jnp.exp(jnp.where(valid, scores, 0.0) - top), 0.0)
    total = jnp.sum(exps, axis=-1)
    prob = jnp.sum(exps * probs, axis=-1) / jnp.where(total > 0, total, 1.0)
    eps = jnp.finfo(logits.dtype).eps
    prob = jnp.clip(prob, eps, 1.0 - eps)
    return jnp.log(prob) - jnp.log1p(-prob)


class SNARF(nnx.Module):
    """SNARF / SNARF-NC occupancy of posed points.

    Pose inputs: `pose` (24, 3) axis-angle radians (SMPL order; only pose[1:] conditions the shape)
    and `transforms` (24, 4, 4) bone transforms canonical → posed (`rectified_bone_transforms` with
    the star canonical pose).
    """

    def __init__(
        self,
        *,
        pose_conditioned: bool = True,
        width: int = 256,
        depth: int = 8,
        skip_layers: Sequence[int] = (4,),
        num_frequencies: int = 4,
        pose_layer: int = 0,
        pose_embed_dim: int | None = None,
        geometric_init: bool = True,
        init_radius: float = 0.5,
        weight_norm: bool = False,
        num_joints: int = 24,
        parents: Sequence[int] = SMPL_PARENTS,
        skinning_width: int = 128,
        skinning_depth: int = 4,
        skinning_hierarchical: bool = True,
        logit_scale: float = 20.0,
        soft_blend: float = SOFT_BLEND,
        train_bones: Sequence[int] = SNARF_TRAIN_BONES,
        test_bones: Sequence[int] = SNARF_TEST_BONES,
        max_steps: int = 50,
        tol: float = 1e-5,
        diverge: float = 1.0,
        rngs: nnx.Rngs,
    ):
        self.pose_conditioned = bool(pose_conditioned)
        self.num_joints = int(num_joints)
        self.soft_blend = float(soft_blend)
        self.train_bones = tuple(int(b) for b in train_bones)
        self.test_bones = tuple(int(b) for b in test_bones)
        self.max_steps, self.tol, self.diverge = int(max_steps), float(tol), float(diverge)
        pose_dim = 3 * (self.num_joints - 1)
        if self.pose_conditioned and pose_embed_dim:
            self.pose_embedding = nnx.Linear(pose_dim, int(pose_embed_dim), rngs=rngs)
            cond_dim = int(pose_embed_dim)
        else:
            self.pose_embedding = None
            cond_dim = pose_dim if self.pose_conditioned else 0
        self.shape_network = OccupancyNetwork(
            width=width,
            depth=depth,
            skip_layers=skip_layers,
            num_frequencies=num_frequencies,
            cond_dim=cond_dim,
            cond_layer=pose_layer,
            geometric_init=geometric_init,
            init_radius=init_radius,
            weight_norm=weight_norm,
            rngs=rngs,
        )
        self.skinning = SkinningField(
            self.num_joints,
            width=skinning_width,
            depth=skinning_depth,
            logit_scale=logit_scale,
            hierarchical=skinning_hierarchical,
            parents=parents,
            rngs=rngs,
        )

    def _condition(self, pose: jax.Array) -> jax.Array | None:
        if pose.shape != (self.num_joints, 3):
            raise ValueError(f"pose must have shape ({self.num_joints}, 3), got {pose.shape}")
        if not self.pose_conditioned:
            return None
        cond = pose[1:].reshape(-1) / jnp.pi
        return cond if self.pose_embedding is None else self.pose_embedding(cond)

    def canonical_logits(self, x_canonical: jax.Array, pose: jax.Array) -> jax.Array:
        """Occupancy logits (N,) of canonical points (N, 3) for `pose` (24, 3) (ignored by SNARF-NC)."""
        return self.shape_network(x_canonical, self._condition(pose))

    def occupancy_logits(
        self,
        x_deformed: jax.Array,
        pose: jax.Array,
        transforms: jax.Array,
        *,
        training: bool,
        init_bones: Sequence[int] | jax.Array | None = None,
        chunk_size: int | None = None,
    ) -> jax.Array:
        """Occupancy logits (N,) of posed points x_deformed (N, 3).

        training selects SNARF's training behaviour (9 initial bones, autodiff initial Jacobian,
        softmax aggregation) or its evaluation one (24 bones, blended-transform initial Jacobian,
        max aggregation). `init_bones` overrides the bones: a sequence of ids shared by all points,
        or an int array (N, I) of per-point ids (a nearest-bones pre-filter, `nearest_vertex_bones`);
        `chunk_size` bounds the points per pass. Differentiable (implicit gradients through the root
        finding).
        """
        if x_deformed.ndim != 2 or x_deformed.shape[-1] != 3:
            raise ValueError(f"x_deformed must have shape (N, 3), got {x_deformed.shape}")
        if transforms.shape != (self.num_joints, 4, 4):
            raise ValueError(f"transforms must have shape ({self.num_joints}, 4, 4), got {transforms.shape}")
        per_point = init_bones is not None and np.ndim(init_bones) == 2  # else: ids shared by all points
        if per_point:
            bones = jnp.asarray(init_bones)
            if bones.shape[0] != x_deformed.shape[0] or not jnp.issubdtype(bones.dtype, jnp.integer):
                raise ValueError(f"per-point init_bones must be an integer array of shape ({x_deformed.shape[0]}, I), "
                                 f"got {bones.shape} {bones.dtype}")
        else:
            bones = tuple(init_bones) if init_bones is not None else (self.train_bones if training else self.test_bones)
        cond = self._condition(pose)

        def query(points, bones):
            roots, valid = invert_lbs(
                points,
                self.skinning,
                transforms,
                init_bones=bones,
                max_steps=self.max_steps,
                tol=self.tol,
                diverge=self.diverge,
                jacobian_init="autodiff" if training else "blend",
            )
            num_points, num_init, _ = roots.shape
            logits = self.shape_network(roots.reshape(-1, 3), cond).reshape(num_points, num_init)
            return aggregate_root_logits(logits, valid, training=training, soft_blend=self.soft_blend)

        if per_point:  # the per-point bones are chunked with their points
            return map_in_chunks(query, chunk_size, x_deformed, bones)
        return map_in_chunks(lambda points: query(points, bones), chunk_size, x_deformed)


def bone_points(
    joints: jax.Array, key: jax.Array, parents: Sequence[int] = SMPL_PARENTS, num_per_bone: int = 5, jitter: float = 0.1
) -> jax.Array:
    """SNARF's first-epoch "bone occupancy" samples: points on every parent→child segment of the
    canonical skeleton joints (J, 3), at evenly spaced fractions plus N(0, jitter²) clamped to [0, 1].
    Returns ((J−1)·num_per_bone, 3); SNARF labels them inside (BCE against 1, λ = 1)."""
    num_joints = len(parents)
    if joints.shape != (num_joints, 3):
        raise ValueError(f"joints must have shape ({num_joints}, 3), got {joints.shape}")
    children = np.asarray([k for k in range(num_joints) if parents[k] >= 0])
    starts = joints[np.asarray([parents[k] for k in children])]
    ends = joints[children]
    fractions = jnp.linspace(0.0, 1.0, num_per_bone, dtype=joints.dtype)[None, :]
    fractions = jnp.clip(fractions + jitter * jax.random.normal(key, (children.size, num_per_bone), joints.dtype), 0.0, 1.0)
    points = starts[:, None, :] + fractions[:, :, None] * (ends - starts)[:, None, :]
    return points.reshape(-1, 3)


__all__ = ["SNARF", "SOFT_BLEND", "OccupancyNetwork", "aggregate_root_logits", "bone_points", "positional_encoding"]
