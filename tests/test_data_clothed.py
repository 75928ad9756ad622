"""CAPE-layout loader, synthetic clothed subjects, and occupancy point sets."""

import dataclasses
import os
import pickle

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.bodies import forward, star_pose
from jaxpose.skinning.cape import CapeDataset, CapeFormatError, read_frame, subject_body_model
from jaxpose.skinning.clothed import (
    OOD_MOTIONS,
    TEST_MOTIONS,
    TRAIN_MOTIONS,
    generate_clothed_dataset,
    motion_poses,
)
from jaxpose.skinning.occupancy_points import (
    cached_eval_points,
    draw_training_batch,
    eval_points,
    iou_bbox,
    iou_surface,
    make_training_pool,
    training_points,
)
from jaxpose.geometry.winding import winding_number

FRAMES = 6
SUBJECTS = {"s_skirt": "skirt", "s_shirt": "shirt", "s_dress": "dress", "s_control": "skirtstatic"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("clothed")
    meta = generate_clothed_dataset(root, subjects=SUBJECTS, frames_per_motion=FRAMES, seed=0)
    return root, meta


# ---------------------------------------------------------------------------------------------
# CAPE format on hand-written tiny files.

TETRA = np.asarray([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)


def _write_tiny_cape(root, frames=3):
    rng = np.random.default_rng(0)
    (root / "misc").mkdir(parents=True)
    np.save(root / "misc" / "smpl_tris.npy", TETRA)
    with open(root / "misc" / "subj_genders.pkl", "wb") as handle:
        pickle.dump({"00032": "male"}, handle, protocol=2)
    minimal = rng.normal(size=(4, 3)).astype(np.float32)
    (root / "minimal_body_shape" / "00032").mkdir(parents=True)
    np.save(root / "minimal_body_shape" / "00032" / "00032_minimal.npy", minimal)
    written = []
    for seq in ("longshort_ATUsquat", "shortlong_hips"):
        d = root / "sequences" / "00032" / seq
        d.mkdir(parents=True)
        for t in range(frames):
            arrays = dict(v_posed=rng.normal(size=(4, 3)), v_cano=rng.normal(size=(4, 3)), pose=rng.normal(size=72), transl=rng.normal(size=3))
            np.savez(d / f"{seq}.{t + 1:06d}.npz", **arrays)
            written.append((seq, arrays))
    return minimal, written


def test_cape_layout_round_trip(tmp_path):
    minimal, written = _write_tiny_cape(tmp_path)
    ds = CapeDataset(tmp_path)
    assert ds.subject_names == ("00032",)
    subject = ds.subject("00032")
    assert subject.sequence_names == ("longshort_ATUsquat", "shortlong_hips")
    assert subject.clothing_types == ("longshort", "shortlong")
    assert subject.gender == "male"
    np.testing.assert_array_equal(subject.minimal_template, minimal)
    np.testing.assert_array_equal(subject.faces, TETRA)
    seq = subject.sequence("longshort_ATUsquat")
    assert (seq.clothing, seq.motion, len(seq)) == ("longshort", "ATUsquat", 3)
    frames = seq.load()
    for t, (_, arrays) in enumerate(written[:3]):
        np.testing.assert_allclose(frames.v_posed[t], arrays["v_posed"], rtol=1e-6)
        np.testing.assert_allclose(frames.vertices[t], arrays["v_posed"] - arrays["transl"][None], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(frames.v_cano[t], arrays["v_cano"], rtol=1e-6)
        np.testing.assert_allclose(frames.pose[t], arrays["pose"].reshape(24, 3), rtol=1e-6)
        np.testing.assert_allclose(frames.transl[t], arrays["transl"], rtol=1e-6)
    np.testing.assert_array_equal(seq.frame(-1).v_posed, frames.v_posed[2])
    np.testing.assert_array_equal(seq.load([2, 0]).pose, frames.pose[[2, 0]])
    assert frames.names[0] == "longshort_ATUsquat.000001"


def _corrupt(root, **replace):
    path = sorted((root / "sequences" / "00032" / "shortlong_hips").glob("*.npz"))[0]
    with np.load(path) as data:
        arrays = dict(data)
    for key, value in replace.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "replace,match",
    [
        ({"v_cano": None}, r"missing key\(s\) \['v_cano'\]"),
        ({"v_posed": np.zeros((5, 3))}, r"v_posed must have shape \(4, 3\)"),
        ({"pose": np.zeros(69)}, "pose must have 72 values"),
        ({"transl": np.asarray([0.0, np.nan, 0.0])}, "transl contains NaN"),
    ],
)
def test_cape_bad_frames_raise_clear_errors(tmp_path, replace, match):
    _write_tiny_cape(tmp_path, frames=1)
    path = _corrupt(tmp_path, **replace)
    seq = CapeDataset(tmp_path).subject("00032").sequence("shortlong_hips")
    with pytest.raises(CapeFormatError, match=match) as info:
        seq.frame(0)
    assert str(path) in str(info.value)


def test_cape_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a CAPE-layout root"):
        CapeDataset(tmp_path)
    _write_tiny_cape(tmp_path, frames=1)
    ds = CapeDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no directory"):
        ds.subject("99999")
    with pytest.raises(FileNotFoundError, match="no sequence"):
        ds.subject("00032").sequence("nope_walk")
    os.remove(tmp_path / "minimal_body_shape" / "00032" / "00032_minimal.npy")
    with pytest.raises(FileNotFoundError, match="minimal body shape"):
        ds.subject("00032").sequence("shortlong_hips").frame(0)
    with pytest.raises(FileNotFoundError, match="frame file"):
        read_frame(tmp_path / "missing.npz")
    np.save(tmp_path / "misc" / "smpl_tris.npy", TETRA + 10)
    np.save(tmp_path / "minimal_body_shape" / "00032" / "00032_minimal.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(CapeFormatError, match="face indices"):
        ds.subject("00032").faces
    with pytest.raises(FileNotFoundError, match="pass smpl_body"):
        ds.subject("00032").body_model()


# ---------------------------------------------------------------------------------------------
# Generated clothed data.


def test_generated_data_reads_back_in_cape_layout(dataset):
    root, meta = dataset
    ds = CapeDataset(root)
    assert set(ds.subject_names) == set(SUBJECTS)
    assert ds.meta()["config"] == meta["config"]
    for name, garment in SUBJECTS.items():
        subject = ds.subject(name)
        split = meta["split"][name]
        train, test, ood = (set(split[k]) for k in ("train", "test", "ood"))
        assert not (train & test) and not (train & ood) and not (test & ood)
        assert len(train) >= 5
        assert train | test | ood == set(subject.sequence_names)
        assert {s.split("_", 1)[1] for s in train} == set(TRAIN_MOTIONS)
        assert {s.split("_", 1)[1] for s in test} == set(TEST_MOTIONS)
        assert {s.split("_", 1)[1] for s in ood} == set(OOD_MOTIONS)
        assert all(len(subject.sequence(s)) == FRAMES for s in subject.sequence_names)
        assert subject.clothing_types == (garment,)
    assert meta["watertight"] == {"boundary_edges": 0, "nonmanifold_edges": 0}
    np.testing.assert_allclose(np.asarray(meta["star_pose"]), star_pose())


def test_v_posed_is_lbs_of_v_cano_and_offsets_are_bounded(dataset):
    root, meta = dataset
    for name in SUBJECTS:
        subject = CapeDataset(root).subject(name)
        body = subject.body_model()
        frames = subject.sequence(meta["split"][name]["train"][0]).load()
        for t in (0, FRAMES - 1):
            posed = forward(dataclasses.replace(body, v_template=frames.v_cano[t]), jnp.zeros(1), frames.pose[t]).vertices
            np.testing.assert_allclose(frames.vertices[t], np.asarray(posed), atol=2e-5)
        np.testing.assert_allclose(body.v_template, subject.minimal_template)
        info = meta["subjects"][name]
        assert 0.005 < info["max_offset_m"] <= 0.05
        if SUBJECTS[name] == "skirtstatic":
            assert info["max_pose_dependent_offset_m"] < 1e-6  # float32 round-off only
        else:
            assert info["max_pose_dependent_offset_m"] > 0.01


def _skinning_transforms(body, poses):
    """Per-frame 3x4 skinning transforms (T, 24, 3, 4) from the world frames that `forward` returns."""
    world = np.asarray(forward(body, jnp.zeros(1), poses).transforms, np.float64)
    rest = np.asarray(body.j_template, np.float64)
    rotation = world[..., :3, :3]
    translation = world[..., :3, 3] - np.einsum("tjab,jb->tja", rotation, rest)
    return np.concatenate([rotation, translation[..., None]], axis=-1)


def _lbs_fit_residuals(frames, body, rest):
    """Per-vertex RMS over frames (metres) of the best fit v_posed ~ sum_j w_j A_j(theta_t) rest.

    Returns (convex, free): weights fitted per vertex jointly over all frames, either as true LBS
    weights (w >= 0, sum w = 1; NNLS with a heavily weighted sum row) or unconstrained (any real
    w, a superset of every LBS). `rest` (V, 3) is the pose-independent canonical mesh.
    """
    from scipy.optimize import nnls

    transforms = _skinning_transforms(body, frames.pose)  # (T, 24, 3, 4)
    num_vertices = rest.shape[0]
    homogeneous = np.concatenate([rest, np.ones((num_vertices, 1))], axis=1).astype(np.float64)
    design = np.einsum("tjab,vb->vtaj", transforms, homogeneous).reshape(num_vertices, -1, 24)  # (V, 3T, 24)
    target = frames.vertices.astype(np.float64).transpose(1, 0, 2).reshape(num_vertices, -1)  # (V, 3T)
    rms = lambda residual: np.sqrt(np.mean(residual.reshape(-1, 3) ** 2, axis=0).sum())  # noqa: E731
    gram = np.einsum("vij,vik->vjk", design, design) + 1e-9 * np.eye(24)
    free_weights = np.linalg.solve(gram, np.einsum("vij,vi->vj", design, target)[..., None])[..., 0]
    free = np.asarray([rms(design[v] @ free_weights[v] - target[v]) for v in range(num_vertices)])
    convex = np.empty(num_vertices)
    for v in range(num_vertices):
        weights, _ = nnls(np.vstack([design[v], 100.0 * np.ones((1, 24))]), np.concatenate([target[v], [100.0]]))
        convex[v] = rms(design[v] @ weights - target[v])
    return convex, free


def test_clothed_frames_are_not_expressible_by_any_lbs_weights(dataset):
    from jaxpose.skinning.clothed import garment_offsets, make_subject

    root, meta = dataset
    ds = CapeDataset(root)
    for name, garment in SUBJECTS.items():
        subject = ds.subject(name)
        parts = [subject.sequence(s).load() for s in meta["split"][name]["train"] + meta["split"][name]["test"]]
        frames = type(parts[0])(*[np.concatenate([getattr(p, k) for p in parts]) for k in parts[0]._fields[:-1]], names=())
        body = subject.body_model()
        # The pose-independent canonical mesh: minimal template + the garment's zero-pose shape.
        synth = make_subject(name, garment, seed=meta["config"]["seed"])
        rest = np.asarray(body.v_template, np.float64) + garment_offsets(synth.field, np.zeros((24, 3)))
        convex, free = _lbs_fit_residuals(frames, body, rest)
        if garment == "skirtstatic":  # the control: exactly LBS
            assert convex.max() < 1e-4 and free.max() < 1e-4
        else:
            assert convex.max() > 0.008, (name, convex.max())
            assert np.mean(convex > 2e-3) > 0.03, (name, np.mean(convex > 2e-3))
            assert free.max() > 0.004, (name, free.max())


def test_generation_is_deterministic_per_seed(tmp_path):
    kwargs = dict(subjects={"a": "dress"}, frames_per_motion=2)
    generate_clothed_dataset(tmp_path / "x", seed=3, **kwargs)
    generate_clothed_dataset(tmp_path / "y", seed=3, **kwargs)
    generate_clothed_dataset(tmp_path / "z", seed=4, **kwargs)
    load = lambda d: CapeDataset(tmp_path / d).subject("a").sequence("dress_kick").load()  # noqa: E731
    x, y, z = load("x"), load("y"), load("z")
    np.testing.assert_array_equal(x.v_posed, y.v_posed)
    np.testing.assert_array_equal(x.pose, y.pose)
    assert not np.allclose(x.v_posed, z.v_posed)
    p1, t1 = motion_poses("walk", 5, 0, "a")
    p2, _ = motion_poses("walk", 5, 0, "b")
    np.testing.assert_array_equal(p1, motion_poses("walk", 5, 0, "a")[0])
    assert not np.allclose(p1, p2)
    assert np.ptp(t1[:, 2]) > 0  # walks move forward


def test_regeneration_reuses_or_refuses(tmp_path):
    kwargs = dict(subjects={"a": "skirtstatic"}, frames_per_motion=1)
    meta = generate_clothed_dataset(tmp_path, **kwargs)
    path = next((tmp_path / "sequences" / "a").rglob("*.npz"))
    before = path.stat().st_mtime_ns
    assert generate_clothed_dataset(tmp_path, **kwargs) == meta
    assert path.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_clothed_dataset(tmp_path, subjects={"a": "skirtstatic"}, frames_per_motion=2)
    meta2 = generate_clothed_dataset(tmp_path, subjects={"a": "skirtstatic"}, frames_per_motion=2, overwrite=True)
    assert meta2["config"]["frames_per_motion"] == 2
    with pytest.raises(ValueError, match="unknown garment"):
        generate_clothed_dataset(tmp_path / "q", subjects={"a": "cape"})


def test_subject_body_model_regresses_joints():
    from jaxpose.bodies import default_body

    body = default_body("low")
    with pytest.raises(ValueError, match="does not match"):
        subject_body_model(body, np.zeros((3, 3)))
    if body.j_regressor is not None:
        template = np.asarray(body.v_template) * 1.1
        new = subject_body_model(body, template)
        np.testing.assert_allclose(new.j_template, np.asarray(body.j_regressor) @ template, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Occupancy point sets.


@pytest.fixture(scope="module")
def posed_frame(dataset):
    root, _ = dataset
    subject = CapeDataset(root).subject("s_dress")
    return subject.sequence("dress_walk").frame(2).vertices, subject.faces


def test_eval_points_layout_and_label_sanity(posed_frame):
    vertices, faces = posed_frame
    n = 3000
    result = eval_points(vertices, faces, seed=0, frame=2, n_bbox=n, n_surface=n)
    assert result.points.shape == (2 * n, 3) and result.occupancy.dtype == bool and result.n_bbox == n
    box = iou_bbox(result.points, n)
    lo, hi = vertices.min(0), vertices.max(0)
    side = 1.1 * np.max(hi - lo)
    np.testing.assert_allclose(box.max(0) - box.min(0), side, rtol=0.02)
    np.testing.assert_allclose(0.5 * (box.max(0) + box.min(0)), 0.5 * (lo + hi), atol=0.03 * side)
    assert 0.002 < iou_bbox(result.occupancy, n).mean() < 0.1
    assert 0.35 < iou_surface(result.occupancy, n).mean() < 0.65
    # Labels equal the plain winding-number test (the AABB shortcut changes nothing).
    w = np.asarray(winding_number(result.points, vertices, faces))
    np.testing.assert_array_equal(result.occupancy, w > 0.5)
    again = eval_points(vertices, faces, seed=0, frame=2, n_bbox=n, n_surface=n)
    np.testing.assert_array_equal(again.points, result.points)
    assert not np.allclose(eval_points(vertices, faces, seed=0, frame=3, n_bbox=n, n_surface=n).points, result.points)


def test_eval_points_cache_reuse_and_invalidation(tmp_path, posed_frame):
    vertices, faces = posed_frame
    kwargs = dict(seed=1, frame=7, n_bbox=500, n_surface=500)
    first = cached_eval_points(tmp_path, vertices, faces, **kwargs)
    path = tmp_path / "frame_000007.npz"
    stamp = path.stat().st_mtime_ns
    second = cached_eval_points(tmp_path, vertices, faces, **kwargs)
    assert path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.points, second.points)
    np.testing.assert_array_equal(first.occupancy, second.occupancy)
    moved = cached_eval_points(tmp_path, vertices + np.float32(0.1), faces, **kwargs)  # another mesh: recompute
    assert path.stat().st_mtime_ns != stamp
    assert not np.allclose(moved.points, first.points)
    path.write_bytes(b"garbage")
    np.testing.assert_array_equal(cached_eval_points(tmp_path, vertices, faces, **kwargs).points, first.points)


def test_training_points_are_a_pure_function_of_seed_step_frame(posed_frame):
    vertices, faces = posed_frame
    a = training_points(vertices, faces, seed=0, step=10, frame=3)
    b = training_points(vertices, faces, seed=0, step=10, frame=3)
    c = training_points(vertices, faces, seed=0, step=11, frame=3)
    assert a.points.shape == (2250, 3)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.allclose(a.points, c.points)
    assert np.all(np.abs(a.points[2000:]) <= 1.8)
    assert 0.2 < a.occupancy[:2000].mean() < 0.7
    with pytest.raises(ValueError, match="surface_sampling"):
        training_points(vertices, faces, seed=0, step=0, frame=0, surface_sampling="poisson")


def test_training_pool_draws_are_deterministic_pool_members(posed_frame):
    vertices, faces = posed_frame
    meshes = np.stack([vertices, vertices + np.float32(0.05)])
    pool = make_training_pool(meshes, faces, seed=0, pool_surface=400, pool_uniform=100)
    batch = draw_training_batch(pool, np.asarray([1, 0]), seed=0, step=5, n_surface=50, n_uniform=10)
    again = draw_training_batch(pool, np.asarray([1, 0]), seed=0, step=5, n_surface=50, n_uniform=10)
    other = draw_training_batch(pool, np.asarray([1, 0]), seed=0, step=6, n_surface=50, n_uniform=10)
    assert batch.points.shape == (2, 60, 3) and batch.occupancy.shape == (2, 60)
    np.testing.assert_array_equal(np.asarray(batch.points), np.asarray(again.points))
    assert not np.allclose(np.asarray(batch.points), np.asarray(other.points))
    surface = np.asarray(pool.surface_points[1])
    drawn = np.asarray(batch.points[0, :50])
    matches = np.all(drawn[:, None, :] == surface[None, :, :], axis=-1)
    assert matches.any(axis=1).all()
    index = matches.argmax(axis=1)
    np.testing.assert_array_equal(np.asarray(batch.occupancy[0, :50]), np.asarray(pool.surface_occupancy[1])[index])
