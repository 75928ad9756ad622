"""SMPLify-style body fitting to 2D evidence on `jaxpose.optim`: energy, stages, `fit`, `fit_batch`.

The energy of one person (all terms in `jaxpose.fitting.energy`):

    E = w_kp  · KP(π(R_kp · v), keypoints, confidence; σ_kp)       2D keypoints (GMoF, confidence²)
      + w_dense · DENSE(π(v), targets, weights; σ_dense)           per-vertex 2D targets
      + w_prior · pose_prior(θ)                                    angle prior + joint-limit hinge + L2
      + w_shape · ‖β‖² + w_anchor · ‖θ − θ_init‖² + w_shape_anchor · ‖β − β_init‖²
      + w_depth · (z_root − z_root,init)²                          first stage only, by default

with v = body(θ, β) + t, π the (fixed, known) perspective camera and R_kp a keypoint regressor
(e.g. COCO from the body's vertices) or the skeleton joints. Weights are `Problem` weights: a stage
changes them without recompiling. The default schedule (SMPLify/SPIN): stage 1 frees the global
orientation and translation, stage 2 frees everything. Both stages run inside one `jit`; `fit_batch`
`vmap`s people.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpose.bodies.model import BodyModel
from jaxpose.bodies.prior import PriorWeights
from jaxpose.fitting import energy as terms
from jaxpose.fitting.params import PARAM_KEYS, BodyParams, check_params, full_pose, pose_body
from jaxpose.optim import LBFGS, Adam, Problem, Schedule, Stage, mask_from_keys, solve_stages
from jaxpose.render.camera import Camera, project, world_to_camera


class Observations(NamedTuple):
    """2D evidence for one person (leading batch axis for `fit_batch`).

    keypoints (K, 2) pixels; keypoint_confidence (K,) in [0, 1] (all 0 = no keypoint term);
    dense_targets (V, 2) pixels; dense_weights (V,) ≥ 0 (all 0 = no dense term).
    """

    keypoints: jax.Array
    keypoint_confidence: jax.Array
    dense_targets: jax.Array
    dense_weights: jax.Array


class FitData(NamedTuple):
    """What the energy reads besides the parameters (a pytree)."""

    body: BodyModel
    camera: Camera
    keypoint_regressor: jax.Array | None  # (K, V), or None: the keypoints are the skeleton joints
    observations: Observations
    initial_pose: jax.Array  # (J, 3)
    initial_betas: jax.Array  # (K_betas,)
    initial_depth: jax.Array  # () camera-frame depth of the root joint at the start, metres


DEFAULT_WEIGHTS: dict[str, float] = {
    "keypoints": 1.0,  # per keypoint, px²
    "dense": 1.0,  # per unit of vertex weight, px²
    "pose_prior": 1e-3,
    "shape": 1e-2,
    "pose_anchor": 1.0,  # CamSMPLify uses 10‖θ − θ_init‖² beside its (much smaller) dense weight 5e-4
    "shape_anchor": 0.1,
    "depth": 0.0,
    "sigma_keypoints": 100.0,  # px, SMPLify
    "sigma_dense": 100.0,  # px
}
"""Default energy weights for dense refinement (design values, docs/fitting.md); sigmas are GMoF
scales in pixels. The data terms are means per point, so 1 px² of dense error weighs as much as
a unit of the anchor, i.e. ≈ 1 rad² of body-pose change."""

KEYPOINT_WEIGHTS: dict[str, float] = {**DEFAULT_WEIGHTS, "pose_prior": 1e-2, "pose_anchor": 10.0, "shape_anchor": 1.0}
"""Weights for keypoint-only fitting: 17 keypoints constrain far less than hundreds of vertices, so
the priors and anchors weigh 10× more."""


def model_keypoints(vertices: jax.Array, joints: jax.Array, regressor: jax.Array | None) -> jax.Array:
    """(K, 3) keypoints: `regressor @ vertices`, or the joints when `regressor` is None."""
    return joints if regressor is None else jnp.einsum("kv,vc->kc", regressor.astype(vertices.dtype), vertices)


def fit_energy(params: BodyParams, data: FitData, weights: Mapping[str, jax.Array], prior: PriorWeights = PriorWeights()) -> jax.Array:
    """() the fitting energy of one person; see the module docstring."""
    output = pose_body(data.body, params)
    pose = full_pose(params)
    obs = data.observations
    projected_vertices, _ = project(output.vertices, data.camera)
    keypoints3d = model_keypoints(output.vertices, output.joints, data.keypoint_regressor)
    projected_keypoints, _ = project(keypoints3d, data.camera)
    root_depth = world_to_camera(output.joints[0], data.camera)[2]
    return (
        weights["keypoints"] * terms.keypoint_reprojection(projected_keypoints, obs.keypoints, obs.keypoint_confidence, weights["sigma_keypoints"])
        + weights["dense"] * terms.dense_reprojection(projected_vertices, obs.dense_targets, obs.dense_weights, weights["sigma_dense"])
        + weights["pose_prior"] * terms.body_pose_prior(pose, prior)
        + weights["shape"] * terms.shape_l2(params["betas"])
        + weights["pose_anchor"] * terms.pose_anchor(pose, data.initial_pose)
        + weights["shape_anchor"] * terms.shape_anchor(params["betas"], data.initial_betas)
        + weights["depth"] * terms.depth_anchor(root_depth, data.initial_depth)
    )


def default_stages(solver: str = "adam", steps: tuple[int, int] | None = None) -> tuple[Stage, ...]:
    """SMPLify's two stages: (1) global orientation + translation (depth anchored), (2) everything.

    `solver`: "adam" (Adam, lr 0.02 then cosine-decayed 0.01; default steps (100, 300)) or "lbfgs"
    (L-BFGS with a zoom line search; default steps (30, 100)).
    """
    template = {key: 0 for key in PARAM_KEYS}
    camera_mask = mask_from_keys(template, ("global_orient", "transl"))
    if solver == "adam":
        first, second = steps or (100, 300)
        solvers = (Adam(learning_rate=0.02, num_steps=first, tol=1e-6),
                   Adam(learning_rate=0.01, num_steps=second, tol=1e-6, schedule=Schedule.COSINE, final_lr_fraction=0.05))
    elif solver == "lbfgs":
        first, second = steps or (30, 100)
        solvers = (LBFGS(num_steps=first, tol=1e-6), LBFGS(num_steps=second, tol=1e-6))
    else:
        raise ValueError(f"solver must be 'adam' or 'lbfgs', got {solver!r}")
    return (
        Stage(solvers[0], free=camera_mask, weights={"depth": 100.0}, name="orientation and translation"),
        Stage(solvers[1], free=None, weights={"depth": 0.0}, name="pose and shape"),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class FitConfig:
    """Static configuration of a fit: the stages, the energy weights and the pose-prior weights."""

    stages: tuple[Stage, ...] = dataclasses.field(default_factory=default_stages)
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    prior: PriorWeights = PriorWeights()

    def __post_init__(self):
        unknown = sorted(set(self.weights) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown fitting weights {unknown}; valid: {sorted(DEFAULT_WEIGHTS)}")
        for name, value in self.weights.items():
            if not (isinstance(value, (int, float)) and value >= 0 and value == value):
                raise ValueError(f"fitting weight {name!r} must be a finite number >= 0, got {value!r}")
        if not self.stages or not all(isinstance(stage, Stage) for stage in self.stages):
            raise ValueError("FitConfig.stages must be a non-empty tuple of jaxpose.optim.Stage")

    def full_weights(self) -> dict[str, float]:
        return {**DEFAULT_WEIGHTS, **self.weights}

    def _key(self):
        return (tuple(self.stages), tuple(sorted(self.full_weights().items())), tuple(self.prior))

    def __eq__(self, other):
        return isinstance(other, FitConfig) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


class FitResult(NamedTuple):
    """params: fitted `BodyParams`; vertices (V, 3) and joints (J, 3) in metres; energies
    (num_stages,) final energy of each stage; iterations (num_stages,) updates taken per stage."""

    params: BodyParams
    vertices: jax.Array
    joints: jax.Array
    energies: jax.Array
    iterations: jax.Array


def _fit_single(body, camera, regressor, initial_params, observations, *, config: FitConfig) -> FitResult:
    initial = pose_body(body, initial_params)
    data = FitData(
        body=body,
        camera=camera,
        keypoint_regressor=regressor,
        observations=observations,
        initial_pose=full_pose(initial_params),
        initial_betas=initial_params["betas"],
        initial_depth=world_to_camera(initial.joints[0], camera)[2],
    )
    weights = {name: jnp.asarray(value, initial.vertices.dtype) for name, value in config.full_weights().items()}
    energy = functools.partial(fit_energy, prior=config.prior)
    problem = Problem(energy, dict(initial_params), data, weights=weights)
    results = solve_stages(problem, config.stages)
    params = results[-1].params
    output = pose_body(body, params)
    return FitResult(
        params=params,
        vertices=output.vertices,
        joints=output.joints,
        energies=jnp.stack([r.energy for r in results]),
        iterations=jnp.stack([r.num_iterations for r in results]),
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _fit_batch(body, camera, regressor, initial_params, observations, *, config):
    return jax.vmap(functools.partial(_fit_single, config=config), in_axes=(None, None, None, 0, 0))(
        body, camera, regressor, initial_params, observations
    )


def _check_observations(observations: Observations, num_vertices: int, batch: tuple[int, ...]) -> None:
    if not isinstance(observations, Observations):
        raise ValueError(f"observations must be a jaxpose.fitting.Observations, got {type(observations).__name__}")
    k = jnp.shape(observations.keypoints)[len(batch):-1] if jnp.ndim(observations.keypoints) >= 2 else None
    checks = {
        "keypoints": (batch + (k[0] if k else -1, 2)),
        "dense_targets": batch + (num_vertices, 2),
        "dense_weights": batch + (num_vertices,),
    }
    for name, expected in checks.items():
        shape = jnp.shape(getattr(observations, name))
        if len(shape) != len(expected) or any(e != -1 and s != e for s, e in zip(shape, expected)):
            raise ValueError(f"observations.{name} must have shape {expected} (-1: any), got {shape}")
    if jnp.shape(observations.keypoint_confidence) != jnp.shape(observations.keypoints)[:-1]:
        raise ValueError(
            f"observations.keypoint_confidence must have shape {jnp.shape(observations.keypoints)[:-1]}, "
            f"got {jnp.shape(observations.keypoint_confidence)}"
        )


MIN_ROOT_DEPTH = 0.05
"""Metres: the initial body's root joint must be at least this far in front of the camera."""


def root_depth(body: BodyModel, camera: Camera, params: BodyParams) -> jax.Array:
    """(...) camera-frame depth (m) of the root joint of the posed body (batched params allowed)."""
    joints = jax.jit(pose_body)(body, params).joints  # (..., J, 3)
    return world_to_camera(joints[..., 0, :], camera)[..., 2]


def _check_in_front(body, camera, params, batched: bool) -> None:
    depth = root_depth(body, camera, params)
    if bool(jnp.any(depth <= MIN_ROOT_DEPTH)):
        bad = jnp.nonzero(jnp.atleast_1d(depth <= MIN_ROOT_DEPTH))[0].tolist() if batched else []
        which = f" (people {bad[:10]})" if batched else ""
        raise ValueError(
            f"the initial body is behind (or within {MIN_ROOT_DEPTH * 100:.0f} cm of) the camera{which}: root depth "
            f"{jnp.round(jnp.atleast_1d(depth)[:10], 3).tolist()} m; check the translation and the camera pose"
        )


def fit_batch(
    body: BodyModel,
    camera: Camera,
    initial_params: BodyParams,
    observations: Observations,
    *,
    keypoint_regressor=None,
    config: FitConfig = FitConfig(),
) -> FitResult:
    """Fit a batch of people seen by one camera: every leaf of `initial_params` and `observations`
    has a leading batch axis B. Returns a `FitResult` with the same leading axis. One compilation
    per (shapes, config)."""
    check_params(initial_params, body)
    batch = jnp.shape(initial_params["transl"])[:-1]
    if len(batch) != 1:
        raise ValueError(f"fit_batch needs params with one leading batch axis, got transl {jnp.shape(initial_params['transl'])}")
    _check_observations(observations, body.num_vertices, batch)
    _check_in_front(body, camera, initial_params, batched=True)
    regressor = None if keypoint_regressor is None else jnp.asarray(keypoint_regressor)
    if regressor is not None and (regressor.ndim != 2 or regressor.shape != (jnp.shape(observations.keypoints)[1], body.num_vertices)):
        raise ValueError(
            f"keypoint_regressor must have shape ({jnp.shape(observations.keypoints)[1]}, {body.num_vertices}), got {regressor.shape}"
        )
    if regressor is None and jnp.shape(observations.keypoints)[1] != body.num_joints:
        raise ValueError(
            f"without a keypoint_regressor the keypoints are the {body.num_joints} skeleton joints, got "
            f"{jnp.shape(observations.keypoints)[1]} keypoints"
        )
    params = {key: jnp.asarray(initial_params[key], jnp.float32) for key in PARAM_KEYS}
    return _fit_batch(body, camera, regressor, params, observations, config=config)


def fit(
    body: BodyModel,
    camera: Camera,
    initial_params: BodyParams,
    observations: Observations,
    *,
    keypoint_regressor=None,
    config: FitConfig = FitConfig(),
) -> FitResult:
    """Fit one person (unbatched params and observations); see `fit_batch`."""
    batched_params = jax.tree.map(lambda x: jnp.asarray(x)[None], dict(initial_params))
    batched_obs = Observations(*(jnp.asarray(x)[None] for x in observations))
    result = fit_batch(body, camera, batched_params, batched_obs, keypoint_regressor=keypoint_regressor, config=config)
    return jax.tree.map(lambda x: x[0], result)


def empty_observations(num_keypoints: int, num_vertices: int, dtype=jnp.float32) -> Observations:
    """Observations with every weight 0 (start from this and fill what you have)."""
    return Observations(
        keypoints=jnp.zeros((num_keypoints, 2), dtype),
        keypoint_confidence=jnp.zeros((num_keypoints,), dtype),
        dense_targets=jnp.zeros((num_vertices, 2), dtype),
        dense_weights=jnp.zeros((num_vertices,), dtype),
    )


__all__ = [
    "DEFAULT_WEIGHTS", "KEYPOINT_WEIGHTS", "FitConfig", "FitData", "FitResult", "Observations", "default_stages",
    "MIN_ROOT_DEPTH", "empty_observations", "fit", "fit_batch", "fit_energy", "model_keypoints", "root_depth",
]
