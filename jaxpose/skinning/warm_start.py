"""Warm starts for INS / SNARF / SNARF-NC under a CPU budget (docs/skinning.md, "CPU budget").

Two short, deterministic fits run when the model is built, identically for every learned method:

1. `distil_skinning`: the skinning field is fitted to the minimal body's skinning weights — at the
   star-pose body vertices and at jittered points around them (target: the weights of the nearest
   vertex) — so that occupancy training starts from a converged skinning field instead of discovering
   it from occupancy alone. The learned field's posed-vertex error is then logged during training
   (`skinning_vertex_error`).
2. `fit_occupancy`: the canonical occupancy network is fitted to the minimal body in the canonical
   (star) pose: labelled points near its surface and uniform in its padded bounding box. Pose-
   conditioned networks (SNARF) are fitted for the training frames' pose conditions, so the body is
   the starting shape for every pose.

Both are plain Adam loops in `lax.fori_loop` over a pure function of the parameters, so they trace
inside the engine's jitted state initialisation; inputs are host arrays closed over as constants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.spatial import cKDTree

from jaxpose.skinning.occupancy_points import label_points, sample_surface


@dataclasses.dataclass(frozen=True)
class WarmStartTargets:
    """Host arrays of one subject (star canonical pose), metres.

    skin_points (S, 3) with skin_weights (S, J); occupancy_points (P, 3) with occupancy (P,) float 0/1;
    poses (K, 24, 3) axis-angle radians of training frames (the pose conditions of SNARF's fit).
    """

    skin_points: np.ndarray
    skin_weights: np.ndarray
    occupancy_points: np.ndarray
    occupancy: np.ndarray
    poses: np.ndarray


def make_targets(vertices, faces, weights, poses, *, seed: int = 0, jitter_m: float = 0.03, num_jittered: int = 4096,
                 num_near: int = 8192, num_uniform: int = 4096) -> WarmStartTargets:
    """Targets from the star-pose minimal body: vertices (V, 3), faces (F, 3), weights (V, J), training
    poses (K, 24, 3). Occupancy labels are winding numbers of the body mesh."""
    vertices = np.asarray(vertices, np.float64)
    weights = np.asarray(weights, np.float32)
    rng = np.random.default_rng([seed, 0x3A7])
    jittered = vertices[rng.integers(0, len(vertices), num_jittered)] + jitter_m * rng.standard_normal((num_jittered, 3))
    nearest = cKDTree(vertices).query(jittered)[1]
    skin_points = np.concatenate([vertices, jittered]).astype(np.float32)
    skin_weights = np.concatenate([weights, weights[nearest]])
    near = sample_surface(vertices, faces, num_near, rng) + 0.01 * rng.standard_normal((num_near, 3))
    lo, hi = vertices.min(0) - 0.1, vertices.max(0) + 0.1
    points = np.concatenate([near, rng.uniform(lo, hi, (num_uniform, 3))]).astype(np.float32)
    labels = label_points(points, vertices.astype(np.float32), faces).astype(np.float32)
    return WarmStartTargets(skin_points, skin_weights, points, labels, np.asarray(poses, np.float32))


def _adam_fit(module: nnx.Module, loss_of: Callable, steps: int, lr: float) -> None:
    """Minimise `loss_of(module, step)` for `steps` Adam steps (cosine decay), updating `module`'s parameters."""
    if steps <= 0:
        return
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))

    def loss(p, index):
        return loss_of(nnx.merge(graphdef, p, rest), index)

    def step(index, carry):
        p, opt_state = carry
        grads = jax.grad(loss)(p, index)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
    nnx.update(module, params)


def distil_skinning(field: nnx.Module, targets: WarmStartTargets, *, steps: int, lr: float = 3e-3) -> None:
    """Fit the skinning field (points (N, 3) -> weights (N, J)) to the targets' weights, in place.

    Loss: cross-entropy −Σ_b w_b log ŵ_b. (MSE on the softmax outputs of a ×20-scaled logit field
    stalls: at 500–2,000 steps it left 7–78 mm posed-vertex errors depending on the learning rate.)
    """
    points, weights = jnp.asarray(targets.skin_points), jnp.asarray(targets.skin_weights)
    _adam_fit(field, lambda f, _: -jnp.mean(jnp.sum(weights * jnp.log(f(points) + 1e-8), axis=-1)), steps, lr)


def fit_occupancy(module: nnx.Module, logits_fn: Callable, targets: WarmStartTargets, *, steps: int, lr: float = 1e-3) -> None:
    """Fit `logits_fn(module, points (N, 3), pose (24, 3)) -> (N,)` to the body's occupancy (BCE), in place;
    the pose of each step cycles through the targets' training poses."""
    points, labels = jnp.asarray(targets.occupancy_points), jnp.asarray(targets.occupancy)
    poses = jnp.asarray(targets.poses)

    def loss(m, index):
        logits = logits_fn(m, points, poses[index % poses.shape[0]])
        return jnp.mean(jax.nn.softplus(logits) - labels * logits)

    _adam_fit(module, loss, steps, lr)


__all__ = ["WarmStartTargets", "distil_skinning", "fit_occupancy", "make_targets"]
