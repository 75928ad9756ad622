"""The Python API: `jaxpose.transfer` is the CLI's code path; `import jaxpose` stays free of JAX."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

import jaxpose
from jaxpose import cli
from jaxpose.io.mesh import load_mesh
from jaxpose.pose_transfer.api import run_transfer
from jaxpose.pose_transfer.transfer_inputs import DegenerateInputError, identity_from, pose_from
from jaxpose.pose_transfer.transfer_memory import MatchingMemoryError
from transfer_support import REPO, write_transfer_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    paths = write_transfer_setup(tmp_path_factory.mktemp("api"))
    out = paths["root"] / "cli_out.ply"  # PLY: float32 written exactly
    args = ["transfer", "--identity", paths["identity"], "--pose", paths["small_pose"],
            "--checkpoint", paths["root"] / "corenet", "--out", out]  # fmt: skip
    assert cli.main(list(map(str, args))) == 0
    return {**paths, "cli_output": load_mesh(out).vertices, "checkpoint": paths["root"] / "corenet"}


def _bbox_centre(points: np.ndarray) -> np.ndarray:
    return 0.5 * (points.max(axis=0) + points.min(axis=0))


def test_array_in_array_out_equals_the_cli_output_file(setup):
    identity, pose = load_mesh(setup["identity"]).vertices, load_mesh(setup["small_pose"]).vertices
    out = jaxpose.transfer(identity, pose, setup["checkpoint"], progress=False)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == identity.shape
    np.testing.assert_array_equal(out, setup["cli_output"])


def test_mesh_or_path_in_mesh_out_with_the_identity_faces(setup):
    identity, pose = load_mesh(setup["identity"]), load_mesh(setup["small_pose"])
    mesh = trimesh.Trimesh(identity.vertices, identity.faces, process=False)
    for out in (jaxpose.transfer(mesh, trimesh.PointCloud(pose.vertices), setup["checkpoint"], progress=False),
                jaxpose.transfer(str(setup["identity"]), setup["small_pose"], setup["checkpoint"], progress=False)):
        assert isinstance(out, trimesh.Trimesh)
        np.testing.assert_array_equal(out.faces, identity.faces)
        np.testing.assert_array_equal(np.asarray(out.vertices, np.float32), setup["cli_output"])


def test_output_is_placed_where_the_identity_is_not_bbox_centred(setup):
    identity, pose = load_mesh(setup["identity"]).vertices, load_mesh(setup["small_pose"]).vertices
    offset = np.array([1.0, 0.5, -2.0], np.float32)
    out = jaxpose.transfer(identity + offset, pose, setup["checkpoint"], progress=False)
    np.testing.assert_allclose(_bbox_centre(out), _bbox_centre(identity + offset), atol=2e-6)
    assert np.linalg.norm(_bbox_centre(out)) > 2.0  # not at the origin
    np.testing.assert_allclose(out, setup["cli_output"] + offset, atol=1e-5)  # the CLI's output, moved with the identity


def test_api_errors_are_named_and_come_before_the_model(setup, monkeypatch):
    identity, pose = load_mesh(setup["identity"]).vertices, load_mesh(setup["small_pose"]).vertices
    with pytest.raises(DegenerateInputError, match="pose array: only 2 distinct points"):
        jaxpose.transfer(identity, np.eye(3)[:2], setup["checkpoint"], progress=False)
    with pytest.raises(ValueError, match="unknown up axis 'w'"):
        jaxpose.transfer(identity, pose, setup["checkpoint"], up_axis="w", progress=False)
    with pytest.raises(ValueError, match="no faces"):
        jaxpose.transfer(trimesh.PointCloud(identity), pose, setup["checkpoint"], progress=False)
    monkeypatch.setattr("jaxpose.pose_transfer.api.load_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(MatchingMemoryError, match="even online matching does not fit"):
        run_transfer(identity_from(identity), pose_from(pose), setup["checkpoint"], progress=False,
                     available_memory=lambda: 10**6)  # fmt: skip


def test_import_jaxpose_does_not_import_jax():
    code = (
        "import sys, jaxpose\n"
        "from jaxpose import cli\n"
        "assert cli.main(['--help']) == 0\n"
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if m.startswith('jax'))\n"
        "assert callable(jaxpose.transfer) and 'jax' in sys.modules\n"
        "assert jaxpose.transfer.__module__ == 'jaxpose.pose_transfer.api'\n"
        "assert jaxpose.repose.__module__ == 'jaxpose.skinning.repose'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    with pytest.raises(AttributeError, match="no attribute 'transfr'"):
        jaxpose.transfr  # noqa: B018
