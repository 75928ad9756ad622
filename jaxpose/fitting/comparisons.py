"""The refinement comparisons on the same test people: every method refines the same initial estimates.

Methods (`Method`):
  INITIAL      the initial estimate itself (no refinement)
  KEYPOINTS    keypoint-only SMPLify: COCO-17 keypoints of the ground truth projected + N(0, σ²) px
               ("OpenPose-like"), keypoint weights (`KEYPOINT_WEIGHTS`)
  DENSEPOSE    SMPLify on DensePose-like labels: sampled image pixels → nearest vertex of their
               ground-truth surface point (`densepose_like_observations`)
  PREDICTED    ours: per-vertex targets from the CNN's displacement field and confidence
  EXACT        ours with the exact ground-truth displacement field (confidence = validity): the
               upper bound of the dense refinement

All run the same two-stage fitter (`FitConfig`) from the same initial parameters and are scored by
`jaxpose.fitting.evaluation.person_metrics`. Noise is keyed by the person's index in the split, so a
row does not depend on the batch size.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.model import BodyModel
from jaxpose.fitting.evaluation import person_metrics
from jaxpose.fitting.observations import (
    dense_observations, densepose_like_observations, keypoint_observations, openpose_like_keypoints,
)
from jaxpose.fitting.params import params_from_pose, pose_body
from jaxpose.fitting.smplify import DEFAULT_WEIGHTS, KEYPOINT_WEIGHTS, FitConfig, fit_batch, default_stages
from jaxpose.fitting.targets import vertex_targets
from jaxpose.render.camera import Camera, project, screen_vertices
from jaxpose.render.rasterize import barycentrics_from_face_ids

NUM_COCO = 17


class Method(enum.Enum):
    INITIAL = "initial"
    KEYPOINTS = "keypoints"
    DENSEPOSE = "densepose"
    PREDICTED = "predicted"
    EXACT = "exact"


@dataclasses.dataclass(frozen=True)
class ComparisonSettings:
    """Settings shared by every method (design values, docs/fitting.md "Comparisons")."""

    solver: str = "adam"  # "adam" | "lbfgs": the fitter's two stages
    steps: tuple[int, int] | None = None  # per stage; None: the solver's defaults
    keypoint_noise_px: float = 2.0
    densepose_points: int = 150
    densepose_noise_px: float = 1.0
    visibility_threshold: float = 0.5
    batch_size: int = 50
    seed: int = 0

    def fit_config(self, method: Method) -> FitConfig:
        weights = KEYPOINT_WEIGHTS if method is Method.KEYPOINTS else DEFAULT_WEIGHTS
        return FitConfig(stages=default_stages(self.solver, self.steps), weights=dict(weights))


def _person_keys(seed: int, indices: np.ndarray, salt: int) -> jax.Array:
    base = jax.random.fold_in(jax.random.PRNGKey(seed), salt)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices))


@jax.jit
def _posed_batch(body: BodyModel, pose, betas, transl):
    return jax.vmap(lambda p, b, t: pose_body(body, params_from_pose(p, b, t)))(pose, betas, transl)


def _posed(body: BodyModel, pose, betas, transl):
    """Posed bodies of a batch (compiled once per shape; the body is an argument, not a constant)."""
    return _posed_batch(body, jnp.asarray(pose), jnp.asarray(betas), jnp.asarray(transl))


def observations_for(
    method: Method, body: BodyModel, camera: Camera, people: Mapping[str, np.ndarray], indices: np.ndarray,
    settings: ComparisonSettings, displacement=None, confidence=None,
):
    """Batched `Observations` of `method` for the people of `people` (a slice of the split; rows =
    `indices` in the split). `displacement` (B, H, W, 2) px and `confidence` (B, H, W) are needed for
    PREDICTED (EXACT takes the dataset's field)."""
    faces = jnp.asarray(body.faces)
    V = body.num_vertices
    truth = _posed(body, people["gt_pose"], people["gt_betas"], people["gt_transl"])
    if method is Method.KEYPOINTS:
        regressor = jnp.asarray(body.extras["coco_regressor"][:NUM_COCO])
        projected, _ = project(jnp.einsum("kv,bvc->bkc", regressor, truth.vertices), camera)
        keys = _person_keys(settings.seed, indices, 1)
        noisy, conf = jax.vmap(lambda p, k: openpose_like_keypoints(p, k, settings.keypoint_noise_px, camera.height, camera.width))(projected, keys)
        return jax.vmap(lambda k, c: keypoint_observations(k, c, V))(noisy, conf)
    if method is Method.DENSEPOSE:
        gt_face_id = jnp.asarray(people["gt_face_id"])
        bary = jax.vmap(lambda v, f: barycentrics_from_face_ids(screen_vertices(v, camera), faces, f).barycentric)(truth.vertices, gt_face_id)
        keys = _person_keys(settings.seed, indices, 2)
        return jax.vmap(lambda f, b, m, k: densepose_like_observations(
            f, b, m, faces, V, k, num_points=settings.densepose_points, noise_px=settings.densepose_noise_px, num_keypoints=NUM_COCO,
        ))(gt_face_id, bary, jnp.asarray(people["gt_mask"]), keys)
    if method in (Method.PREDICTED, Method.EXACT):
        if method is Method.EXACT:
            displacement = people["displacement"]
            confidence = np.asarray(people["displacement_valid"], np.float32)
        if displacement is None or confidence is None:
            raise ValueError("Method.PREDICTED needs the predicted displacement and confidence")
        initial = _posed(body, people["init_pose"], people["init_betas"], people["init_transl"])
        projected, _ = project(initial.vertices, camera)
        targets = jax.vmap(lambda f, b, m, d, c, p: vertex_targets(
            f, b, m, d, c, faces, V, settings.visibility_threshold, projected_vertices=p,
        ))(jnp.asarray(people["render_face_id"]), jnp.asarray(people["render_barycentric"]), jnp.asarray(people["render_mask"]),
           jnp.asarray(displacement, jnp.float32), jnp.asarray(confidence, jnp.float32), projected)
        return jax.vmap(lambda t: dense_observations(t, NUM_COCO))(targets)
    raise ValueError(f"no observations for {method}")


def refine(
    method: Method, body: BodyModel, camera: Camera, people: Mapping[str, np.ndarray], indices: np.ndarray,
    settings: ComparisonSettings, displacement=None, confidence=None,
):
    """(vertices (B, V, 3), joints (B, J, 3)) of `method` on a slice of the split."""
    if method is Method.INITIAL:
        out = _posed(body, people["init_pose"], people["init_betas"], people["init_transl"])
        return out.vertices, out.joints
    observations = observations_for(method, body, camera, people, indices, settings, displacement, confidence)
    initial = params_from_pose(jnp.asarray(people["init_pose"]), jnp.asarray(people["init_betas"]), jnp.asarray(people["init_transl"]))
    if "coco_regressor" not in body.extras:
        raise ValueError("the comparisons need a body with a COCO keypoint regressor (extras['coco_regressor'])")
    regressor = jnp.asarray(body.extras["coco_regressor"][:NUM_COCO])
    result = fit_batch(body, camera, initial, observations, keypoint_regressor=regressor, config=settings.fit_config(method))
    return result.vertices, result.joints


Predictor = Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]
"""people slice -> (displacement (B, H, W, 2) px, confidence (B, H, W) in [0, 1])."""


def score_method(
    method: Method, body: BodyModel, camera: Camera, dataset: Mapping[str, np.ndarray], settings: ComparisonSettings,
    predictor: Predictor | None = None, *, num_people: int | None = None, progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Per-person metrics (dict of (N,)) of `method` over the first `num_people` of `dataset`."""
    total = len(dataset["gt_pose"]) if num_people is None else min(int(num_people), len(dataset["gt_pose"]))
    faces = jnp.asarray(body.faces)
    # Per-person arrays lead with the people axis; the camera and image size are per dataset.
    per_person_keys = [k for k in dataset if not k.startswith("camera_") and k != "image_size"]
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, total, settings.batch_size):
        stop = min(start + settings.batch_size, total)
        indices = np.arange(start, stop)
        people = {k: v[start:stop] for k, v in dataset.items() if k in per_person_keys}
        displacement = confidence = None
        if method is Method.PREDICTED:
            if predictor is None:
                raise ValueError("Method.PREDICTED needs a predictor")
            displacement, confidence = predictor(people)
        vertices, joints = refine(method, body, camera, people, indices, settings, displacement, confidence)
        truth = _posed(body, people["gt_pose"], people["gt_betas"], people["gt_transl"])
        metrics = person_metrics(vertices, joints, truth.vertices, truth.joints, faces, camera, jnp.asarray(people["gt_mask"]))
        parts.append({k: np.asarray(v) for k, v in metrics.items()})
        if progress is not None:
            progress(stop, total)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


__all__ = ["ComparisonSettings", "Method", "Predictor", "observations_for", "refine", "score_method"]
