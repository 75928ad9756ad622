"""Batched INS reposing (`jaxpose.skinning.repose.make_reposer` / `repose_all`) equals `INS.repose` per pose;
`benchmarks/reposing.py` runs end to end at a tiny size and reports both rows and the ratio (no time bound)."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import reposing as bench
from jaxpose.bodies import rectified_bone_transforms, star_pose
from jaxpose.skinning.clothed import generate_clothed_dataset
from jaxpose.skinning.repose import make_reposer, repose_all, subject_body
from jaxpose.skinning.task import make_ins
from jaxpose.training.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_INS = """
from jaxpose.training.config import load_config

def get_config():
    config = load_config({repo!r} + "/configs/ins_small.py")
    m = config.model
    m.occupancy_width, m.occupancy_depth, m.skinning_width, m.skinning_depth = 16, 2, 16, 2
    m.pin.n_layers, m.pin.pose_code_dim, m.pin.encoder_width, m.pin.embed_width, m.pin.head_width = 2, 4, 8, 8, 8
    return config
"""
TINY_SNARF = """
from jaxpose.training.config import load_config

def get_config():
    config = load_config({repo!r} + "/configs/snarf_small.py")
    config.model.width, config.model.depth, config.model.skip_layers = 16, 3, (1,)
    config.model.skinning_width, config.model.skinning_depth = 16, 2
    return config
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clothed")
    generate_clothed_dataset(root, subjects={"synth01": "skirt"}, frames_per_motion=1, seed=0)
    return root


def _perturbed_ins(tmp_path):
    """A tiny INS whose PINs are not the identity (their heads are zero at initialisation)."""
    (tmp_path / "ins_tiny.py").write_text(TINY_INS.format(repo=str(REPO)))
    config = load_config(tmp_path / "ins_tiny.py")
    graphdef, state = nnx.split(make_ins(config.model, nnx.Rngs(0)))
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [x + 0.05 * jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
              for x, k in zip(leaves, keys)]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves)), config


def test_batched_repose_equals_ins_repose_per_pose(tmp_path, data_root):
    model, config = _perturbed_ins(tmp_path)
    config.data.root = str(data_root)
    body, star_vertices = subject_body(config.data)
    poses = bench.benchmark_poses(5)
    transforms = rectified_bone_transforms(body, jnp.zeros((body.num_betas,)), jnp.asarray(poses),
                                           jnp.asarray(star_pose(body.num_joints)))
    rng = np.random.default_rng(0)
    vertices = (star_vertices[rng.integers(0, len(star_vertices), 1000)] + rng.normal(0, 0.03, (1000, 3))).astype(np.float32)
    expected = np.stack([np.asarray(model.repose(jnp.asarray(vertices), t)) for t in transforms])
    assert np.abs(expected - vertices).max() > 0.05  # the poses and the PINs really move the vertices
    # Padding on both axes (1000 vertices in chunks of 64, 5 poses in batches of 2), and the defaults.
    for reposer in (make_reposer(model, pose_batch=2, vertex_chunk=64), make_reposer(model)):
        np.testing.assert_allclose(np.asarray(reposer(vertices, transforms)), expected, rtol=0, atol=1e-6)
    compiled = make_reposer(model, pose_batch=3, vertex_chunk=128).compile(vertices, transforms)
    np.testing.assert_allclose(np.asarray(compiled(vertices, transforms)), expected, rtol=0, atol=1e-6)
    calls = []
    np.testing.assert_allclose(repose_all(model, vertices, transforms, chunk=2, on_chunk=calls.append), expected,
                               rtol=0, atol=1e-6)
    assert calls == [2, 2, 1]


def test_reposer_rejects_bad_shapes(tmp_path):
    model, _ = _perturbed_ins(tmp_path)
    reposer = make_reposer(model)
    with pytest.raises(ValueError, match="vertices"):
        reposer(np.zeros((4, 2), np.float32), np.broadcast_to(np.eye(4), (1, 24, 4, 4)))
    with pytest.raises(ValueError, match="bone transforms"):
        reposer(np.zeros((4, 3), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="positive"):
        make_reposer(model, pose_batch=0)


def test_tiny_benchmark_reports_both_rows_and_the_ratio(tmp_path, data_root, capsys):
    (tmp_path / "ins_tiny.py").write_text(TINY_INS.format(repo=str(REPO)))
    (tmp_path / "snarf_tiny.py").write_text(TINY_SNARF.format(repo=str(REPO)))
    out, js = tmp_path / "report.md", tmp_path / "report.json"
    argv = ["--ins_config", str(tmp_path / "ins_tiny.py"), "--snarf_config", str(tmp_path / "snarf_tiny.py"),
            "--data_root", str(data_root), "--resolution", "24", "--poses", "3", "--snarf_poses_timed", "2",
            "--out", str(out), "--json", str(js)]
    assert bench.main(argv) == 0
    report = out.read_text()
    assert report in capsys.readouterr().out
    assert "| INS, extract once (" in report and "| SNARF, extract per pose (" in report
    assert "Speed-up of extract-once" in report and "×**" in report
    assert "UNTRAINED" in report and "extrapolated" in report and "first 2 of 3 poses" in report
    assert "Load average" in report and f"jax {jax.__version__}" in report and "3 poses at 24³" in report
    result = json.loads(js.read_text())
    assert result["poses"] == 3 and result["resolution"] == 24 and result["snarf_poses_timed"] == 2
    assert result["snarf_extrapolated"] and not result["trained"] and result["reference_surface"]
    assert result["ins_vertices"] > 100 and result["snarf_mean_vertices"] > 100
    for key in ("ins_grid_s", "ins_marching_cubes_s", "ins_repose_s", "ins_total_s", "snarf_grid_s",
                "snarf_marching_cubes_s", "snarf_lbs_s", "snarf_total_s", "speedup"):
        assert np.isfinite(result[key]) and result[key] > 0, key
    assert result["speedup"] == pytest.approx(result["snarf_total_s"] / result["ins_total_s"])
    # Every pose timed: no extrapolation mark in the table.
    full = bench.to_markdown({**result, "snarf_poses_timed": 3, "snarf_extrapolated": False}, "cmd")
    assert "extrapolated" not in full and "s* |" not in full and "s*** |" not in full


def test_benchmark_rejects_checkpoint_and_config_together(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        bench.main(["--ins_checkpoint", str(tmp_path), "--ins_config", "configs/ins_small.py"])
