"""Comparison rows of the refinement system: metrics by construction, DensePose-like labels, determinism."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.bodies import default_body
from jaxpose.fitting.comparisons import ComparisonSettings, Method, observations_for, score_method
from jaxpose.fitting.evaluation import person_metrics
from jaxpose.fitting.observations import densepose_like_observations
from jaxpose.fitting.params import params_from_pose, pose_body
from jaxpose.fitting.synthetic import SyntheticConfig, camera_from_arrays, draw_people, make_dataset
from jaxpose.render import project, render_buffers

SMALL = SyntheticConfig(
    image_size=64, num_train=2, num_test=4, train_identities=2, test_identities=2, train_poses=4, test_poses=4,
    texture_frames=1, chunk_size=4, seed=5,
)
FAST = ComparisonSettings(steps=(20, 60), batch_size=4)


@pytest.fixture(scope="module")
def body():
    return default_body("low")


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(SMALL, "test", progress=False)


def _truth(body, data):
    return jax.vmap(lambda p, b, t: pose_body(body, params_from_pose(p, b, t)))(
        jnp.asarray(data["gt_pose"]), jnp.asarray(data["gt_betas"]), jnp.asarray(data["gt_transl"])
    )


def test_metrics_by_construction(body, dataset):
    camera = camera_from_arrays(dataset)
    truth = _truth(body, dataset)
    same = person_metrics(truth.vertices, truth.joints, truth.vertices, truth.joints, body.faces, camera, jnp.asarray(dataset["gt_mask"]))
    for name in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "vertex_2d_px", "transl_error_mm"):
        np.testing.assert_allclose(same[name], 0.0, atol=1e-3)
    np.testing.assert_allclose(same["silhouette_iou"], 1.0)
    offset = jnp.array([0.01, -0.02, 0.0])[None, None, :]
    moved = person_metrics(truth.vertices + offset, truth.joints + offset, truth.vertices, truth.joints, body.faces, camera,
                           jnp.asarray(dataset["gt_mask"]))  # fmt: skip
    np.testing.assert_allclose(moved["mpjpe_mm"], 0.0, atol=1e-3)  # root-aligned
    np.testing.assert_allclose(moved["transl_error_mm"], 1000 * float(jnp.linalg.norm(offset)), rtol=1e-4)
    shifted_px, _ = project(truth.vertices + offset, camera)
    px, _ = project(truth.vertices, camera)
    np.testing.assert_allclose(moved["vertex_2d_px"], jnp.linalg.norm(shifted_px - px, axis=-1).mean(-1), rtol=1e-5)
    assert np.all(moved["silhouette_iou"] < 1.0)


def test_densepose_like_labels_sit_on_their_vertices(body, dataset):
    camera = camera_from_arrays(dataset)
    truth = _truth(body, dataset)
    buffers = render_buffers(truth.vertices[0], body.faces, camera)
    obs = densepose_like_observations(buffers["face_id"], buffers["barycentric"], buffers["mask"], body.faces,
                                      body.num_vertices, jax.random.PRNGKey(0), num_points=100, noise_px=0.0)  # fmt: skip
    assert float(obs.dense_weights.sum()) == 100.0
    labelled = np.asarray(obs.dense_weights > 0)
    projected, _ = project(truth.vertices[0], camera)
    distance = np.linalg.norm(np.asarray(obs.dense_targets - projected)[labelled], axis=-1)
    # A pixel is within its triangle, and its nearest corner is at most a triangle's size away.
    assert np.median(distance) < 1.5 and distance.max() < 6.0


def test_rows_refine_toward_the_truth_and_do_not_depend_on_the_batch(body, dataset):
    camera = camera_from_arrays(dataset)
    initial = score_method(Method.INITIAL, body, camera, dataset, FAST)
    exact = score_method(Method.EXACT, body, camera, dataset, FAST)
    assert exact["pve_mm"].mean() < 0.7 * initial["pve_mm"].mean()
    assert exact["vertex_2d_px"].mean() < 0.5 * initial["vertex_2d_px"].mean()
    # Noise is keyed by the person's index in the split, not by the batch it is drawn in.
    people = {k: v for k, v in dataset.items() if not k.startswith("camera_") and k != "image_size"}
    whole = observations_for(Method.KEYPOINTS, body, camera, people, np.arange(4), FAST)
    tail = observations_for(Method.KEYPOINTS, body, camera, {k: v[2:] for k, v in people.items()}, np.arange(2, 4), FAST)
    np.testing.assert_array_equal(whole.keypoints[2:], tail.keypoints)
    assert not np.array_equal(whole.keypoints[2], whole.keypoints[3])
    with pytest.raises(ValueError, match="predictor"):
        score_method(Method.PREDICTED, body, camera, dataset, FAST)


def test_robustness_variants_hold_the_same_people():
    plain = draw_people(SMALL, "test")
    for variant in (dataclasses.replace(SMALL, lighting_shift=True), dataclasses.replace(SMALL, texture_noise=0.2)):
        other = draw_people(variant, "test")
        for key in ("gt_pose", "init_pose", "gt_betas", "init_betas", "gt_transl", "init_transl", "identity"):
            np.testing.assert_array_equal(other[key], plain[key])
    shifted = draw_people(dataclasses.replace(SMALL, lighting_shift=True), "test")
    assert not np.array_equal(shifted["light_direction"], plain["light_direction"])
