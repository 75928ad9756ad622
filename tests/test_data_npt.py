"""NPT-style data: pose-index plan, splits, betas, the generator's files, the loader, pairs, test lists."""

import json
import os
import pathlib
import re
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from jaxpose.bodies import SMPL_PARENTS, BodyModel
from jaxpose.bodies.poses import npt_pose
from jaxpose.bodies import default_body
from jaxpose.pose_transfer import data_cli, npt_data, npt_resources
from jaxpose.pose_transfer.npt_data import (
    NptConfig,
    generate_npt_dataset,
    identity_split,
    pose_index_plan,
    sample_betas,
)
from jaxpose.pose_transfer.npt_resources import (
    NptResourceError,
    OutputDirectoryError,
    available_memory_bytes,
    npt_estimate,
)
from jaxpose.pose_transfer.pairs import check_data_config, make_train_pairs
from jaxpose.pose_transfer.task import CORENET_TASK
from jaxpose.training.config import load_config
from jaxpose.pose_transfer.dataset import PoseTransferData
from jaxpose.pose_transfer.sampling import gather_pairs, random_permutation_batch, sample_train_pairs
from jaxpose.pose_transfer.test_lists import (
    NPT_NAMING,
    SMAL_NAMING,
    Triple,
    format_test_list,
    make_test_triples,
    read_test_list,
    trivial_pair_counts,
)
from jaxpose.io.mesh import MeshError, load_mesh, save_mesh


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_body() -> BodyModel:
    """A 42-vertex, 24-joint body with 4 betas; skinning weights from distances to the joints."""
    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(subdivisions=1)
    v_template = (sphere.vertices * [0.4, 0.9, 0.2]).astype(np.float32)
    j_template = (rng.uniform(-1, 1, (24, 3)) * [0.3, 0.8, 0.1]).astype(np.float32)
    dist = np.linalg.norm(v_template[:, None, :] - j_template[None, :, :], axis=-1)
    weights = np.exp(-dist / 0.1)
    weights /= weights.sum(axis=1, keepdims=True)
    return BodyModel.from_arrays(
        v_template=v_template,
        shapedirs=rng.normal(0, 0.02, (42, 3, 4)).astype(np.float32),
        weights=weights.astype(np.float32),
        faces=sphere.faces,
        parents=SMPL_PARENTS,
        j_template=j_template,
        j_shapedirs=rng.normal(0, 0.01, (24, 3, 4)).astype(np.float32),
    )


def _rodrigues(aa: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(aa)
    if angle < 1e-12:
        return np.eye(3)
    k = aa / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def _lbs_reference(body: BodyModel, betas: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Float64 NumPy linear blend skinning (no pose correctives): (V, 3)."""
    sd = np.asarray(body.shapedirs, np.float64)
    v = np.asarray(body.v_template, np.float64) + sd @ betas
    j = np.asarray(body.j_template, np.float64) + np.asarray(body.j_shapedirs, np.float64) @ betas
    world = []
    for idx, parent in enumerate(body.parents):
        local = np.eye(4)
        local[:3, :3] = _rodrigues(pose[idx].astype(np.float64))
        local[:3, 3] = j[idx] - (j[parent] if parent >= 0 else 0)
        world.append(local if parent < 0 else world[parent] @ local)
    skin = np.stack(world)
    skin[:, :3, 3] -= np.einsum("jab,jb->ja", skin[:, :3, :3], j)
    blended = np.einsum("vj,jab->vab", np.asarray(body.weights, np.float64), skin)
    return np.einsum("vab,vb->va", blended[:, :3, :3], v) + blended[:, :3, 3]


CONFIG = NptConfig(identities=3, poses=4, resolution="low", seed=5)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, synthetic_body):
    out = tmp_path_factory.mktemp("npt") / "data"
    report = generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False, chunk_size=2)
    return report


# ---------------------------------------------------------------------------------------------
# Plan, splits, betas
# ---------------------------------------------------------------------------------------------


def test_pose_index_plan_small_has_wide_and_straight_and_disjoint_splits():
    plan = pose_index_plan(8)
    assert plan.indices == (200, 201, 202, 400, 401, 402, 600, 601)
    assert plan.train == (200, 201, 202, 400, 401, 402) and plan.test == (600, 601)
    for p in (2, 3, 7, 24, 101, 600):
        plan = pose_index_plan(p)
        assert len(plan.indices) == len(set(plan.indices)) == p
        assert not set(plan.train) & set(plan.test)
        assert set(plan.train) | set(plan.test) == set(plan.indices)
        assert plan.test and all(j >= 600 for j in plan.test)  # test poses: straight sampler only
        if p >= 3:
            assert any(j < 400 for j in plan.train) and any(j >= 400 for j in plan.train)


def test_pose_index_plan_matches_corenet_and_npt_layouts():
    plan = pose_index_plan(600)
    assert plan.train == tuple(range(200, 600)) and plan.test == tuple(range(600, 800))
    plan = pose_index_plan(800)
    assert plan.indices == tuple(sorted(plan.indices)) == tuple(range(800))
    assert plan.train == tuple(range(200, 600)) and plan.test == tuple(range(600, 800))
    assert pose_index_plan(1) == ((200,), (200,), ())
    for bad in (0, 801):
        with pytest.raises(ValueError, match="num_poses"):
            pose_index_plan(bad)


def test_identity_split_holds_out_the_last_half():
    assert identity_split(4) == ((0, 1), (2, 3))
    assert identity_split(30) == (tuple(range(15)), tuple(range(15, 30)))
    assert identity_split(3) == ((0, 1), (2,))
    assert identity_split(1) == ((0,), ())


def test_betas_deterministic_truncated_normal():
    a = sample_betas(7, 3, 16)
    np.testing.assert_array_equal(a, sample_betas(7, 3, 16))
    assert not np.array_equal(a, sample_betas(8, 3, 16)) and not np.array_equal(a, sample_betas(7, 4, 16))
    samples = np.stack([sample_betas(0, i, 16) for i in range(2000)])
    assert np.abs(samples).max() <= 2.5
    assert abs(samples.mean()) < 0.02
    # Standard normal truncated to ±2.5: variance 1 - 2·2.5·φ(2.5)/(2Φ(2.5) − 1) = 0.91126.
    assert abs(samples.var() - 0.91126) < 0.03


def test_npt_uniform_betas_warn(tmp_path, synthetic_body):
    samples = np.stack([sample_betas(0, i, 8, "npt_uniform") for i in range(500)])
    assert samples.min() >= -4 and samples.max() <= 4 and samples.min() < -3.9 and samples.max() > 3.9
    with pytest.warns(UserWarning, match="implausible"):
        generate_npt_dataset(tmp_path / "u", NptConfig(identities=2, poses=2, beta_mode="npt_uniform"),
                             body=synthetic_body, progress=False)
    with pytest.raises(ValueError, match="beta_mode"):
        NptConfig(beta_mode="wide")


# ---------------------------------------------------------------------------------------------
# Generator output
# ---------------------------------------------------------------------------------------------


def test_generated_files_and_geometry(generated, synthetic_body):
    out, meta = generated.out_dir, generated.meta
    plan = pose_index_plan(CONFIG.poses)
    expected = {f"id{i}_{j}.obj" for i in range(3) for j in plan.indices} | {f"id{i}_rest.obj" for i in range(3)}
    expected |= {"cache.npz", "meta.json", "human_test_list"}
    assert set(os.listdir(out)) == expected  # no temporary files left behind
    assert meta["pose_indices"] == list(plan.indices)
    for i in range(3):
        betas = sample_betas(CONFIG.seed, i, 4)
        np.testing.assert_array_equal(np.asarray(meta["betas"][i], np.float32), betas)
        rest = load_mesh(out / f"id{i}_rest.obj")
        reference_rest = synthetic_body.v_template + np.asarray(synthetic_body.shapedirs, np.float64) @ betas
        np.testing.assert_allclose(rest.vertices, reference_rest, atol=2e-6)
        for j in plan.indices:
            mesh = load_mesh(out / f"id{i}_{j}.obj")
            np.testing.assert_array_equal(mesh.faces, synthetic_body.faces)
            np.testing.assert_allclose(mesh.vertices, _lbs_reference(synthetic_body, betas, npt_pose(j)), atol=3e-6)


def test_cache_and_meta_agree_with_files(generated):
    out = generated.out_dir
    with np.load(out / "cache.npz") as cache:
        vertices, poses, pose_indices = cache["vertices"], cache["poses"], cache["pose_indices"]
        assert vertices.shape == (3, 4, 42, 3) and vertices.dtype == np.float32
        assert cache["rest"].shape == (3, 42, 3) and cache["betas"].shape == (3, 4)
    for col, j in enumerate(pose_indices):
        np.testing.assert_allclose(poses[col], npt_pose(int(j)), atol=1e-7)  # pose j shared by every identity
    np.testing.assert_allclose(vertices[1, 2], load_mesh(out / f"id1_{pose_indices[2]}.obj").vertices, atol=1e-6)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train_identities": [0, 1], "test_identities": [2],
                              "train_poses": [200, 201, 400], "test_poses": [600]}
    assert meta["config"]["seed"] == CONFIG.seed and meta["body"]["num_vertices"] == 42


def test_skip_identical_refuse_different_and_overwrite(generated, synthetic_body, tmp_path):
    out = tmp_path / "d"
    generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False, chunk_size=2)
    stamp = os.stat(out / "id0_200.obj").st_mtime_ns
    again = generate_npt_dataset(out, CONFIG, body=synthetic_body, skip_if_identical=True, progress=False)
    assert again.skipped and os.stat(out / "id0_200.obj").st_mtime_ns == stamp
    smaller = NptConfig(identities=2, poses=4, seed=5)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_npt_dataset(out, smaller, body=synthetic_body, skip_if_identical=True, progress=False)
    (out / "notes.txt").write_text("keep me")
    generate_npt_dataset(out, smaller, body=synthetic_body, overwrite=True, progress=False, chunk_size=2)
    names = set(os.listdir(out))
    assert "id2_200.obj" not in names and "id2_rest.obj" not in names and "notes.txt" in names
    assert PoseTransferData.open(out).identities == (0, 1)


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------


def test_loader_reads_jaxpose_dir_from_cache_and_from_objs(generated, synthetic_body):
    cached = PoseTransferData.open(generated.out_dir)
    from_files = PoseTransferData.open(generated.out_dir, use_cache=False)
    assert cached.kind == from_files.kind == "jaxpose"
    assert cached.identities == (0, 1, 2) and cached.poses == (200, 201, 400, 600)
    assert cached.train_identities == (0, 1) and cached.test_poses == (600,)
    np.testing.assert_array_equal(cached.faces, synthetic_body.faces)
    np.testing.assert_allclose(cached.as_arrays(), from_files.as_arrays(), atol=1e-6)
    np.testing.assert_allclose(cached.vertices(2, 201), from_files.vertices(2, 201), atol=1e-6)
    np.testing.assert_allclose(cached.rest(1), from_files.rest(1), atol=1e-6)
    assert cached.test_triples() == read_test_list(generated.out_dir / "human_test_list")
    with pytest.raises(KeyError, match="identity 9"):
        cached.vertices(9, 200)


def _write_grid(root, naming, identities, poses, faces, vertices_fn):
    root.mkdir()
    for i in identities:
        for p in poses:
            save_mesh(root / naming.file_name(i, p), vertices_fn(i, p), faces)


@pytest.fixture(scope="module")
def tetra():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    return vertices, faces


def test_loader_reads_npt_release_layout(tmp_path, tetra):
    vertices, faces = tetra
    root = tmp_path / "npt"
    shift = lambda i, p: vertices + np.float32(i + p / 1000)  # noqa: E731
    _write_grid(root, NPT_NAMING, [0, 1, 16, 17], [200, 201, 600, 601], faces, shift)
    (root / "id3_rest.obj").write_text("not part of the grid\n")
    lst = [Triple(16, 600, 17, 601), Triple(17, 601, 17, 600)]
    (root / "human_test_list").write_text(format_test_list(lst))
    data = PoseTransferData.open(root)
    assert data.kind == "npt" and data.identities == (0, 1, 16, 17) and data.poses == (200, 201, 600, 601)
    assert data.train_identities == (0, 1) and data.train_poses == (200, 201)
    assert data.test_identities == (16, 17) and data.test_poses == (600, 601)
    np.testing.assert_allclose(data.vertices(16, 601), vertices + 16.601, atol=1e-6)
    assert data.as_arrays().shape == (4, 4, 4, 3)
    assert data.test_triples() == lst
    with pytest.raises(FileNotFoundError):
        data.rest(0)


def test_loader_reads_smal_layout_and_generates_missing_list(tmp_path, tetra):
    vertices, faces = tetra
    root = tmp_path / "smal"
    _write_grid(root, SMAL_NAMING, [0, 16, 21], [0, 1, 400], faces, lambda i, p: vertices * (1 + i))
    data = PoseTransferData.open(root)
    assert data.kind == "smal" and data.train_identities == (0, 21) and data.test_identities == (16,)
    assert data.train_poses == (0, 1) and data.test_poses == (400,)
    triples = data.test_triples()
    assert triples == [Triple(16, 400, 16, 400)]  # the only distinct triple of 1 id x 1 pose
    np.testing.assert_allclose(data.vertices(21, 400), vertices * 22)


def test_loader_rejects_mismatching_faces_naming_first_file(tmp_path, tetra):
    vertices, faces = tetra
    root = tmp_path / "bad"
    _write_grid(root, NPT_NAMING, [0, 1], [5, 6], faces, lambda i, p: vertices)
    save_mesh(root / "id1_5.obj", vertices, faces[:, ::-1])
    save_mesh(root / "id1_6.obj", vertices, faces[::-1])
    data = PoseTransferData.open(root)
    with pytest.raises(MeshError, match="id1_5.obj.*faces differ"):
        data.as_arrays()
    os.remove(root / "id1_5.obj")
    save_mesh(root / "id1_6.obj", vertices, faces)
    with pytest.raises(FileNotFoundError, match="1 meshes missing.*id1_5.obj"):
        PoseTransferData.open(root).as_arrays()


def test_loader_errors_on_missing_or_empty_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PoseTransferData.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no pose-transfer meshes"):
        PoseTransferData.open(tmp_path / "empty")
    with pytest.raises(ValueError, match="kind"):
        PoseTransferData.open(tmp_path / "empty", kind="faust")


# ---------------------------------------------------------------------------------------------
# Test lists
# ---------------------------------------------------------------------------------------------


def test_make_test_triples_protocol_and_counts():
    ids, poses = range(16, 30), range(601, 800)
    triples = make_test_triples(ids, poses, 400, seed=0)
    assert triples == make_test_triples(ids, poses, 400, seed=0) != make_test_triples(ids, poses, 400, seed=1)
    assert len(set(triples)) == 400
    assert all(t.identity_id in ids and t.pose_id in ids and t.identity_pose in poses and t.pose_pose in poses
               for t in triples)
    counts = trivial_pair_counts(triples)
    assert counts["same_identity"] == sum(t.identity_id == t.pose_id for t in triples)
    assert 10 <= counts["same_identity"] <= 50 and counts["same_pose"] <= 10  # expected 28.6 and 2.0
    small = make_test_triples([2, 3], [600, 601], 400, seed=0)
    assert len(small) == len(set(small)) == 16


def test_test_list_text_round_trip_and_errors(tmp_path):
    triples = [Triple(16, 650, 20, 700), Triple(29, 601, 29, 799)]
    text = format_test_list(triples)
    assert text.splitlines()[0] == "id16_650.obj id20_700.obj id16_700.obj"
    path = tmp_path / "human_test_list"
    path.write_text(text)
    assert read_test_list(path) == triples
    smal = tmp_path / "animal_test_list"
    smal.write_text(format_test_list([Triple(16, 400, 22, 599)], SMAL_NAMING))
    assert smal.read_text() == "toy_16_400.ply toy_22_599.ply toy_16_599.ply\n"
    assert read_test_list(smal) == [Triple(16, 400, 22, 599)]
    for bad, message in [("id1_2.obj id3_4.obj id3_4.obj\n", "ground truth"),
                         ("id1_2.obj id3_4.obj\n", "expected 3"),
                         ("id1_2.obj mesh.obj id1_2.obj\n", "not a mesh name"),
                         ("\n", "empty")]:
        path.write_text(bad)
        with pytest.raises(ValueError, match=message):
            read_test_list(path)
    with pytest.raises(FileNotFoundError):
        read_test_list(tmp_path / "missing_list")


# ---------------------------------------------------------------------------------------------
# Training pairs and device-side permutation
# ---------------------------------------------------------------------------------------------


def test_pair_sampler_is_pure_and_batch_size_independent():
    ids, poses = (0, 1, 2), (200, 201, 400)
    a = sample_train_pairs(3, 5, 8, ids, poses)
    b = sample_train_pairs(3, 5, 8, ids, poses)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    whole = sample_train_pairs(3, 0, 8, ids, poses)
    halves = [sample_train_pairs(3, s, 4, ids, poses) for s in (0, 1)]
    for field in range(4):
        np.testing.assert_array_equal(whole[field], np.concatenate([h[field] for h in halves]))
    assert not np.array_equal(sample_train_pairs(4, 5, 8, ids, poses).identity_ids, a.identity_ids) or \
        not np.array_equal(sample_train_pairs(4, 5, 8, ids, poses).pose_poses, a.pose_poses)
    many = sample_train_pairs(0, 0, 600, ids, poses)
    assert set(many.identity_ids) == set(many.pose_ids) == set(ids)
    assert set(many.identity_poses) == set(many.pose_poses) == set(poses)
    with pytest.raises(ValueError, match="batch_size"):
        sample_train_pairs(0, 0, 0, ids, poses)


def test_gather_follows_the_triple_rule(generated):
    data = PoseTransferData.open(generated.out_dir)
    pairs = data.sample_train_pairs(seed=1, step=2, batch_size=5)
    identity, pose, gt = data.gather(pairs)
    assert identity.shape == pose.shape == gt.shape == (5, 42, 3)
    for b in range(5):
        np.testing.assert_array_equal(identity[b], data.vertices(pairs.identity_ids[b], pairs.identity_poses[b]))
        np.testing.assert_array_equal(pose[b], data.vertices(pairs.pose_ids[b], pairs.pose_poses[b]))
        np.testing.assert_array_equal(gt[b], data.vertices(pairs.identity_ids[b], pairs.pose_poses[b]))
    assert set(pairs.identity_ids) <= set(data.train_identities) and set(pairs.pose_poses) <= set(data.train_poses)
    on_device = gather_pairs(jnp.asarray(data.as_arrays()), jnp.array([0, 2]), jnp.array([1, 3]), jnp.array([1, 1]), jnp.array([0, 2]))
    np.testing.assert_array_equal(on_device[2][1], data.as_arrays()[2, 2])


def test_random_permutation_batch_keeps_face_geometry():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    rng = np.random.default_rng(0)
    identity = jnp.asarray(np.stack([sphere.vertices, sphere.vertices * 2]), jnp.float32)
    gt = identity + jnp.asarray(rng.normal(size=identity.shape), jnp.float32)
    pose = jnp.asarray(rng.normal(size=(2, 30, 3)), jnp.float32)
    faces = jnp.asarray(sphere.faces, jnp.int32)
    out = jax.jit(random_permutation_batch)(jax.random.key(0), identity, gt, faces, pose)
    assert out.identity_faces.shape == (2, len(sphere.faces), 3) and out.identity_faces.dtype == jnp.int32
    for b in range(2):
        perm, pose_perm = np.asarray(out.identity_permutation[b]), np.asarray(out.pose_permutation[b])
        np.testing.assert_array_equal(np.sort(perm), np.arange(42))
        assert not np.array_equal(perm, np.arange(42))
        np.testing.assert_array_equal(out.identity[b], identity[b][perm])
        np.testing.assert_array_equal(out.gt[b], gt[b][perm])  # same permutation as the identity
        np.testing.assert_array_equal(out.pose[b], pose[b][pose_perm])
        for source, shuffled in ((identity[b], out.identity[b]), (gt[b], out.gt[b])):
            before = {tuple(np.asarray(source)[f].ravel()) for f in np.asarray(faces)}
            after = {tuple(np.asarray(shuffled)[f].ravel()) for f in np.asarray(out.identity_faces[b])}
            assert before == after  # same triangles, corners in the same order
    assert not np.array_equal(out.identity_permutation[0], out.identity_permutation[1])
    with pytest.raises(ValueError, match="gt must"):
        random_permutation_batch(jax.random.key(0), identity, gt[:, :5], faces, pose)


# ---------------------------------------------------------------------------------------------
# CLI and demo on the shipped low-resolution body
# ---------------------------------------------------------------------------------------------


def test_cli_npt_on_default_body(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["npt", "--out", str(out), "--identities", "2", "--poses", "3", "--resolution", "low", "--no-progress"]
    assert data_cli.main(argv, prog="jaxpose data") == 0
    printed = capsys.readouterr().out
    assert "2 x 3 = 6 meshes" in printed and "test list:" in printed
    objs = sorted(n for n in os.listdir(out) if NPT_NAMING.parse(n))
    assert objs == ["id0_200.obj", "id0_400.obj", "id0_600.obj", "id1_200.obj", "id1_400.obj", "id1_600.obj"]
    data = PoseTransferData.open(out)
    faces = {load_mesh(out / n).faces.tobytes() for n in objs}
    assert len(faces) == 1 and data.faces.tobytes() in faces
    assert data.as_arrays().shape[:2] == (2, 3) and data.num_vertices > 1000
    assert data_cli.main(argv, prog="jaxpose data") == 0 and "kept identical" in capsys.readouterr().out
    different = ["npt", "--out", str(out), "--identities", "3", "--poses", "3", "--no-progress"]
    assert data_cli.main(different, prog="jaxpose data") == 1
    assert "overwrite" in capsys.readouterr().err
    assert data_cli.main(["npt", "--out", str(tmp_path / "x"), "--poses", "0"], prog="jaxpose data") == 1
    assert "poses must be" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Refusals before anything is written, stale temporary files, progress (issue #10)
# ---------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _run_cli(argv, capsys) -> tuple[int, str, str]:
    code = data_cli.main(["npt", *argv, "--no-progress"], prog="jaxpose data")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path, synthetic_body):
    out = tmp_path / "d"
    generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False, chunk_size=2)
    killed = out / f".id0_200.obj.{_dead_pid()}.0123456789ab.tmp"  # what kill -9 mid-write leaves
    running = out / f".id0_201.obj.{os.getpid()}.0123456789ab.tmp"  # a live writer's: kept
    killed.write_text("v 0 0")
    running.write_text("v 0 0")
    generate_npt_dataset(out, CONFIG, body=synthetic_body, overwrite=True, progress=False, chunk_size=2)
    assert not killed.exists()
    assert running.read_text() == "v 0 0"
    assert PoseTransferData.open(out).identities == (0, 1, 2)


def test_too_big_request_is_refused_with_the_numbers_before_allocating(tmp_path, capsys):
    out = tmp_path / "huge"
    code, printed, err = _run_cli(["--out", str(out), "--identities", "100000", "--poses", "800"], capsys)
    estimate = npt_estimate(NptConfig(identities=100000, poses=800), default_body("low"))
    if available_memory_bytes() is not None and available_memory_bytes() > estimate.memory_bytes:
        pytest.skip("this machine has more than a TiB of available memory")
    assert code == 1
    assert "estimate: 80100000 meshes" in printed and "TiB" in printed
    assert "needs about" in err and "TiB of memory" in err and "is available" in err
    assert not out.exists()


def test_too_little_disk_is_refused_and_leaves_no_directory(tmp_path, synthetic_body, monkeypatch):
    monkeypatch.setattr(npt_resources, "free_disk_bytes", lambda directory: (pathlib.Path(directory), 1000))
    out = tmp_path / "new" / "data"
    with pytest.raises(NptResourceError, match=r"of disk .* but only 1000 B is free"):
        generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_directory_is_named_before_generating(tmp_path, synthetic_body, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "npt"
    with pytest.raises(OutputDirectoryError, match=rf"cannot create the output directory {out}"):
        generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False)
    assert blocker.read_text() == "not a directory" and sorted(os.listdir(tmp_path)) == ["a_file"]
    if os.path.isdir("/sys") and not os.path.exists("/sys/npt"):  # sysfs refuses mkdir, even to root
        code, _, err = _run_cli(["--out", "/sys/npt", "--identities", "2", "--poses", "2"], capsys)
        assert code == 1 and "output directory /sys/npt" in err and "Traceback" not in err
        assert not os.path.exists("/sys/npt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only-mode directory")
def test_read_only_output_directory_is_named(tmp_path, synthetic_body):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(OutputDirectoryError, match=rf"{out} is not writable"):
            generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False)
        assert os.listdir(out) == []
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--precision", "-1"], r"precision must be in \[0, 12\] decimals \(--precision\), got -1"),
        (["--precision", "50"], r"precision must be in \[0, 12\] decimals \(--precision\), got 50"),
        (["--identities", "1", "--poses", "1"], r"leaves the test split empty.*--identities >= 2 and --poses >= 2"),
        (["--identities", "5", "--poses", "1"], r"poses=1 leaves the test split empty"),
        (["--test-triples", "0"], r"num_test_triples must be >= 1 \(--test-triples\)"),
        (["--identities", "0"], r"identities must be >= 1 \(--identities\)"),
        (["--poses", "-3"], r"poses must be in \[1, 800\] \(--poses"),
    ],
)
def test_invalid_flags_are_refused_before_writing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    code, _, err = _run_cli(["--out", str(out), *flags], capsys)
    assert code == 1 and re.search(message, err), err
    assert not out.exists()


def test_progress_bar_counts_each_written_mesh_once(tmp_path, synthetic_body, monkeypatch):
    bars = []

    class RecordingBar:
        def __init__(self, total, **kwargs):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(npt_data, "tqdm", RecordingBar)
    out = tmp_path / "p"
    generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=True, chunk_size=2)
    written = [name for name in os.listdir(out) if name.endswith(".obj")]
    assert len(bars) == 1 and bars[0].closed
    assert bars[0].total == bars[0].n == len(written) == CONFIG.identities * (CONFIG.poses + 1)


def test_pose_transfer_config_sizes_are_checked_before_opening_data(tmp_path):
    config = load_config(pathlib.Path(__file__).parent.parent / "configs" / "corenet_small.py")
    config.data.root = str(tmp_path / "absent")  # would be a FileNotFoundError if opened
    check_data_config(config)
    config.data.pairs_per_epoch = 0
    with pytest.raises(ValueError, match=r"config.data.pairs_per_epoch must be a positive integer, got 0"):
        make_train_pairs(config)
    with pytest.raises(ValueError, match="pairs_per_epoch"):
        CORENET_TASK(config)
    config.data.pairs_per_epoch = 8
    config.data.build.precision = 50
    with pytest.raises(ValueError, match=r"config.data.build: precision must be in \[0, 12\]"):
        make_train_pairs(config)
    assert not (tmp_path / "absent").exists()


def test_garbage_cache_is_named_without_pickle_advice(tmp_path, synthetic_body):
    out = tmp_path / "c"
    generate_npt_dataset(out, CONFIG, body=synthetic_body, progress=False, chunk_size=2)
    (out / "cache.npz").write_bytes(b"\x80\x04not an npz archive")
    with pytest.raises(ValueError, match=r"unreadable cache: .*cache\.npz: not a valid \.npz dataset cache") as info:
        PoseTransferData.open(out)
    assert "allow_pickle" not in str(info.value)
