"""The models that ship inside the package: present, small, loadable, and reproducing their recorded scores;
`jaxpose transfer` uses the shipped 3D-CoreNet when no checkpoint is given, across vertex counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.bodies import default_body, forward, npt_pose
from jaxpose.io.mesh import load_mesh, save_mesh
from jaxpose.metrics import pmd
from jaxpose.pose_transfer import pretrained, protocol
from jaxpose.pose_transfer.transfer import main as transfer_main
from jaxpose.training.state import merge_model

SHIPPED = ("corenet_medium", "npt_medium")
MAX_TOTAL_BYTES = 25 * 2**20


def test_the_shipped_models_are_listed_and_small():
    assert set(SHIPPED) <= set(pretrained.available())
    assert pretrained.DEFAULT_MODEL == "corenet_medium"
    total = sum(f.stat().st_size for name in SHIPPED for f in pretrained.path(name).iterdir())
    assert total <= MAX_TOTAL_BYTES, total
    with pytest.raises(FileNotFoundError, match="corenet_medium"):
        pretrained.path("no_such_model")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_recorded_scores_on_the_check_triples(name):
    loaded = pretrained.load(name)
    manifest = pretrained.manifest(name)
    assert loaded.task.name == manifest["task"] and loaded.step == manifest["step"] > 0
    made = manifest["provenance"]
    assert made["commands"] and made["training_time"] and made["hardware"] and made["config"].startswith("configs/")
    with np.load(pretrained.path(name) / "check.npz") as check:
        batch = {k: check[k] for k in ("identity", "pose", "gt", "identity_faces", "permutation_key")}
        recorded = {k.removeprefix("metric/"): check[k] for k in check.files if k.startswith("metric/")}
        triples = check["triples"]
    assert len(triples) >= 3 and all(t[0] != t[2] and t[1] != t[3] for t in triples)  # non-trivial pairs
    model = merge_model(loaded.graphdef, loaded.state.params, loaded.state.model_state)
    model.eval(update_stats=False)
    metrics = jax.jit(lambda b: protocol.eval_metrics(protocol.predict(model, b), b))(batch)
    assert set(metrics) == set(recorded)
    for key, value in metrics.items():
        # Another CPU rounds float32 differently; the scores must agree to well under their spread.
        np.testing.assert_allclose(np.asarray(value), recorded[key], rtol=2e-3, atol=1e-3, err_msg=key)


@pytest.fixture(scope="module")
def check_meshes(tmp_path_factory):
    """Identity, pose and ground truth of the shipped 3D-CoreNet's first check triple, as OBJ files."""
    root = tmp_path_factory.mktemp("shipped")
    with np.load(pretrained.path() / "check.npz") as check:
        faces = check["identity_faces"][0]
        for key in ("identity", "pose", "gt"):
            save_mesh(root / f"{key}.obj", check[key][0], faces)
    return root


def test_transfer_cli_uses_the_shipped_model_without_a_checkpoint(check_meshes, capsys):
    out = check_meshes / "out.obj"
    code = transfer_main(["--identity", str(check_meshes / "identity.obj"), "--pose", str(check_meshes / "pose.obj"),
                          "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "corenet@" in capsys.readouterr().out
    result, gt, identity = (load_mesh(check_meshes / f"{k}.obj") for k in ("out", "gt", "identity"))
    np.testing.assert_array_equal(result.faces, identity.faces)
    error, copy = (float(pmd(jnp.asarray(v), jnp.asarray(gt.vertices))) for v in (result.vertices, identity.vertices))
    assert error < 0.25 * copy, (error, copy)  # a real transfer, not the identity copied


def test_shipped_model_transfers_from_a_full_resolution_pose_body(check_meshes, tmp_path):
    """Low-resolution identity (1,229 vertices) posed by a full-resolution body (13,718 vertices)."""
    low, full = default_body("low"), default_body("full")
    rng = np.random.default_rng(0)
    betas_id, betas_pose = (jnp.asarray(rng.standard_normal(low.num_betas).clip(-2, 2), jnp.float32) for _ in range(2))
    # Pose indices no dataset here trains on (training poses lie in [200, 600), test poses from 600 on).
    pose_a, pose_b = jnp.asarray(npt_pose(760))[None], jnp.asarray(npt_pose(790))[None]
    identity = np.asarray(forward(low, betas_id[None], pose_a).vertices[0])
    pose = np.asarray(forward(full, betas_pose[None], pose_b).vertices[0])
    truth = np.asarray(forward(low, betas_id[None], pose_b).vertices[0])
    save_mesh(tmp_path / "identity.obj", identity, np.asarray(low.faces))
    np.save(tmp_path / "pose.npy", pose)
    assert transfer_main(["--identity", str(tmp_path / "identity.obj"), "--pose", str(tmp_path / "pose.npy"),
                          "--out", str(tmp_path / "out.obj")]) == 0  # fmt: skip
    result = load_mesh(tmp_path / "out.obj").vertices
    error, copy = (float(pmd(jnp.asarray(v), jnp.asarray(truth))) for v in (result, identity))
    assert error < 0.5 * copy, (error, copy)
