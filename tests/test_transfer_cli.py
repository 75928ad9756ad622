"""`jaxpose transfer`: output topology and placement, N_id ≠ N_pose, matching modes, clear errors."""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest

from jaxpose import cli
from jaxpose.io.mesh import load_mesh, save_mesh
from jaxpose.matching import MATCHING_NAMES, CoreNetIteration, Materialized, OttFixedStep, RowBlocked
from jaxpose.pose_transfer import api
from jaxpose.pose_transfer.transfer import build_parser, load_model
from jaxpose.pose_transfer.transfer_memory import CoreNetWidths, format_bytes, plan_matching
from jaxpose.pose_transfer.transfer_model import read_checkpoint_config
from jaxpose.training.checkpoint import CheckpointError
from transfer_support import write_transfer_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return write_transfer_setup(tmp_path_factory.mktemp("transfer"))


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
    with pytest.raises(ValueError, match="unknown matching 'sparse'; expected one of dense, dense_scaling, online"):
        load_model(str(checkpoint), matching="sparse")


# --- issue #10: paths, memory, progress, point clouds, frames, degenerate inputs, polygons, checkpoints ---


def _files(directory: pathlib.Path) -> dict[str, bytes]:
    """Every file under `directory` (relative name -> bytes): to assert that nothing was written or lost."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def no_model(monkeypatch):
    """Make any checkpoint read or model load fail the test: the errors under test must come first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the checkpoint must not be read before this error")

    monkeypatch.setattr(api, "read_checkpoint_config", forbidden)
    monkeypatch.setattr(api, "load_model", forbidden)


def _one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert all(needle in lines[0] for needle in needles), err
    return lines[0]


def test_row6_refuses_to_write_over_an_input_or_an_existing_output(setup, tmp_path, capsys, no_model):
    shutil.copy(setup["identity"], tmp_path / "v.obj")
    shutil.copy(setup["small_pose"], tmp_path / "p.obj")
    (tmp_path / "old.obj").write_text("keep me\n")
    (tmp_path / "sub").mkdir()
    before = _files(tmp_path)
    common = ("--identity", tmp_path / "v.obj", "--pose", tmp_path / "p.obj", "--checkpoint", setup["root"] / "corenet")
    for out in (tmp_path / "v.obj", tmp_path / "sub" / ".." / "p.obj"):  # the input itself, another spelling of it
        for extra in ((), ("--overwrite",)):
            assert _run(*common, "--out", out, *extra) == 2
            _one_line_error(capsys, "refusing to overwrite an input")
    (tmp_path / "link.obj").symlink_to(tmp_path / "v.obj")
    assert _run(*common, "--out", tmp_path / "link.obj", "--overwrite") == 2
    _one_line_error(capsys, "refusing to overwrite an input", "v.obj")
    (tmp_path / "link.obj").unlink()
    assert _run(*common, "--out", tmp_path / "old.obj") == 2
    _one_line_error(capsys, "already exists", "--overwrite")
    assert _files(tmp_path) == before


def test_row6_overwrite_replaces_an_existing_output(setup, tmp_path):
    out = tmp_path / "old.obj"
    out.write_text("old\n")
    assert _run("--identity", setup["identity"], "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet",
                "--out", out, "--overwrite") == 0  # fmt: skip
    assert load_mesh(out).vertices.shape == (1229, 3)


@pytest.mark.parametrize("make_out, message", [
    (lambda d: d / "out.stl", "unsupported mesh extension '.stl'"),
    (lambda d: d, "is a directory"),
    (lambda d: d / "existing_file" / "x.obj", "is not a directory"),
    (lambda d: d / "existing_file" / "deeper" / "x.obj", "is not a directory"),
])  # fmt: skip
def test_row7_bad_outputs_fail_before_the_model_loads(setup, tmp_path, capsys, no_model, make_out, message):
    (tmp_path / "existing_file").write_text("a file\n")
    before = _files(tmp_path)
    assert _run("--identity", setup["identity"], "--pose", setup["pose"], "--checkpoint", setup["root"] / "corenet",
                "--out", make_out(tmp_path)) == 2  # fmt: skip
    _one_line_error(capsys, message)
    assert _files(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["existing_file"]


def test_row7_unwritable_output_directory(setup, tmp_path, capsys, no_model, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes into read-only directories: let os.access answer as for a user
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and pathlib.Path(path) != locked)
    try:
        assert _run("--identity", setup["identity"], "--pose", setup["pose"], "--checkpoint", setup["root"] / "corenet",
                    "--out", locked / "new" / "x.obj") == 2  # fmt: skip
        _one_line_error(capsys, "not writable", "locked")
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("role, make_path, message", [
    ("--identity", lambda d: d / "missing.obj", "does not exist"),
    ("--identity", lambda d: d / "points.npy", "unsupported extension '.npy'"),
    ("--pose", lambda d: d / "missing.npz", "does not exist"),
    ("--pose", lambda d: d / "pose.stl", "unsupported extension '.stl'"),
    ("--pose", lambda d: d / "folder.obj", "not a regular file"),
])  # fmt: skip
def test_row7_bad_inputs_fail_before_the_model_loads(setup, tmp_path, capsys, no_model, role, make_path, message):
    (tmp_path / "points.npy").write_bytes(b"")
    (tmp_path / "pose.stl").write_bytes(b"")
    (tmp_path / "folder.obj").mkdir()
    paths = {"--identity": setup["identity"], "--pose": setup["pose"], role: make_path(tmp_path)}
    out = tmp_path / "out.obj"
    assert _run(*[x for kv in paths.items() for x in kv], "--checkpoint", setup["root"] / "corenet", "--out", out) == 2
    _one_line_error(capsys, message, make_path(tmp_path).name)
    assert not out.exists()


def _estimates(setup, n_id: int, n_pose: int) -> tuple[int, int]:
    """(dense, online) peak estimates of the fixture's 3D-CoreNet for these vertex counts."""
    config = read_checkpoint_config(setup["root"] / "corenet")
    widths = CoreNetWidths.from_config(config.model)
    plan = plan_matching("dense", n_id, n_pose, widths, block_size=int(config.model.block_size), num_iterations=5,
                         available=lambda: 2**62)  # fmt: skip
    return plan.dense_bytes, plan.online_bytes


def test_row8_auto_matching_chooses_online_when_dense_does_not_fit_comfortably(setup, tmp_path, capsys, monkeypatch):
    dense, online = _estimates(setup, 1229, 700)
    assert online < dense
    monkeypatch.setattr(api, "available_memory_bytes", lambda: int(1.5 * dense))  # dense > 50 % of it
    common = ("--identity", setup["identity"], "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet")
    assert _run(*common, "--out", tmp_path / "auto.obj") == 0
    captured = capsys.readouterr()
    assert "-> online matching" in captured.err and "online matching" in captured.out
    monkeypatch.setattr(api, "available_memory_bytes", lambda: 4 * dense)  # dense fits comfortably
    assert _run(*common, "--out", tmp_path / "dense.obj") == 0
    assert "-> dense matching" in capsys.readouterr().err
    np.testing.assert_allclose(load_mesh(tmp_path / "auto.obj").vertices, load_mesh(tmp_path / "dense.obj").vertices,
                               atol=2e-5)  # fmt: skip


def test_row8_matching_that_cannot_fit_is_refused_before_the_model_loads(setup, tmp_path, capsys, monkeypatch):
    dense, online = _estimates(setup, 1229, 700)
    monkeypatch.setattr(api, "load_model", lambda *a, **k: pytest.fail("the model must not be loaded"))
    common = ("--identity", setup["identity"], "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet",
              "--out", tmp_path / "x.obj")  # fmt: skip
    monkeypatch.setattr(api, "available_memory_bytes", lambda: online)
    assert _run(*common, "--matching", "dense") == 2
    line = _one_line_error(capsys, "dense matching of 1,229 x 700 vertices needs ≈", "--matching online")
    assert format_bytes(dense) in line and format_bytes(online) in line
    monkeypatch.setattr(api, "available_memory_bytes", lambda: online // 2)
    for matching in ("auto", "online"):
        assert _run(*common, "--matching", matching) == 2
        _one_line_error(capsys, "online matching of 1,229 x 700 vertices needs ≈", "does not fit")
    assert not any(tmp_path.iterdir())


def test_row9_online_matching_reports_compilation_and_progress(setup, tmp_path, capsys):
    assert _run("--identity", setup["identity"], "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet",
                "--out", tmp_path / "x.obj", "--matching", "online", "--block_size", "256") == 0  # fmt: skip
    err = capsys.readouterr().err
    steps = 6 * 5  # (5 Sinkhorn iterations + 1 warp pass) x ceil(1229 / 256) row blocks
    assert "compiling the online matching steps (6 passes x 5 row blocks of 256)" in err
    assert f"online matching: {steps} steps of 1 row block(s), ≈" in err and f"{steps}/{steps}" in err
    assert err.index("compiling the online matching") < err.index(f"{steps}/{steps}")


def _pose_as(kind: str, vertices: np.ndarray, path: pathlib.Path) -> pathlib.Path:
    """Write the pose's vertices as a point cloud of `kind` and return the file."""
    import trimesh

    if kind == "obj":
        path.write_text("".join(f"v {x!r} {y!r} {z!r}\n" for x, y, z in vertices.tolist()))  # exact float32 values
    elif kind == "ply":
        trimesh.PointCloud(vertices).export(path)
    elif kind == "npy":
        np.save(path, vertices)
    else:
        np.savez(path, normals=np.zeros_like(vertices), points=vertices)
    return path


@pytest.mark.parametrize("kind", ["obj", "ply", "npy", "npz"])
def test_row11_pose_point_cloud_gives_the_mesh_result(setup, tmp_path, kind):
    common = ("--identity", setup["identity"], "--checkpoint", setup["root"] / "corenet")
    reference = setup["root"] / "point_cloud_reference.obj"
    if not reference.exists():
        assert _run(*common, "--pose", setup["small_pose"], "--out", reference) == 0
    cloud = _pose_as(kind, load_mesh(setup["small_pose"]).vertices, tmp_path / f"cloud.{kind}")
    assert _run(*common, "--pose", cloud, "--out", tmp_path / "out.obj") == 0
    assert (tmp_path / "out.obj").read_bytes() == reference.read_bytes()


def test_row11_pickled_pose_is_a_clear_error(setup, tmp_path, capsys, no_model):
    np.save(tmp_path / "pose.npy", np.array([{"points": 1}], dtype=object), allow_pickle=True)
    assert _run("--identity", setup["identity"], "--pose", tmp_path / "pose.npy", "--checkpoint", setup["root"] / "corenet",
                "--out", tmp_path / "x.obj") == 2  # fmt: skip
    line = _one_line_error(capsys, "pose.npy", "pickled")
    assert "allow_pickle" not in line and not (tmp_path / "x.obj").exists()


Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # y-up -> z-up (+90° about x): (x, y, z) -> (x, -z, y)


def test_row12_z_up_input_warns_and_up_axis_rotates_back(setup, tmp_path, capsys):
    identity, pose = load_mesh(setup["identity"]), load_mesh(setup["small_pose"])
    save_mesh(tmp_path / "id_z.ply", identity.vertices @ Z_UP.T, identity.faces)
    save_mesh(tmp_path / "pose_z.ply", pose.vertices @ Z_UP.T, pose.faces)
    save_mesh(tmp_path / "pose_y.ply", pose.vertices, pose.faces)
    common = ("--checkpoint", setup["root"] / "corenet")
    assert _run("--identity", setup["identity"], "--pose", tmp_path / "pose_y.ply", *common, "--out", tmp_path / "y.ply") == 0
    assert "warning" not in capsys.readouterr().err
    z_up = ("--identity", tmp_path / "id_z.ply", "--pose", tmp_path / "pose_z.ply", *common)
    assert _run(*z_up, "--out", tmp_path / "z.ply") == 0
    err = capsys.readouterr().err
    assert "id_z.ply looks z-up, not y-up" in err and "principal axis z" in err and "--up-axis z" in err
    assert _run(*z_up, "--up-axis", "z", "--out", tmp_path / "z_fixed.ply") == 0
    assert "warning" not in capsys.readouterr().err
    y_up, z_fixed = load_mesh(tmp_path / "y.ply").vertices, load_mesh(tmp_path / "z_fixed.ply").vertices
    np.testing.assert_allclose(z_fixed, y_up @ Z_UP.T, atol=1e-6)  # the y-up result, in the input's z-up frame


def test_row12_badly_scaled_input_warns(setup, tmp_path, capsys):
    identity = load_mesh(setup["identity"])
    save_mesh(tmp_path / "tiny.obj", identity.vertices * 0.2, identity.faces)
    assert _run("--identity", tmp_path / "tiny.obj", "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet",
                "--out", tmp_path / "x.obj") == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: identity mesh" in err and "tiny.obj is 0.341 units across" in err and "is it in metres?" in err


@pytest.mark.parametrize("role, write, message", [
    ("--pose", lambda p: p.with_suffix(".obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 2\n"), "only 2 distinct points"),
    ("--pose", lambda p: np.save(p.with_suffix(".npy"), _grid(lambda a, b: (a, b, 0 * a))), "lie in a plane"),
    ("--pose", lambda p: np.save(p.with_suffix(".npy"), _grid(lambda a, b: (a + b / 10, 2 * a + b / 5, 3 * a + 0.3 * b))),
     "lie on a line"),
    ("--identity", lambda p: p.with_suffix(".obj").write_text(
        "".join(f"v {x} {y} {z}\n" for x, y, z in _grid(lambda a, b: (a, b, a * b))) + "f 1 1 2\nf 3 3 3\n"),
     "zero total area"),
])  # fmt: skip
def test_row13_degenerate_inputs_are_refused_by_name(setup, tmp_path, capsys, no_model, role, write, message):
    write(tmp_path / "bad")
    bad = next(tmp_path.glob("bad.*"))
    paths = {"--identity": setup["identity"], "--pose": setup["pose"], role: bad}
    assert _run(*[x for kv in paths.items() for x in kv], "--checkpoint", setup["root"] / "corenet",
                "--out", tmp_path / "x.obj") == 2  # fmt: skip
    _one_line_error(capsys, bad.name, message)
    assert not (tmp_path / "x.obj").exists()


def _grid(coordinates) -> np.ndarray:
    """(25, 3) float32 points from `coordinates(a, b)` on a 5 x 5 grid of a, b in [0, 0.5]."""
    a, b = np.meshgrid(np.linspace(0, 0.5, 5), np.linspace(0, 0.5, 5))
    return np.stack([np.broadcast_to(c, a.shape) for c in coordinates(a, b)], -1).reshape(-1, 3).astype(np.float32)


def test_row16_quad_identity_needs_triangulate_which_the_cli_offers(setup, tmp_path, capsys):
    quads = tmp_path / "quads.obj"
    quads.write_text(setup["identity"].read_text() + "f 1 2 3 4\n")
    common = ("--identity", quads, "--pose", setup["small_pose"], "--checkpoint", setup["root"] / "corenet")
    assert _run(*common, "--out", tmp_path / "x.obj") == 2
    _one_line_error(capsys, "quads.obj", "non-triangle faces", "--triangulate", "triangulate=True")
    assert not (tmp_path / "x.obj").exists()
    assert _run(*common, "--out", tmp_path / "x.obj", "--triangulate") == 0
    assert load_mesh(tmp_path / "x.obj").faces.shape[0] == load_mesh(setup["identity"]).faces.shape[0] + 2


def test_checkpoint_errors_are_reported_as_checkpoint_problems(setup, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(setup["root"] / "corenet", broken)
    config_files = [p for p in (broken / "checkpoints").rglob("metadata") if p.parent.name == "config"]
    assert config_files
    for path in config_files:
        path.write_bytes(b"\x00 not json")
    common = ("--identity", setup["identity"], "--pose", setup["small_pose"], "--out", tmp_path / "x.obj")
    assert _run(*common, "--checkpoint", broken) == 2
    _one_line_error(capsys, f"error: checkpoint {broken}", "config")

    def corrupt(*args, **kwargs):
        raise CheckpointError("array 'params/theta/kernel' does not match its digest")

    monkeypatch.setattr(api, "load_model", corrupt)
    assert _run(*common, "--checkpoint", setup["root"] / "corenet") == 2
    _one_line_error(capsys, f"error: checkpoint {setup['root'] / 'corenet'}: array 'params/theta/kernel'")
    assert not (tmp_path / "x.obj").exists()
