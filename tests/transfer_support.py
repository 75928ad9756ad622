"""Shared set-up of the pose-transfer CLI and API tests (not a test module itself): tiny untrained
3D-CoreNet and NPT checkpoints and a few low-resolution meshes."""

from __future__ import annotations

import pathlib

from jaxpose.io.mesh import load_mesh, save_mesh
from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset
from jaxpose.training.checkpoint import Checkpointer
from jaxpose.training.config import apply_overrides, load_config
from jaxpose.training.data import data_position
from jaxpose.training.optim import make_optimizer
from jaxpose.training.registry import build_task
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import create_train_state

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_checkpoint(workdir: pathlib.Path, config_name: str, overrides: dict) -> None:
    """An initialised (untrained) checkpoint written through the engine's Checkpointer."""
    config = apply_overrides(load_config(REPO / "configs" / f"{config_name}.py"), list(overrides.items()))
    task = build_task(config)
    tx, _ = make_optimizer(config.optimizer, 2.0, int(config.num_steps))
    _, state = create_train_state(task, tx, make_mesh())
    checkpointer = Checkpointer(workdir / "checkpoints")
    checkpointer.save(0, state, config, data_position(0, 0, int(config.batch_size), 16))
    checkpointer.wait_until_finished()
    checkpointer.close()


def write_transfer_setup(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Data, `corenet` and `npt` checkpoints under `root`; returns the paths the tests use:
    root, identity (1229 vertices), pose (1229 vertices), small_pose (its first 700 vertices and their faces)."""
    data = root / "data"
    generate_npt_dataset(data, NptConfig(identities=2, poses=3, resolution="low", seed=0, num_test_triples=2),
                         progress=False)  # fmt: skip
    common = {"batch_size": "8", "data.root": str(data), "data.pairs_per_epoch": "16"}
    write_checkpoint(root / "corenet", "corenet_small", {
        **common, "model.feature_widths": "(8, 8, 16)", "model.num_residual_blocks": "1",
        "model.correlation_width": "16", "model.decoder_widths": "(16, 16, 16)"})  # fmt: skip
    write_checkpoint(root / "npt", "npt_small", {**common, "model.pose_widths": "(8, 8, 16)"})
    identity = data / "id0_200.obj"
    pose = data / "id1_600.obj"
    full = load_mesh(pose)
    keep = 700  # a pose mesh with fewer vertices: the faces among its first `keep` vertices
    faces = full.faces[(full.faces < keep).all(axis=1)]
    small_pose = root / "pose_subset.obj"
    save_mesh(small_pose, full.vertices[:keep], faces)
    return {"root": root, "identity": identity, "pose": pose, "small_pose": small_pose}
