"""Synthetic refinement data: renders, approximate textures, exact displacement fields, caching."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.bodies import default_body, forward
from jaxpose.fitting import synthetic
from jaxpose.fitting.displacement import exact_displacement
from jaxpose.fitting.renders import back_project_texture, body_code_colors, procedural_texture, render_modalities
from jaxpose.fitting.synthetic import (
    SyntheticConfig,
    camera_from_arrays,
    dataset_camera,
    identity_pool,
    load_or_make_dataset,
    make_dataset,
    pose_pool,
)

SMALL = SyntheticConfig(
    image_size=64, num_train=4, num_test=4, train_identities=2, test_identities=2, train_poses=6, test_poses=4,
    texture_frames=2, chunk_size=4, seed=3,
)


@pytest.fixture(scope="module")
def body():
    return default_body("low")


@pytest.fixture(scope="module")
def train(body):
    with jax.numpy_rank_promotion("raise"):  # as the tests' autouse fixture: share its compiled programs
        return make_dataset(SMALL, "train", progress=False)


def test_dataset_shapes_and_determinism(train):
    n, size, v = SMALL.num_train, SMALL.image_size, default_body("low").num_vertices
    assert train["image"].shape == (n, size, size, 3) and train["image"].dtype == np.float32
    assert train["displacement"].shape == (n, size, size, 2)
    assert train["render_face_id"].dtype == np.int32 and train["render_mask"].dtype == bool
    assert train["approx_colors"].shape == (n, v, 3)
    for key in synthetic.REQUIRED_KEYS + ("render_rgb_untextured",):
        assert key in train
    assert 0.0 <= train["image"].min() and train["image"].max() <= 1.0
    again = make_dataset(SMALL, "train", progress=False)
    assert train.keys() == again.keys()
    for key in train:
        np.testing.assert_array_equal(train[key], again[key], err_msg=key)
    other = make_dataset(dataclasses.replace(SMALL, seed=4), "train", progress=False)
    assert not np.array_equal(other["gt_pose"], train["gt_pose"])


def test_split_pools_disjoint(train):
    assert not set(identity_pool(SMALL, "train")) & set(identity_pool(SMALL, "test"))
    assert not set(pose_pool(SMALL, "train")) & set(pose_pool(SMALL, "test"))
    people = synthetic.draw_people(SMALL, "test")
    assert set(people["identity"]) <= set(identity_pool(SMALL, "test"))
    assert set(people["pose_id"]) <= set(pose_pool(SMALL, "test"))
    assert set(train["identity"]) <= set(identity_pool(SMALL, "train"))
    assert set(train["pose_id"]) <= set(pose_pool(SMALL, "train"))


def test_masks_do_not_touch_border(train):
    for key in ("gt_mask", "render_mask"):
        mask = train[key]
        assert mask.sum(axis=(1, 2)).min() > 50, key
        border = mask[:, 0].any() | mask[:, -1].any() | mask[:, :, 0].any() | mask[:, :, -1].any()
        assert not border, key


def test_zero_noise_gives_zero_displacement():
    config = dataclasses.replace(
        SMALL, pose_noise_deg=0.0, root_noise_deg=0.0, beta_noise=0.0, transl_noise=0.0, depth_noise=0.0, texture_mode="noisy"
    )
    data = make_dataset(config, "train", progress=False)
    for name in ("pose", "betas", "transl"):
        np.testing.assert_array_equal(data[f"init_{name}"], data[f"gt_{name}"])
    np.testing.assert_array_equal(data["approx_colors"], data["gt_colors"])
    mask = data["render_mask"]
    np.testing.assert_array_equal(mask, data["gt_mask"])
    assert np.abs(data["displacement"]).max() < 1e-3
    assert data["displacement_valid"][mask].mean() > 0.99
    assert not data["displacement_valid"][~mask].any()


def _numpy_project(points, camera):
    cam = points @ np.asarray(camera.rotation, np.float64).T + np.asarray(camera.translation, np.float64)
    return np.stack([float(camera.fx) * cam[:, 0] / cam[:, 2] + float(camera.cx), float(camera.fy) * cam[:, 1] / cam[:, 2] + float(camera.cy)], -1)


def test_displacement_matches_numpy_reference(train, body):
    camera = camera_from_arrays(train)
    faces = np.asarray(body.faces)
    rng = np.random.default_rng(0)
    for i in range(2):
        gt = np.asarray(forward(body, train["gt_betas"][i], train["gt_pose"][i], train["gt_transl"][i]).vertices, np.float64)
        rows, cols = np.nonzero(train["render_mask"][i])
        pick = rng.choice(len(rows), 8, replace=False)
        r, c = rows[pick], cols[pick]
        face = train["render_face_id"][i, r, c]
        bary = train["render_barycentric"][i, r, c].astype(np.float64)
        points = np.einsum("nk,nkc->nc", bary, gt[faces[face]])
        expected = _numpy_project(points, camera) - np.stack([c + 0.5, r + 0.5], -1)
        np.testing.assert_allclose(train["displacement"][i, r, c], expected, atol=2e-3)
    valid = train["displacement_valid"]
    assert valid[train["render_mask"]].mean() > 0.6


def test_translation_parallel_to_image_plane(body):
    camera = dataset_camera(SMALL, body)
    rotation = np.asarray(camera.rotation)
    np.testing.assert_allclose(np.abs(rotation), np.eye(3), atol=1e-6)  # front view: camera x = world x
    faces = jnp.asarray(body.faces, jnp.int32)
    gt = forward(body, jnp.zeros(body.num_betas), jnp.zeros((body.num_joints, 3))).vertices
    shift = 0.03
    init = gt + jnp.asarray([[shift, 0.0, 0.0]])
    colors = jnp.full(gt.shape, 0.5)
    code = body_code_colors(body)
    gt_render = render_modalities(gt, faces, camera, colors, code_colors=code)
    init_render = render_modalities(init, faces, camera, colors, code_colors=code)
    displacement, valid = exact_displacement(
        init_render["face_id"], init_render["barycentric"], gt, faces, camera, gt_render["face_id"], gt_render["depth"]
    )
    displacement, valid = np.asarray(displacement), np.asarray(valid)
    mask = np.asarray(init_render["mask"])
    depth = np.asarray(init_render["depth"])  # unchanged by the translation: same point, same z
    expected_u = -float(camera.fx) * shift * rotation[0, 0] / depth[mask]
    np.testing.assert_allclose(displacement[mask][:, 0], expected_u, atol=1e-3)
    np.testing.assert_allclose(displacement[mask][:, 1], 0.0, atol=1e-3)
    assert valid[mask].mean() > 0.8  # the body's own occlusions hide the rest


def test_back_projection_recovers_constant_albedo(body):
    camera = dataset_camera(SMALL, body)
    faces = jnp.asarray(body.faces, jnp.int32)
    albedo = jnp.asarray([0.2, 0.6, 0.4])
    colors = jnp.broadcast_to(albedo, (body.num_vertices, 3))
    poses = np.zeros((2, body.num_joints, 3), np.float32)
    poses[1, 0, 1] = np.pi  # second frame: seen from behind
    vertices = forward(body, jnp.zeros(body.num_betas), jnp.asarray(poses)).vertices
    images = [
        render_modalities(v, faces, camera, colors, code_colors=colors, ambient=1.0, background=(1.0, 0.0, 1.0))["rgb"]
        for v in vertices
    ]
    recovered, seen = back_project_texture(jnp.stack(images), vertices, faces, camera, depth_tolerance=0.03)
    recovered, seen = np.asarray(recovered), np.asarray(seen)
    assert seen.mean() > 0.6
    np.testing.assert_allclose(recovered, np.broadcast_to(np.asarray(albedo), recovered.shape), atol=1e-5)


def test_render_modalities_consistent(body):
    camera = dataset_camera(SMALL, body)
    texture = procedural_texture(body, 7)
    assert texture.shape == (body.num_vertices, 3) and 0.0 <= texture.min() and texture.max() <= 1.0
    np.testing.assert_array_equal(texture, procedural_texture(body, 7))
    vertices = forward(body, jnp.zeros(body.num_betas), jnp.zeros((body.num_joints, 3))).vertices
    code = body_code_colors(body)
    out = render_modalities(vertices, body.faces, camera, texture, code_colors=code, ambient=1.0)
    mask = np.asarray(out["mask"])
    assert mask.any() and np.all(np.asarray(out["depth"])[mask] > 0)
    np.testing.assert_allclose(np.asarray(out["rgb_untextured"])[mask], 0.7, atol=1e-5)  # ambient 1: pure albedo
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out["normals"])[mask], axis=-1), 1.0, atol=1e-4)
    assert np.all(np.asarray(out["rgb"])[~mask] == 0.0)


def test_cache_round_trip_and_corrupt_file(tmp_path, train, monkeypatch):
    path = synthetic.dataset_cache_path(SMALL, "train", tmp_path)
    assert path.name.startswith("refinement_train_") and path.suffix == ".npz"
    assert synthetic.config_hash(SMALL, "train") == synthetic.config_hash(dataclasses.replace(SMALL, num_test=99), "train")
    assert synthetic.config_hash(SMALL, "train") != synthetic.config_hash(dataclasses.replace(SMALL, seed=9), "train")
    monkeypatch.setattr(synthetic, "make_dataset", lambda config, split, progress=True: train)
    first = load_or_make_dataset(SMALL, "train", tmp_path, progress=False)
    assert path.is_file()
    monkeypatch.setattr(synthetic, "make_dataset", lambda *a, **k: pytest.fail("the cache was not used"))
    loaded = load_or_make_dataset(SMALL, "train", tmp_path, progress=False)
    for key in first:
        np.testing.assert_array_equal(loaded[key], first[key], err_msg=key)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt refinement dataset cache"):
        load_or_make_dataset(SMALL, "train", tmp_path, progress=False)
