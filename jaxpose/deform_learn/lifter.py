"""The 2D → 3D lifter: a conditional GAN after Kudo et al. (2018) that predicts joint depths from 2D
joints without 3D supervision (reconstruction: the deform-and-learn paper uses it without details).

Pose normalisation (`normalise_pose`): the 2D joints (B, 24, 2) are centred on the root (joint 0) and
divided by their RMS distance from the root, `scale`. The networks see only normalised poses.

Generator G (`LifterGenerator`, an MLP): normalised 2D pose (48) → normalised depths (24), made
root-relative (the root's depth is exactly 0). `lift` multiplies them back by `scale`, so the depths
come out in the input's units (normalised image units for the deform-and-learn keypoints: z_j − z_root
with z forward, away from the camera, as the registration's "depth" `s·(R·X)_z`).

Discriminator D (`LifterDiscriminator`, an MLP): normalised 2D pose (48) → logit "a real 2D pose".
Real samples are training 2D poses. Fake samples: the lifted skeleton (x, y normalised input, z = G)
rotated about the root by a random azimuth (about the image's vertical axis, y) and a random elevation
(about the image's horizontal axis, x), projected orthographically (x, y kept) and re-normalised. A
correct lifting looks like a real pose from every such view; a wrong depth does not.

The loss is ONE scalar for the engine's single optimiser (`lifter_loss`):

    L = L_D(θ_D; stop_grad θ_G) + L_G(θ_G; stop_grad θ_D)
    L_D = mean softplus(−D(real)) + mean softplus(D(sg(fake)))      (discriminator cross-entropy)
    L_G = mean softplus(−D_sg(fake))                                 (non-saturating generator loss)

The stop-gradients route ∂L_D only to the discriminator and ∂L_G only to the generator, so one
gradient step on L is the simultaneous gradient step of both players (each on its own objective).
Adam normalises every parameter separately, so one optimiser with one learning rate behaves like two
(the players' gradient scales do not mix); only the schedule and gradient clipping are shared (clip on
the joint norm). Alternating updates, as in Kudo et al.'s code, are not used: the engine runs one
update per step, and simultaneous updates are the standard alternative (Mescheder et al., 2018).

Defaults (reconstruction): MLPs of 3 hidden ReLU layers of width 256; azimuth uniform in ±90°,
elevation uniform in ±10° (configurable in `LifterLossConfig`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.nn.mlp import MLP

NUM_JOINTS = 24
_MIN_SCALE = 1e-6


@dataclasses.dataclass(frozen=True)
class LifterSpec:
    """Sizes of the lifter's two MLPs: `depth` hidden layers of `width` (ReLU) each."""

    num_joints: int = NUM_JOINTS
    width: int = 256
    depth: int = 3
    discriminator_width: int = 256
    discriminator_depth: int = 3

    def __post_init__(self):
        for name in ("num_joints", "width", "discriminator_width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LifterSpec.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("depth", "discriminator_depth"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"LifterSpec.{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class LifterLossConfig:
    """Random views of the fake samples: azimuth uniform in ±azimuth_range_deg (about the image y axis),
    elevation uniform in ±elevation_range_deg (about the image x axis)."""

    azimuth_range_deg: float = 90.0
    elevation_range_deg: float = 10.0

    def __post_init__(self):
        for name in ("azimuth_range_deg", "elevation_range_deg"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 180.0:
                raise ValueError(f"LifterLossConfig.{name} must be in [0, 180] degrees, got {value}")


def _check_keypoints(keypoints: jax.Array, num_joints: int) -> jax.Array:
    keypoints = jnp.asarray(keypoints)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (num_joints, 2):
        raise ValueError(f"keypoints must have shape (B, {num_joints}, 2), got {keypoints.shape}")
    return keypoints


def normalise_pose(keypoints: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, J, 2) 2D joints → (root-centred joints / scale (B, J, 2), scale (B,)); scale = RMS distance
    of the joints from the root (joint 0), floored at 1e-6."""
    centred = keypoints - keypoints[:, :1, :]
    scale = jnp.sqrt(jnp.mean(jnp.sum(centred * centred, axis=-1), axis=-1))
    scale = jnp.maximum(scale, _MIN_SCALE)
    return centred / scale[:, None, None], scale


class LifterGenerator(nnx.Module):
    """Normalised 2D pose (B, J, 2) → normalised root-relative depths (B, J) (root depth exactly 0)."""

    def __init__(self, spec: LifterSpec, *, rngs: nnx.Rngs):
        self.num_joints = int(spec.num_joints)
        self.mlp = MLP(2 * self.num_joints, int(spec.width), int(spec.depth), self.num_joints, rngs=rngs)

    def __call__(self, pose: jax.Array) -> jax.Array:
        depth = self.mlp(jnp.reshape(pose, (pose.shape[0], 2 * self.num_joints)))
        return depth - depth[:, :1]


class LifterDiscriminator(nnx.Module):
    """Normalised 2D pose (B, J, 2) → logit (B,) that the pose is a real one."""

    def __init__(self, spec: LifterSpec, *, rngs: nnx.Rngs):
        self.num_joints = int(spec.num_joints)
        self.mlp = MLP(2 * self.num_joints, int(spec.discriminator_width), int(spec.discriminator_depth), 1, rngs=rngs)

    def __call__(self, pose: jax.Array) -> jax.Array:
        return self.mlp(jnp.reshape(pose, (pose.shape[0], 2 * self.num_joints)))[:, 0]


class Lifter(nnx.Module):
    """The cGAN lifter: `generator` (`LifterGenerator`) and `discriminator` (`LifterDiscriminator`)."""

    def __init__(self, spec: LifterSpec = LifterSpec(), *, rngs: nnx.Rngs):
        self.spec = spec
        self.generator = LifterGenerator(spec, rngs=rngs)
        self.discriminator = LifterDiscriminator(spec, rngs=rngs)


def lift(model: Lifter, keypoints: jax.Array) -> jax.Array:
    """Root-relative depths (B, J) of 2D joints `keypoints` (B, J, 2), in the keypoints' units."""
    keypoints = _check_keypoints(keypoints, model.generator.num_joints)
    pose, scale = normalise_pose(keypoints)
    return model.generator(pose) * scale[:, None]


def lifted_skeleton(keypoints: jax.Array, depths: jax.Array) -> jax.Array:
    """(B, J, 3) root-relative lifted skeleton: (x, y) of the keypoints minus the root's, z = depths."""
    xy = keypoints - keypoints[:, :1, :]
    return jnp.concatenate([xy, depths[..., None]], axis=-1)


def view_rotations(rng: jax.Array, batch: int, config: LifterLossConfig) -> jax.Array:
    """(B, 3, 3) random view rotations R_x(elevation) · R_y(azimuth), angles uniform in the config's
    ranges (image axes: x right, y down, z forward)."""
    k_az, k_el = jax.random.split(rng)
    azimuth = jax.random.uniform(k_az, (batch,), minval=-1.0, maxval=1.0) * math.radians(config.azimuth_range_deg)
    elevation = jax.random.uniform(k_el, (batch,), minval=-1.0, maxval=1.0) * math.radians(config.elevation_range_deg)
    ca, sa, ce, se = jnp.cos(azimuth), jnp.sin(azimuth), jnp.cos(elevation), jnp.sin(elevation)
    zero, one = jnp.zeros_like(ca), jnp.ones_like(ca)
    r_y = jnp.stack([jnp.stack([ca, zero, sa], -1), jnp.stack([zero, one, zero], -1), jnp.stack([-sa, zero, ca], -1)], -2)
    r_x = jnp.stack([jnp.stack([one, zero, zero], -1), jnp.stack([zero, ce, -se], -1), jnp.stack([zero, se, ce], -1)], -2)
    return jnp.einsum("bij,bjk->bik", r_x, r_y)


def rotate_and_project(skeleton: jax.Array, rotations: jax.Array) -> jax.Array:
    """Root-centred (B, J, 3) skeletons rotated by (B, 3, 3) and projected orthographically → (B, J, 2)."""
    return jnp.einsum("bij,bkj->bki", rotations[:, :2, :], skeleton)


def _frozen(module: nnx.Module) -> nnx.Module:
    """A copy of `module` whose variables are stop-gradiented (gradients do not reach it)."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.lax.stop_gradient(state))


def lifter_loss(model: Lifter, keypoints: jax.Array, rng: jax.Array, config: LifterLossConfig = LifterLossConfig()
                ) -> tuple[jax.Array, dict[str, jax.Array]]:  # fmt: skip
    """The GAN objective as one scalar, L_D(θ_D; sg θ_G) + L_G(θ_G; sg θ_D) (module docstring), and
    metrics: d_loss, g_loss, d_real_accuracy, d_fake_accuracy (logit sign), depth_rms (normalised units).

    keypoints: (B, J, 2) real training 2D poses (any units; each is normalised); rng: a key for the
    random views. The fakes are lifted from the same batch.
    """
    keypoints = _check_keypoints(keypoints, model.generator.num_joints)
    pose, _ = normalise_pose(keypoints.astype(jnp.float32))
    depth = model.generator(pose)
    skeleton = jnp.concatenate([pose, depth[..., None]], axis=-1)
    fake, _ = normalise_pose(rotate_and_project(skeleton, view_rotations(rng, pose.shape[0], config)))

    real_logit = model.discriminator(pose)
    fake_logit_d = model.discriminator(jax.lax.stop_gradient(fake))
    d_loss = jnp.mean(jax.nn.softplus(-real_logit)) + jnp.mean(jax.nn.softplus(fake_logit_d))
    fake_logit_g = _frozen(model.discriminator)(fake)
    g_loss = jnp.mean(jax.nn.softplus(-fake_logit_g))
    metrics = {
        "d_loss": d_loss,
        "g_loss": g_loss,
        "d_real_accuracy": jnp.mean((real_logit > 0).astype(jnp.float32)),
        "d_fake_accuracy": jnp.mean((fake_logit_d < 0).astype(jnp.float32)),
        "depth_rms": jnp.sqrt(jnp.mean(depth * depth)),
    }
    return d_loss + g_loss, jax.tree.map(jax.lax.stop_gradient, metrics)
