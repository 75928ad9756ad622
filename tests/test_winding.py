"""Generalised winding number: analytic shapes, an independent ray-parity reference, holes, chunking."""

import numpy as np
import pytest
import trimesh

from jaxpose.bodies import default_body
from jaxpose.geometry.winding import inside, triangle_solid_angles, winding_number


@pytest.fixture(scope="module")
def sphere():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


@pytest.fixture(scope="module")
def body():
    b = default_body("low")
    return np.asarray(b.v_template, np.float32), np.asarray(b.faces, np.int32)


def _ray_parity_inside(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Independent float64 reference: count Moller-Trumbore crossings of a ray; odd = inside."""
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    e1, e2 = b - a, c - a
    pvec = np.cross(direction, e2)  # (F, 3)
    det = np.einsum("fi,fi->f", e1, pvec)
    counts = np.zeros(len(points), int)
    for i, p in enumerate(points.astype(np.float64)):
        tvec = p - a
        u = np.einsum("fi,fi->f", tvec, pvec) / det
        qvec = np.cross(tvec, e1)
        w = (qvec @ direction) / det
        t = np.einsum("fi,fi->f", qvec, e2) / det
        counts[i] = np.sum((u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0))
    return counts % 2 == 1


def test_octant_solid_angle_is_exact():
    triangle = np.eye(3, dtype=np.float64)[None]  # corners on the three axes: one eighth of the sphere
    omega = np.asarray(triangle_solid_angles(np.zeros((1, 3)), triangle))
    np.testing.assert_allclose(omega, [[4 * np.pi / 8]], rtol=1e-6)
    flipped = np.asarray(triangle_solid_angles(np.zeros((1, 3)), triangle[:, ::-1]))
    np.testing.assert_allclose(flipped, -omega, rtol=1e-6)


def test_sphere_matches_analytic_inside(sphere):
    vertices, faces = sphere
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.4, 1.4, (3000, 3)).astype(np.float32)
    radius = np.linalg.norm(points, axis=1)
    away = np.abs(radius - 1.0) > 0.02  # the icosphere deviates from the sphere by < 0.01 at this subdivision
    w = np.asarray(winding_number(points, vertices, faces))
    np.testing.assert_array_equal(np.asarray(inside(points, vertices, faces))[away], (radius < 1.0)[away])
    np.testing.assert_allclose(w[radius < 0.95], 1.0, atol=1e-4)
    np.testing.assert_allclose(w[radius > 1.05], 0.0, atol=1e-4)


def test_cube_matches_analytic_inside():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.8, 0.8, (3000, 3)).astype(np.float32)
    linf = np.abs(points).max(axis=1)
    away = np.abs(linf - 0.5) > 1e-3
    w = np.asarray(winding_number(points, box.vertices, box.faces))
    np.testing.assert_array_equal((w > 0.5)[away], (linf < 0.5)[away])
    np.testing.assert_allclose(w[linf < 0.49], 1.0, atol=1e-5)


def test_body_matches_independent_ray_parity(body):
    vertices, faces = body
    rng = np.random.default_rng(2)
    lo, hi = vertices.min(0), vertices.max(0)
    points = rng.uniform(lo, hi, (300, 3))
    # Add points just inside the surface (non-convex regions: armpits, crotch, fingers).
    normals = trimesh.Trimesh(vertices, faces, process=False).vertex_normals
    pick = rng.integers(0, len(vertices), 200)
    points = np.concatenate([points, vertices[pick] - 0.004 * normals[pick]]).astype(np.float32)
    direction = np.asarray([0.3127, 0.7071, 0.6331])
    direction /= np.linalg.norm(direction)
    reference = _ray_parity_inside(points, vertices, faces, direction)
    w = np.asarray(winding_number(points, vertices, faces))
    assert reference[300:].mean() > 0.9  # the near-surface points are mostly inside
    agree = (w > 0.5) == reference
    assert agree.mean() == 1.0, np.flatnonzero(~agree)
    # Off the surface of a closed mesh the winding number is an integer.
    np.testing.assert_allclose(w, np.round(w), atol=2e-3)


def test_matches_trimesh_contains_when_rtree_is_available(sphere):
    pytest.importorskip("rtree")
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    mesh = trimesh.util.concatenate([box, trimesh.creation.icosphere(2, radius=0.2).apply_translation([1.0, 0, 0])])
    points = np.random.default_rng(3).uniform(-0.8, 1.4, (2000, 3))
    np.testing.assert_array_equal(np.asarray(inside(points, mesh.vertices, mesh.faces)), mesh.contains(points))


def test_small_holes_keep_inside_points_inside(sphere):
    vertices, faces = sphere
    rng = np.random.default_rng(4)
    removed = rng.choice(len(faces), size=6, replace=False)
    holed = np.delete(faces, removed, axis=0)
    points = rng.uniform(-1.3, 1.3, (3000, 3)).astype(np.float32)
    radius = np.linalg.norm(points, axis=1)
    w = np.asarray(winding_number(points, vertices, holed))
    assert np.all(w[radius < 0.8] > 0.95)
    assert np.all(w[radius > 1.2] < 0.05)
    # Classification only changes within a hole-sized distance of the surface.
    np.testing.assert_array_equal(np.asarray(inside(points, vertices, holed))[np.abs(radius - 1) > 0.2], (radius < 1)[np.abs(radius - 1) > 0.2])
    # The centre loses exactly the solid angle of the removed triangles.
    centre = np.asarray(winding_number(np.zeros((1, 3), np.float32), vertices, holed))[0]
    missing = np.asarray(triangle_solid_angles(np.zeros((1, 3)), vertices[faces[removed]].astype(np.float64))).sum() / (4 * np.pi)
    np.testing.assert_allclose(centre, 1.0 - missing, atol=1e-5)


@pytest.mark.parametrize("point_chunk,face_chunk", [(1, 10_000), (37, 101), (256, 4096), (5000, 7)])
def test_chunk_sizes_do_not_change_results(body, point_chunk, face_chunk):
    vertices, faces = body
    points = np.random.default_rng(5).uniform(vertices.min(0), vertices.max(0), (333, 3)).astype(np.float32)
    reference = np.asarray(winding_number(points, vertices, faces, point_chunk=333, face_chunk=len(faces)))
    result = np.asarray(winding_number(points, vertices, faces, point_chunk=point_chunk, face_chunk=face_chunk))
    np.testing.assert_allclose(result, reference, atol=2e-5)


def test_inside_out_mesh_gives_negative_winding(sphere):
    vertices, faces = sphere
    w = np.asarray(winding_number(np.zeros((2, 3), np.float32), vertices, faces[:, ::-1]))
    np.testing.assert_allclose(w, -1.0, atol=1e-5)
    assert not np.asarray(inside(np.zeros((2, 3)), vertices, faces[:, ::-1])).any()


def test_empty_inputs(sphere):
    vertices, faces = sphere
    assert winding_number(np.zeros((0, 3)), vertices, faces).shape == (0,)
    np.testing.assert_array_equal(np.asarray(winding_number(np.ones((4, 3)), vertices, faces[:0])), np.zeros(4))


@pytest.mark.parametrize(
    "points,faces_fn,kwargs,match",
    [
        (np.zeros((3, 2)), lambda f: f, {}, "points must have shape"),
        (np.zeros((3, 3)), lambda f: f.astype(np.float32), {}, "integer array"),
        (np.zeros((3, 3)), lambda f: f + 10_000, {}, "out of range"),
        (np.zeros((3, 3)), lambda f: f, {"point_chunk": 0}, "point_chunk"),
        (np.zeros((3, 3)), lambda f: f, {"face_chunk": 2.5}, "face_chunk"),
    ],
)
def test_bad_inputs_raise(sphere, points, faces_fn, kwargs, match):
    vertices, faces = sphere
    with pytest.raises(ValueError, match=match):
        winding_number(points, vertices, faces_fn(faces), **kwargs)


@pytest.mark.parametrize("ratio,cluster", [(2.0, 64), (3.0, 128)])
def test_far_field_acceleration_matches_exact(body, sphere, ratio, cluster):
    rng = np.random.default_rng(6)
    for vertices, faces in (body, (sphere[0], np.delete(sphere[1], [3, 50, 400], axis=0))):
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        pick = rng.integers(0, len(vertices), 400)
        points = np.concatenate([
            rng.uniform(vertices.min(0) - 0.1, vertices.max(0) + 0.1, (600, 3)),
            vertices[pick] + (0.01 * rng.standard_normal(400))[:, None] * mesh.vertex_normals[pick],
        ]).astype(np.float32)
        exact = np.asarray(winding_number(points, vertices, faces, point_chunk=128, face_chunk=len(faces)))
        fast = np.asarray(winding_number(points, vertices, faces, point_chunk=128, face_chunk=cluster, far_field_ratio=ratio))
        np.testing.assert_allclose(fast, exact, atol=5e-3)
        clear = np.abs(exact - 0.5) > 0.01
        np.testing.assert_array_equal((fast > 0.5)[clear], (exact > 0.5)[clear])
        np.testing.assert_array_equal(np.asarray(inside(points, vertices, faces, far_field_ratio=ratio, face_chunk=cluster))[clear], (exact > 0.5)[clear])


def test_far_field_result_does_not_depend_on_point_order(body):
    vertices, faces = body
    points = np.random.default_rng(7).uniform(vertices.min(0), vertices.max(0), (500, 3)).astype(np.float32)
    w = np.asarray(winding_number(points, vertices, faces, far_field_ratio=3.0, face_chunk=128, point_chunk=64))
    perm = np.random.default_rng(8).permutation(500)
    w_perm = np.asarray(winding_number(points[perm], vertices, faces, far_field_ratio=3.0, face_chunk=128, point_chunk=64))
    np.testing.assert_allclose(w_perm, w[perm], atol=1e-6)
    with pytest.raises(ValueError, match="far_field_ratio"):
        winding_number(points, vertices, faces, far_field_ratio=0.5)
