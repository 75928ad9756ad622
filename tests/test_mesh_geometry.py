"""Tests for jaxpose.geometry.mesh against independent NumPy float64 references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from jaxpose.geometry import mesh


@pytest.fixture(scope="module")
def sphere():
    """Unit icosphere, 42 vertices / 80 outward-oriented faces."""
    icosphere = trimesh.creation.icosphere(subdivisions=1)
    return np.asarray(icosphere.vertices, np.float64), np.asarray(icosphere.faces, np.int64)


@pytest.fixture(scope="module")
def octahedron():
    vertices = np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64
    )
    faces = np.array(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    )
    return vertices, faces


def _numpy_edge_lengths(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    out = np.empty(vertices.shape[:-2] + (len(faces), 3))
    for j, (a, b, c) in enumerate(faces):
        for k, (p, q) in enumerate(((a, b), (b, c), (c, a))):
            out[..., j, k] = np.sqrt(np.sum((vertices[..., q, :] - vertices[..., p, :]) ** 2, axis=-1))
    return out


def _npt_edge_loss(pred: np.ndarray, reference: np.ndarray, faces: np.ndarray) -> float:
    """The NPT formula as written there: sides AB, BC, AC; mean over faces of the 3-edge sum."""
    a, b, c = (faces[:, i] for i in range(3))
    total = 0.0
    for p, q in ((a, b), (b, c), (a, c)):
        predicted = np.linalg.norm(pred[p] - pred[q], axis=-1)
        target = np.linalg.norm(reference[p] - reference[q], axis=-1)
        total = total + np.abs(predicted / target - 1.0)
    return float(np.mean(total))


def _perturbed(vertices, rng, scale=0.05, batch=()):
    return vertices + scale * rng.normal(size=batch + vertices.shape)


def test_unique_edges_matches_set_reference_and_euler(sphere):
    vertices, faces = sphere
    edges = mesh.unique_edges(faces)
    expected = sorted({tuple(sorted((int(f[k]), int(f[(k + 1) % 3])))) for f in faces for k in range(3)})
    np.testing.assert_array_equal(edges, np.array(expected))
    assert edges.dtype == np.int64
    assert len(vertices) - len(edges) + len(faces) == 2  # Euler characteristic of a sphere
    assert len(edges) == 3 * len(faces) // 2


def test_face_edge_lengths_match_numpy_batched(sphere, rng):
    vertices, faces = sphere
    batch = _perturbed(vertices, rng, batch=(2, 3))
    got = mesh.face_edge_lengths(jnp.asarray(batch, jnp.float32), faces)
    assert got.shape == (2, 3, len(faces), 3)
    np.testing.assert_allclose(np.asarray(got), _numpy_edge_lengths(batch, faces), rtol=1e-5, atol=1e-6)


def test_edge_lengths_and_loss_are_rigid_motion_invariant(sphere, rng):
    vertices, faces = sphere
    pred = _perturbed(vertices, rng)
    rotation = Rotation.random(random_state=3).as_matrix()
    moved = pred @ rotation.T + np.array([0.3, -1.2, 0.7])
    np.testing.assert_allclose(
        np.asarray(mesh.face_edge_lengths(moved, faces)),
        np.asarray(mesh.face_edge_lengths(pred, faces)),
        rtol=1e-5,
    )
    reference_moved = vertices @ Rotation.random(random_state=4).as_matrix().T - 0.5
    np.testing.assert_allclose(
        float(mesh.edge_length_ratio_loss(moved, reference_moved, faces)),
        float(mesh.edge_length_ratio_loss(pred, vertices, faces)),
        rtol=1e-5,
    )


def test_edge_loss_matches_npt_formula_and_broadcasts_reference(sphere, rng):
    vertices, faces = sphere
    preds = _perturbed(vertices, rng, scale=0.1, batch=(3,))
    got = mesh.edge_length_ratio_loss(jnp.asarray(preds), jnp.asarray(vertices), faces)
    assert got.shape == (3,)
    expected = [_npt_edge_loss(p, vertices, faces) for p in preds]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    # Per-sample references of the same leading shape give the same numbers.
    references = np.broadcast_to(vertices, preds.shape)
    np.testing.assert_allclose(
        np.asarray(mesh.edge_length_ratio_loss(preds, references, faces)), expected, rtol=1e-5
    )


def test_edge_loss_zero_for_identical_and_three_for_doubled_mesh(sphere):
    vertices, faces = sphere
    assert float(mesh.edge_length_ratio_loss(vertices, vertices, faces)) == pytest.approx(0.0, abs=1e-6)
    # Every ratio is 2: |2 - 1| on three edges, for every face.
    assert float(mesh.edge_length_ratio_loss(2.0 * vertices, vertices, faces)) == pytest.approx(3.0, rel=1e-5)


def test_edge_loss_zero_length_reference_edge_is_finite_with_documented_floor(octahedron):
    vertices, faces = octahedron
    reference = vertices.copy()
    reference[2] = reference[0]  # edge 0-2 has zero length in faces 0 and 4
    pred = vertices * 1.1
    with jax.enable_x64(True):
        eps = 1e-3
        loss = mesh.edge_length_ratio_loss(jnp.asarray(pred), jnp.asarray(reference), faces, eps=eps)
        grad = jax.grad(lambda p: mesh.edge_length_ratio_loss(p, jnp.asarray(reference), faces))(jnp.asarray(pred))
    pred_lengths = _numpy_edge_lengths(pred, faces)
    reference_lengths = np.maximum(_numpy_edge_lengths(reference, faces), eps)
    expected = np.mean(np.sum(np.abs(pred_lengths / reference_lengths - 1.0), axis=-1))
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_edge_loss_gradient(octahedron, rng):
    vertices, faces = octahedron
    pred_np = _perturbed(vertices, rng, scale=0.1)
    with jax.enable_x64(True):
        pred = jnp.asarray(pred_np)
        reference = jnp.asarray(vertices)
        check_grads(lambda p: mesh.edge_length_ratio_loss(p, reference, faces), (pred,), order=1, modes=("rev", "fwd"))


def test_face_areas_and_normals_match_numpy(sphere, rng):
    vertices, faces = sphere
    pred = _perturbed(vertices, rng, batch=(2,))
    a, b, c = (pred[:, faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    np.testing.assert_allclose(np.asarray(mesh.face_areas(pred, faces)), 0.5 * np.linalg.norm(cross, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(mesh.face_normals(pred, faces)),
        cross / np.linalg.norm(cross, axis=-1, keepdims=True),
        rtol=1e-5,
        atol=1e-6,
    )
    # The unit icosphere's faces are outward and inscribed: total area just below 4π.
    total = float(jnp.sum(mesh.face_areas(vertices, faces)))
    assert 0.9 * 4 * np.pi < total < 4 * np.pi
    centroids = vertices[faces].mean(axis=1)
    assert np.all(np.sum(np.asarray(mesh.face_normals(vertices, faces)) * centroids, axis=-1) > 0)


def test_vertex_normals_are_area_weighted(sphere, rng):
    vertices, faces = sphere
    pred = _perturbed(vertices, rng, scale=0.1)
    expected = np.zeros_like(pred)
    for face in faces:
        a, b, c = pred[face]
        normal = np.cross(b - a, c - a)  # |normal| = 2 * area
        for corner in face:
            expected[corner] += normal
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    got = mesh.vertex_normals(jnp.asarray(np.stack([pred, vertices])), faces)
    assert got.shape == (2,) + pred.shape
    np.testing.assert_allclose(np.asarray(got[0]), expected, rtol=1e-5, atol=1e-6)
    # On the unit sphere vertex normals are close to the positions themselves.
    assert np.min(np.sum(np.asarray(got[1]) * vertices, axis=-1)) > 0.99


def test_area_and_normal_gradients(octahedron, rng):
    vertices, faces = octahedron
    pred_np = _perturbed(vertices, rng, scale=0.1)
    with jax.enable_x64(True):
        pred = jnp.asarray(pred_np)
        for function in (mesh.face_areas, mesh.face_normals, mesh.vertex_normals):
            check_grads(lambda p, f=function: f(p, faces), (pred,), order=1, modes=("rev", "fwd"))


def test_degenerate_face_has_zero_normal_and_finite_gradients(octahedron):
    vertices, faces = octahedron
    collapsed = vertices.copy()
    collapsed[2] = collapsed[0]
    normals = np.asarray(mesh.face_normals(collapsed, faces))
    np.testing.assert_array_equal(normals[0], np.zeros(3))
    assert float(mesh.face_areas(collapsed, faces)[0]) == 0.0
    grads = jax.grad(lambda v: jnp.sum(mesh.face_areas(v, faces)) + jnp.sum(mesh.face_normals(v, faces)))(
        jnp.asarray(collapsed, jnp.float32)
    )
    assert np.all(np.isfinite(np.asarray(grads)))


def test_works_under_jit_with_closed_over_faces(sphere):
    vertices, faces = sphere
    loss = jax.jit(lambda p, r: mesh.edge_length_ratio_loss(p, r, faces))(vertices * 1.5, vertices)
    assert float(loss) == pytest.approx(1.5, rel=1e-5)


def test_bad_inputs_raise_clear_errors(sphere):
    vertices, faces = sphere
    with pytest.raises(ValueError, match="vertices must have shape"):
        mesh.face_areas(vertices[:, :2], faces)
    with pytest.raises(ValueError, match="faces must have shape"):
        mesh.face_areas(vertices, faces[:, :2])
    with pytest.raises(ValueError, match="integer"):
        mesh.face_normals(vertices, faces.astype(np.float32))
    with pytest.raises(ValueError, match="only 10 vertices"):
        mesh.face_edge_lengths(vertices[:10], faces)
    with pytest.raises(ValueError, match="negative"):
        mesh.unique_edges(faces - 1)
    with pytest.raises(ValueError, match="same vertex count"):
        mesh.edge_length_ratio_loss(vertices, vertices[:-1], faces)
    with pytest.raises(ValueError, match="does not broadcast"):
        mesh.edge_length_ratio_loss(np.stack([vertices] * 2), np.stack([vertices] * 3), faces)
    with pytest.raises(ValueError, match="eps must be positive"):
        mesh.edge_length_ratio_loss(vertices, vertices, faces, eps=0.0)
