"""Mesh files: exact round trips, preserved vertex order, and a named error for every malformed case."""

import numpy as np
import pytest
import trimesh

from jaxpose.io.mesh import Mesh, MeshError, format_obj, load_mesh, save_mesh, validate_mesh
from jaxpose.io.points import PointsError, load_points


@pytest.fixture(scope="module")
def mesh() -> Mesh:
    """A closed triangle mesh (icosphere) with shuffled, non-sorted vertex order."""
    sphere = trimesh.creation.icosphere(subdivisions=1)
    rng = np.random.default_rng(3)
    perm = rng.permutation(len(sphere.vertices))
    inverse = np.argsort(perm)
    vertices = (sphere.vertices[perm] * [0.3, 0.9, 0.2] + [0.1, -0.5, 2.0]).astype(np.float32)
    faces = inverse[sphere.faces].astype(np.int32)
    return Mesh(vertices, faces)


def test_obj_round_trip_to_written_precision_and_order(tmp_path, mesh):
    path = tmp_path / "m.obj"
    save_mesh(path, mesh.vertices, mesh.faces)
    loaded = load_mesh(path)
    assert loaded.vertices.dtype == np.float32 and loaded.faces.dtype == np.int32
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    # 6 decimals: rounding error <= 5e-7 plus float32 representation of values ~2.
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, rtol=0, atol=5e-7 + 2.5e-7)
    # Vertex k of the file is vertex k of the array: nearest original of each loaded vertex is itself.
    d = np.linalg.norm(loaded.vertices[:, None, :] - mesh.vertices[None, :, :], axis=-1)
    np.testing.assert_array_equal(np.argmin(d, axis=1), np.arange(len(mesh.vertices)))


def test_obj_text_is_npt_style(tmp_path):
    vertices = np.array([[0.0, 1.0, -2.5], [1.25, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    faces = np.array([[0, 1, 2]])
    text = format_obj(vertices, faces, precision=3)
    assert text == "v 0.000 1.000 -2.500\nv 1.250 0.000 0.000\nv 0.000 0.000 1.000\nf 1 2 3\n"
    path = tmp_path / "t.obj"
    save_mesh(path, vertices, faces, precision=3)
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["t.obj"]  # no temporary files left


def test_ply_round_trip_is_exact_and_trimesh_readable(tmp_path, mesh):
    path = tmp_path / "m.ply"
    save_mesh(path, mesh.vertices, mesh.faces)
    loaded = load_mesh(path)
    np.testing.assert_array_equal(loaded.vertices, mesh.vertices)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    other = trimesh.load(path, process=False)
    np.testing.assert_array_equal(np.asarray(other.vertices, np.float32), mesh.vertices)


def test_reads_trimesh_written_files_without_reordering(tmp_path, mesh):
    for ext in ("obj", "ply"):
        path = tmp_path / f"tm.{ext}"
        trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(path)
        loaded = load_mesh(path)
        np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
        np.testing.assert_array_equal(loaded.faces, mesh.faces)


def test_unreferenced_vertices_are_kept(tmp_path):
    vertices = np.array([[0, 0, 0], [9, 9, 9], [1, 0, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 2, 3]])
    for ext in ("obj", "ply"):
        save_mesh(tmp_path / f"u.{ext}", vertices, faces)
        loaded = load_mesh(tmp_path / f"u.{ext}")
        np.testing.assert_allclose(loaded.vertices, vertices)
        np.testing.assert_array_equal(loaded.faces, faces)


TRIANGLE = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("quad.obj", TRIANGLE + "v 1 1 0\nf 1 2 4 3\n", "non-triangle faces"),
        ("oor.obj", TRIANGLE + "f 1 2 4\n", "out of range"),
        ("zero.obj", TRIANGLE + "f 0 1 2\n", "out of range"),
        ("nan.obj", "v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or Inf"),
        ("inf.obj", "v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or Inf"),
        ("novert.obj", "# nothing\n", "empty mesh"),
        ("noface.obj", TRIANGLE, "empty mesh"),
        ("line.obj", TRIANGLE + "f 1 2\n", "corners"),
        ("word.obj", TRIANGLE + "f 1 b 3\n", "not an integer"),
    ],
)
def test_malformed_obj_raises_named_error(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MeshError, match=message) as info:
        load_mesh(path)
    assert name in str(info.value)


def test_polygons_load_with_triangulate(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text(TRIANGLE + "v 1 1 0\nf 1 2 4 3\n")
    loaded = load_mesh(path, triangulate=True)
    assert loaded.faces.shape == (2, 3)
    # The two triangles cover the quad: both use the diagonal and all 4 corners appear.
    assert set(loaded.faces.ravel().tolist()) == {0, 1, 2, 3}
    np.testing.assert_allclose(loaded.vertices[3], [1, 1, 0])


def _ascii_ply(vertices, faces) -> str:
    header = (
        "ply\nformat ascii 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = "".join(" ".join(map(str, v)) + "\n" for v in vertices)
    body += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)
    return header + body


@pytest.mark.parametrize(
    "name, vertices, faces, message",
    [
        ("quad.ply", [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2, 3]], "non-triangle faces"),
        ("mixed.ply", [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 1, 2, 3]], "non-triangle faces"),
        ("oor.ply", [[0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0, 1, 7]], "out of range"),
        ("neg.ply", [[0, 0, 0], [1, 0, 0], [1, 1, 0]], [[0, 1, -1]], "out of range"),
        ("nan.ply", [[0, 0, 0], ["nan", 0, 0], [1, 1, 0]], [[0, 1, 2]], "NaN or Inf"),
        ("noface.ply", [[0, 0, 0], [1, 0, 0], [1, 1, 0]], [], "empty mesh"),
        ("novert.ply", [], [], "empty mesh"),
    ],
)
def test_malformed_ply_raises_named_error(tmp_path, name, vertices, faces, message):
    path = tmp_path / name
    path.write_text(_ascii_ply(vertices, faces))
    with pytest.raises(MeshError, match=message) as info:
        load_mesh(path)
    assert name in str(info.value)


def test_ply_quads_triangulate_on_request(tmp_path):
    path = tmp_path / "quad.ply"
    path.write_text(_ascii_ply([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2, 3]]))
    assert load_mesh(path, triangulate=True).faces.shape == (2, 3)


def test_corrupt_missing_and_unsupported_files(tmp_path):
    binary = tmp_path / "garbage.obj"
    binary.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(MeshError, match="corrupt OBJ.*garbage.obj|garbage.obj.*corrupt OBJ"):
        load_mesh(binary)
    latin = tmp_path / "latin.obj"
    latin.write_bytes(b"v 0 0 0\n\xff\xfe\n")
    with pytest.raises(MeshError, match="not UTF-8"):
        load_mesh(latin)
    bad_ply = tmp_path / "bad.ply"
    bad_ply.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\x00")
    with pytest.raises(MeshError, match="bad.ply"):
        load_mesh(bad_ply)
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_mesh(tmp_path / "missing.obj")
    with pytest.raises(MeshError, match="unsupported mesh extension"):
        load_mesh(tmp_path / "mesh.stl")
    (tmp_path / "dir.obj").mkdir()
    with pytest.raises(MeshError, match="not a regular file"):
        load_mesh(tmp_path / "dir.obj")


def test_save_validates_before_writing(tmp_path, mesh):
    path = tmp_path / "out.obj"
    bad_vertices = mesh.vertices.copy()
    bad_vertices[4, 1] = np.nan
    with pytest.raises(MeshError, match="vertex 4"):
        save_mesh(path, bad_vertices, mesh.faces)
    with pytest.raises(MeshError, match="out of range"):
        save_mesh(path, mesh.vertices, mesh.faces + len(mesh.vertices))
    with pytest.raises(MeshError, match=r"shape \(F, 3\)"):
        save_mesh(path, mesh.vertices, np.zeros((2, 4), np.int32))
    with pytest.raises(MeshError, match="unsupported"):
        save_mesh(tmp_path / "out.off", mesh.vertices, mesh.faces)
    assert not any(tmp_path.iterdir())  # nothing written, no temporary files left


def test_validate_mesh_accepts_integral_float_faces():
    checked = validate_mesh(np.zeros((3, 3)), np.array([[0.0, 1.0, 2.0]]))
    assert checked.faces.dtype == np.int32 and checked.vertices.dtype == np.float32
    with pytest.raises(MeshError, match="integers"):
        validate_mesh(np.zeros((3, 3)), np.array([[0.0, 1.5, 2.0]]))


# --- point clouds (`load_points`) and the polygon hint (issue #10) ---


def test_polygon_error_names_the_python_keyword_and_the_cli_flag(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text(TRIANGLE + "v 1 1 0\nf 1 2 4 3\n")
    with pytest.raises(MeshError, match="non-triangle faces") as info:
        load_mesh(path)
    assert "triangulate=True" in str(info.value) and "--triangulate" in str(info.value)


@pytest.mark.parametrize("kind", ["mesh.obj", "cloud.obj", "mesh.ply", "cloud.ply", "npy", "npz_points", "npz_only"])
def test_load_points_reads_every_format_in_file_order(tmp_path, mesh, kind):
    points = mesh.vertices
    path = tmp_path / f"p.{kind.split('.')[-1].split('_')[0]}"
    if kind == "mesh.obj" or kind == "mesh.ply":
        save_mesh(path, points, mesh.faces)
    elif kind == "cloud.obj":
        path.write_text("# points\n" + "".join(f"v {x!r} {y!r} {z!r} 0.5 0.5 0.5\n" for x, y, z in points.tolist()))
    elif kind == "cloud.ply":
        trimesh.PointCloud(points).export(path)
    elif kind == "npy":
        np.save(path, points.astype(np.float64))
    elif kind == "npz_points":
        np.savez(path, normals=np.zeros_like(points), points=points)
    else:
        np.savez(path, anything=points)
    loaded = load_points(path)
    assert loaded.dtype == np.float32 and loaded.shape == points.shape
    np.testing.assert_allclose(loaded, points, atol=5e-7 + 2.5e-7)  # OBJ: 6 decimals; the others exact


@pytest.mark.parametrize("name, write, error, message", [
    ("pickled.npy", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), PointsError, "pickled"),
    ("pickled.npz", lambda p: np.savez(p, points=np.array([{"a": 1}], dtype=object)), PointsError, "pickled"),
    ("text.npy", lambda p: p.write_text("1 2 3\n"), PointsError, "not a valid .npy"),
    ("flat.npy", lambda p: np.save(p, np.zeros((5, 2))), PointsError, r"shape \(N, 3\)"),
    ("empty.npy", lambda p: np.save(p, np.zeros((0, 3))), PointsError, "no points"),
    ("words.npy", lambda p: np.save(p, np.array([["a", "b", "c"]])), PointsError, "real numbers"),
    ("nan.npy", lambda p: np.save(p, np.array([[0, 0, 0], [np.nan, 1, 2]])), PointsError, "point 1"),
    ("two.npz", lambda p: np.savez(p, a=np.zeros((4, 3)), b=np.zeros((4, 3))), PointsError, "'vertices' or 'points'"),
    ("nov.obj", lambda p: p.write_text("# nothing\nf 1 2 3\n"), PointsError, "no `v` lines"),
    ("badv.obj", lambda p: p.write_text("v 0 0 0\nv 1 x 0\n"), PointsError, "line 2"),
    ("bin.ply", lambda p: p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n"), PointsError, "corrupt PLY"),
    ("points.xyz", lambda p: p.write_text("0 0 0\n"), PointsError, "unsupported point-cloud extension"),
    ("missing.npy", lambda p: None, FileNotFoundError, "does not exist"),
])  # fmt: skip
def test_load_points_errors_name_the_file_and_never_advise_pickles(tmp_path, name, write, error, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(error, match=message) as info:
        load_points(path)
    assert name in str(info.value) and "allow_pickle" not in str(info.value)
    assert isinstance(info.value, (FileNotFoundError, MeshError))
