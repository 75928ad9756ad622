"""`jaxpose repose` round trip and errors; marching-cubes extraction of analytic occupancies."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.bodies import rectified_bone_transforms, star_pose
from jaxpose.skinning.clothed import generate_clothed_dataset, motion_poses
from jaxpose.io.mesh import load_mesh
from jaxpose.skinning import extraction
from jaxpose.skinning.repose import main, subject_body
from jaxpose.training.checkpoint import Checkpointer
from jaxpose.training.config import load_config, save_config
from jaxpose.training.data import data_position
from jaxpose.training.optim import make_optimizer
from jaxpose.training.registry import build_task
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import create_train_state, merge_model

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A freshly initialised tiny INS checkpoint whose occupancy bias is shifted so that its zero level set
    passes through the grid box (an untrained SIREN has no meaningful surface of its own)."""
    root = tmp_path_factory.mktemp("clothed")
    generate_clothed_dataset(root, subjects={"s1": "skirt"}, frames_per_motion=1, seed=0)
    config = load_config(REPO / "configs/ins_small.py")
    m = config.model
    m.occupancy_width, m.occupancy_depth, m.occupancy_omega0, m.skinning_width, m.skinning_depth = 16, 2, 3.0, 16, 2
    m.pin.n_layers, m.pin.pose_code_dim, m.pin.encoder_width, m.pin.embed_width, m.pin.head_width = 1, 4, 8, 8, 8
    config.data.root, config.data.subject, config.data.subjects = str(root), "s1", {"s1": "skirt"}
    task = build_task(config)
    tx, _ = make_optimizer(config.optimizer, 1.0, 1)
    _, state = create_train_state(task, tx, make_mesh(jax.devices()[:1]))
    from jaxpose.training.state import model_graphdef

    model = merge_model(model_graphdef(task), state.params, state.model_state)
    _, star_vertices = subject_body(config.data)
    values = model.canonical_occupancy(jnp.asarray(star_vertices))
    params = jax.tree.map(lambda x: x, state.params)
    params["occupancy"]["out_bias"] = params["occupancy"]["out_bias"] - jnp.median(values) + 0.05
    state = dataclasses.replace(state, params=params)
    workdir = tmp_path_factory.mktemp("ins_run")
    save_config(config, workdir / "config.json")
    checkpointer = Checkpointer(workdir / "checkpoints")
    checkpointer.save(0, state, config, data_position(0, 0, int(config.batch_size), 5))
    checkpointer.wait_until_finished()
    checkpointer.close()
    return workdir, merge_model(model_graphdef(task), params, state.model_state), config


def test_round_trip_writes_posed_meshes_with_shared_faces(checkpoint, tmp_path):
    workdir, model, config = checkpoint
    poses = np.stack([star_pose(), motion_poses("kick", 3, 0, "s1")[0][2]]).astype(np.float32)
    np.save(tmp_path / "poses.npy", poses)
    out = tmp_path / "out"
    assert main(["--checkpoint", str(workdir), "--poses", str(tmp_path / "poses.npy"), "--out", str(out), "--resolution", "20"]) == 0
    canonical = load_mesh(out / "canonical.obj")
    posed = [load_mesh(out / f"pose_{k:03d}.obj") for k in range(2)]
    assert not (out / "pose_002.obj").exists()
    for mesh in posed:
        np.testing.assert_array_equal(mesh.faces, canonical.faces)
    # The star pose is the canonical pose: PINs and LBS are identities there.
    np.testing.assert_allclose(posed[0].vertices, canonical.vertices, atol=1e-4)
    body, _ = subject_body(config.data)
    transforms = rectified_bone_transforms(body, jnp.zeros((body.num_betas,)), jnp.asarray(poses[1]), jnp.asarray(star_pose()))
    expected = np.asarray(model.repose(jnp.asarray(canonical.vertices, jnp.float32), transforms))
    np.testing.assert_allclose(posed[1].vertices, expected, atol=1e-4)
    assert np.abs(posed[1].vertices - canonical.vertices).max() > 0.05  # the kick pose really moved it


def test_npz_poses_are_accepted(checkpoint, tmp_path):
    workdir, _, _ = checkpoint
    np.savez(tmp_path / "p.npz", poses=star_pose()[None])
    assert main(["--checkpoint", str(workdir), "--poses", str(tmp_path / "p.npz"), "--out", str(tmp_path / "o"), "--resolution", "12"]) == 0
    assert (tmp_path / "o" / "pose_000.obj").is_file()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "poses file not found"),
        (lambda d: np.save(d / "poses.npy", np.zeros((2, 23, 3), np.float32)), "(P, 24, 3)"),
        (lambda d: np.save(d / "poses.npy", np.full((1, 24, 3), np.nan, np.float32)), "non-finite"),
        (lambda d: np.savez(d / "poses.npy.npz", a=np.zeros((1, 24, 3)), b=np.zeros(1)), "named 'poses'"),
    ],
)
def test_bad_poses_are_clear_errors(checkpoint, tmp_path, capsys, make, message):
    workdir, _, _ = checkpoint
    make(tmp_path)
    path = tmp_path / ("poses.npy.npz" if message == "named 'poses'" else "poses.npy")
    assert main(["--checkpoint", str(workdir), "--poses", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    np.save(tmp_path / "poses.npy", star_pose()[None])
    assert main(["--checkpoint", str(tmp_path / "missing"), "--poses", str(tmp_path / "poses.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def _sphere(centre, radius):
    centre = jnp.asarray(centre, jnp.float32)
    return lambda p: radius - jnp.linalg.norm(p - centre[None, :], axis=-1)


def test_extracted_sphere_has_the_right_radius():
    vertices, faces = extraction.extract_mesh(_sphere([0.05, -0.02, 0.0], 0.3), ([-0.5] * 3, [0.5] * 3), 40, chunk_size=5000)
    radii = np.linalg.norm(vertices - np.array([0.05, -0.02, 0.0]), axis=1)
    spacing = 1.0 / 39
    assert abs(radii.mean() - 0.3) < 0.1 * spacing and np.abs(radii - 0.3).max() < 0.5 * spacing
    # Outward orientation: the signed volume (divergence theorem) is the sphere's volume.
    tri = vertices[faces].astype(np.float64)
    volume = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert volume == pytest.approx(4 / 3 * np.pi * 0.3**3, rel=0.03)


def test_largest_component_drops_the_small_blob():
    two = lambda p: jnp.maximum(_sphere([-0.2, 0, 0], 0.15)(p), _sphere([0.3, 0, 0], 0.05)(p))  # noqa: E731
    kept, _ = extraction.extract_mesh(two, ([-0.5] * 3, [0.5] * 3), 40)
    both, _ = extraction.extract_mesh(two, ([-0.5] * 3, [0.5] * 3), 40, keep_largest_component=False)
    assert kept.shape[0] < both.shape[0] and np.all(kept[:, 0] < 0.1) and np.any(both[:, 0] > 0.2)


def test_extraction_errors():
    with pytest.raises(ValueError, match="never crosses"):
        extraction.extract_mesh(lambda p: -jnp.ones(p.shape[:1]), ([-1] * 3, [1] * 3), 8)
    with pytest.raises(ValueError, match="lo < hi"):
        extraction.grid_points(([0, 0, 0], [1, 1, 0]), 8)
    with pytest.raises(ValueError, match="resolution"):
        extraction.grid_points(([0, 0, 0], [1, 1, 1]), 1)


def test_repose_api_returns_the_cli_meshes_and_reports_progress(checkpoint, tmp_path, capsys):
    import trimesh

    import jaxpose

    workdir, _, _ = checkpoint
    poses = np.stack([star_pose(), motion_poses("kick", 3, 0, "s1")[0][2], star_pose()]).astype(np.float32)
    np.save(tmp_path / "poses.npy", poses)
    assert main(["--checkpoint", str(workdir), "--poses", str(tmp_path / "poses.npy"), "--out", str(tmp_path / "o"),
                 "--resolution", "16"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "compiling the occupancy network" in err and "compiling the reposing function" in err and "3/3" in err
    canonical, posed = jaxpose.repose(workdir, poses, resolution=16, progress=False)
    assert capsys.readouterr().err == ""
    assert isinstance(canonical, trimesh.Trimesh) and len(posed) == 3
    written = load_mesh(tmp_path / "o" / "canonical.obj")
    np.testing.assert_array_equal(canonical.faces, written.faces)
    np.testing.assert_allclose(canonical.vertices, written.vertices, atol=1e-6)
    for index, mesh in enumerate(posed):
        np.testing.assert_array_equal(mesh.faces, written.faces)
        written_pose = load_mesh(tmp_path / "o" / f"pose_{index:03d}.obj")
        np.testing.assert_allclose(mesh.vertices, written_pose.vertices, atol=1e-6)


def test_checkpoint_errors_are_reported_as_checkpoint_problems(checkpoint, tmp_path, capsys, monkeypatch):
    from jaxpose.skinning import repose
    from jaxpose.training.checkpoint import CheckpointError

    workdir, _, _ = checkpoint
    np.save(tmp_path / "poses.npy", star_pose()[None])

    def corrupt(*args, **kwargs):
        raise CheckpointError("array 'params/occupancy/out_bias' does not match its digest")

    monkeypatch.setattr(repose, "load_ins", corrupt)
    assert main(["--checkpoint", str(workdir), "--poses", str(tmp_path / "poses.npy"), "--out", str(tmp_path / "o")]) == 2
    assert f"error: checkpoint {workdir}: array 'params/occupancy/out_bias'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_pickled_poses_are_refused_without_pickle_advice(checkpoint, tmp_path, capsys):
    workdir, _, _ = checkpoint
    np.save(tmp_path / "poses.npy", np.array([{"pose": 1}], dtype=object), allow_pickle=True)
    assert main(["--checkpoint", str(workdir), "--poses", str(tmp_path / "poses.npy"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "poses.npy" in err and "pickled" in err and "allow_pickle" not in err
