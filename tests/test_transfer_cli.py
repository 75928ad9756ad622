"""`jaxpose transfer`: output topology and placement, N_id ≠ N_pose, matching modes, clear errors."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from jaxpose import cli
from jaxpose.io.mesh import load_mesh, save_mesh
from jaxpose.matching import MATCHING_NAMES, CoreNetIteration, Materialized, OttFixedStep, RowBlocked
from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset
from jaxpose.pose_transfer.transfer import build_parser, load_model
from jaxpose.training.checkpoint import Checkpointer
from jaxpose.training.config import apply_overrides, load_config
from jaxpose.training.data import data_position
from jaxpose.training.optim import make_optimizer
from jaxpose.training.registry import build_task
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import create_train_state

REPO = pathlib.Path(__file__).resolve().parents[1]


def _write_checkpoint(workdir: pathlib.Path, config_name: str, overrides: dict) -> None:
    """An initialised (untrained) checkpoint written through the engine's Checkpointer."""
    config = apply_overrides(load_config(REPO / "configs" / f"{config_name}.py"), list(overrides.items()))
    task = build_task(config)
    tx, _ = make_optimizer(config.optimizer, 2.0, int(config.num_steps))
    _, state = create_train_state(task, tx, make_mesh())
    checkpointer = Checkpointer(workdir / "checkpoints")
    checkpointer.save(0, state, config, data_position(0, 0, int(config.batch_size), 16))
    checkpointer.wait_until_finished()
    checkpointer.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    data = root / "data"
    generate_npt_dataset(data, NptConfig(identities=2, poses=3, resolution="low", seed=0, num_test_triples=2),
                         progress=False)  # fmt: skip
    common = {"batch_size": "8", "data.root": str(data), "data.pairs_per_epoch": "16"}
    _write_checkpoint(root / "corenet", "corenet_small", {
        **common, "model.feature_widths": "(8, 8, 16)", "model.num_residual_blocks": "1",
        "model.correlation_width": "16", "model.decoder_widths": "(16, 16, 16)"})  # fmt: skip
    _write_checkpoint(root / "npt", "npt_small", {**common, "model.pose_widths": "(8, 8, 16)"})
    identity = data / "id0_200.obj"
    pose = data / "id1_600.obj"
    full = load_mesh(pose)
    keep = 700  # a pose mesh with fewer vertices: the faces among its first `keep` vertices
    faces = full.faces[(full.faces < keep).all(axis=1)]
    small_pose = root / "pose_subset.obj"
    save_mesh(small_pose, full.vertices[:keep], faces)
    return {"root": root, "identity": identity, "pose": pose, "small_pose": small_pose}


def _run(*argv) -> int:
    return cli.main(["transfer", *map(str, argv)])


@pytest.mark.parametrize("model", ["corenet", "npt"])
def test_round_trip_keeps_identity_topology_and_place(setup, model, capsys):
    out = setup["root"] / f"out_{model}.obj"
    assert _run("--identity", setup["identity"], "--pose", setup["pose"], "--checkpoint", setup["root"] / model,
                "--out", out) == 0  # fmt: skip
    assert "1229 vertices" in capsys.readouterr().out
    identity, result = load_mesh(setup["identity"]), load_mesh(out)
    assert result.vertices.shape == identity.vertices.shape
    np.testing.assert_array_equal(result.faces, identity.faces)
    centre = lambda v: 0.5 * (v.max(0) + v.min(0))  # noqa: E731
    np.testing.assert_allclose(centre(result.vertices), centre(identity.vertices), atol=2e-6)


def test_different_vertex_counts_and_online_matching_agree_with_dense(setup):
    dense, online = setup["root"] / "dense.obj", setup["root"] / "online.obj"
    common = ("--identity", setup["identity"], "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet")
    assert _run(*common, "--out", dense) == 0
    assert _run(*common, "--out", online, "--matching", "online", "--block_size", "128") == 0
    a, b = load_mesh(dense), load_mesh(online)
    assert a.vertices.shape == (1229, 3)
    np.testing.assert_allclose(a.vertices, b.vertices, atol=2e-5)


def test_clear_errors(setup, capsys):
    root = setup["root"]
    corrupt = root / "corrupt.obj"
    corrupt.write_text("v 0 0 0\nv 1 0 0\nf 1 2 9\n")
    assert _run("--identity", corrupt, "--pose", setup["pose"], "--checkpoint", root / "corenet", "--out", root / "x.obj") == 2
    assert "corrupt.obj" in capsys.readouterr().err

    mesh = load_mesh(setup["identity"])
    millimetres = root / "millimetres.obj"
    save_mesh(millimetres, mesh.vertices * 1000.0, mesh.faces)
    assert _run("--identity", setup["identity"], "--pose", millimetres, "--checkpoint", root / "corenet",
                "--out", root / "x.obj") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "millimetres.obj" in err and "metre" in err and "2·tanh" in err

    assert _run("--identity", setup["identity"], "--pose", setup["pose"], "--checkpoint", root / "absent",
                "--out", root / "x.obj") == 2  # fmt: skip
    assert "checkpoint path not found" in capsys.readouterr().err

    assert _run("--identity", setup["identity"], "--pose", setup["pose"], "--checkpoint", root / "npt",
                "--out", root / "x.obj", "--matching", "online") == 2  # fmt: skip
    assert "3D-CoreNet checkpoints only" in capsys.readouterr().err
    assert not (root / "x.obj").exists()


def test_matching_option_maps_names_to_matching_objects(setup):
    checkpoint = setup["root"] / "corenet"
    parser_args = ["--identity", "a.obj", "--pose", "b.obj", "--checkpoint", "c", "--out", "d.obj"]
    for name in MATCHING_NAMES:
        assert build_parser("t").parse_args([*parser_args, "--matching", name]).matching == name
    with pytest.raises(SystemExit):
        build_parser("t").parse_args([*parser_args, "--matching", "sparse"])
    _, model, _ = load_model(str(checkpoint))  # the checkpoint's own config: dense, 5 iterations
    assert (model.matching_geometry, model.matching_solver) == (Materialized(), CoreNetIteration(5))
    _, model, _ = load_model(str(checkpoint), matching="online", block_size=128)
    assert (model.matching_geometry, model.matching_solver) == (RowBlocked(128), CoreNetIteration(5))
    _, model, _ = load_model(str(checkpoint), matching="ott")
    assert (model.matching_geometry, model.matching_solver) == (Materialized(), OttFixedStep(5))
    with pytest.raises(ValueError, match="unknown matching 'sparse'; expected one of dense, online"):
        load_model(str(checkpoint), matching="sparse")
