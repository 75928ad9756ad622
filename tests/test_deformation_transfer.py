"""Tests for jaxpose.pose_transfer.deformation_transfer (Sumner & Popović 2004)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from jaxpose.pose_transfer import deformation_transfer as dt


@pytest.fixture(scope="module")
def sphere():
    """Unit icosphere: 42 vertices, 80 faces."""
    icosphere = trimesh.creation.icosphere(subdivisions=1)
    return np.asarray(icosphere.vertices, np.float64), np.asarray(icosphere.faces, np.int64)


@pytest.fixture(scope="module")
def target(sphere):
    """A different shape with the sphere's topology (an irregular ellipsoid)."""
    vertices, _ = sphere
    noise = np.random.default_rng(11).normal(size=vertices.shape)
    return vertices * np.array([1.6, 0.7, 1.1]) + 0.04 * noise


@pytest.fixture(scope="module")
def deformed_source(sphere):
    vertices, _ = sphere
    noise = np.random.default_rng(12).normal(size=vertices.shape)
    bent = vertices.copy()
    bent[:, 0] += 0.4 * vertices[:, 2] ** 2  # a smooth non-affine bend plus per-vertex noise
    return bent + 0.05 * noise


def _paper_formulation(gradients, target_reference, target_faces, correspondence=None, anchor=0):
    """Independent dense solve of the paper's problem: the target's fourth vertices are unknowns.

    min over (w̃_1..w̃_N, w̃4_1..w̃4_F) of Σ_j ‖Q_{c(j)} − W̃_j W_j⁻¹‖²_F with w̃_anchor held at its
    reference position; no elimination, no projector, no sparse algebra.
    """
    num_vertices, num_faces = len(target_reference), len(target_faces)
    if correspondence is None:
        correspondence = np.arange(num_faces)
    matrix = np.zeros((3 * num_faces, num_vertices + num_faces))
    rhs = np.zeros((3 * num_faces, 3))
    for j, (a, b, c) in enumerate(target_faces):
        e1 = target_reference[b] - target_reference[a]
        e2 = target_reference[c] - target_reference[a]
        normal = np.cross(e1, e2)
        frame = np.column_stack([e1, e2, normal / np.sqrt(np.linalg.norm(normal))])
        inverse = np.linalg.inv(frame)
        for m in range(3):
            row = 3 * j + m
            matrix[row, b] += inverse[0, m]
            matrix[row, c] += inverse[1, m]
            matrix[row, num_vertices + j] += inverse[2, m]
            matrix[row, a] -= inverse[:, m].sum()
            rhs[row] = gradients[correspondence[j]][:, m]  # T[k, m] for k = x, y, z
    rhs -= np.outer(matrix[:, anchor], target_reference[anchor])
    keep = np.delete(np.arange(num_vertices + num_faces), anchor)
    solution = np.linalg.lstsq(matrix[:, keep], rhs, rcond=None)[0]
    vertices = np.empty_like(target_reference)
    vertices[anchor] = target_reference[anchor]
    vertices[np.delete(np.arange(num_vertices), anchor)] = solution[: num_vertices - 1]
    return vertices


def _subdivide(vertices, faces):
    """1-to-4 midpoint subdivision; returns (vertices, faces, parent face of each new face)."""
    midpoint_index: dict[tuple[int, int], int] = {}
    new_vertices = list(vertices)

    def midpoint(i, j):
        key = (min(i, j), max(i, j))
        if key not in midpoint_index:
            midpoint_index[key] = len(new_vertices)
            new_vertices.append(0.5 * (vertices[i] + vertices[j]))
        return midpoint_index[key]

    new_faces = []
    for a, b, c in faces:
        ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
        new_faces += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return np.array(new_vertices), np.array(new_faces), np.repeat(np.arange(len(faces)), 4)


def _centred(x):
    return x - x.mean(axis=0)


def _cylinder(radius, height=1.0, n_around=12, n_rings=11):
    angle = 2 * np.pi * np.arange(n_around) / n_around
    z, theta = np.meshgrid(np.linspace(0.0, height, n_rings), angle, indexing="ij")
    vertices = np.stack([radius * np.cos(theta), radius * np.sin(theta), z], axis=-1).reshape(-1, 3)
    faces = []
    for ring in range(n_rings - 1):
        for k in range(n_around):
            a, b = ring * n_around + k, ring * n_around + (k + 1) % n_around
            faces += [[a, b, b + n_around], [a, b + n_around, a + n_around]]
    return vertices, np.array(faces)


def _bend(vertices, total_angle, height=1.0):
    """Bend the z axis into a circular arc of the given total angle in the x-z plane."""
    radius = height / total_angle
    theta = vertices[:, 2] / radius
    arm = radius - vertices[:, 0]
    return np.stack([radius - arm * np.cos(theta), vertices[:, 1], arm * np.sin(theta)], axis=-1)


def test_source_gradients_of_rotation_and_scale_are_exact(sphere):
    vertices, faces = sphere
    rotation = Rotation.random(random_state=0).as_matrix()
    gradients = dt.source_deformation_gradients(vertices, 1.7 * vertices @ rotation.T + 2.0, faces)
    np.testing.assert_allclose(gradients, np.broadcast_to(1.7 * rotation, gradients.shape), atol=1e-12)


def test_fourth_vertex_is_normal_with_sqrt_area_length(sphere):
    vertices, faces = sphere
    frames = dt.fourth_vertex_frames(vertices, faces)
    twice_area = np.linalg.norm(np.cross(frames[:, :, 0], frames[:, :, 1]), axis=-1)
    np.testing.assert_allclose(np.linalg.norm(frames[:, :, 2], axis=-1), np.sqrt(twice_area), rtol=1e-12)
    np.testing.assert_allclose(np.sum(frames[:, :, 2] * frames[:, :, 0], axis=-1), 0.0, atol=1e-14)
    assert np.all(np.linalg.det(frames) > 0)


def test_identity_deformation_returns_target_reference(sphere, target):
    vertices, faces = sphere
    out = dt.deformation_transfer(vertices, vertices, faces, target, faces)
    np.testing.assert_allclose(out, target, atol=1e-12)


def test_global_rotation_and_scale_transfer_to_target(sphere, target):
    vertices, faces = sphere
    rotation = Rotation.random(random_state=5).as_matrix()
    source_deformed = 0.6 * vertices @ rotation.T + np.array([1.0, -2.0, 0.5])
    out = dt.deformation_transfer(vertices, source_deformed, faces, target, faces)
    np.testing.assert_allclose(_centred(out), _centred(0.6 * target @ rotation.T), atol=1e-12)
    np.testing.assert_allclose(out[0], target[0], atol=1e-12)  # anchor stays put


def test_same_source_and_target_reproduces_deformed_source(sphere, deformed_source):
    vertices, faces = sphere
    out = dt.deformation_transfer(vertices, deformed_source, faces, vertices, faces)
    np.testing.assert_allclose(out - out[0], deformed_source - deformed_source[0], atol=1e-12)
    # Its in-plane deformation gradients are the source's.
    np.testing.assert_allclose(
        dt.triangle_deformation_gradients(vertices, out, faces),
        dt.triangle_deformation_gradients(vertices, deformed_source, faces),
        atol=1e-11,
    )


def test_matches_paper_formulation_with_fourth_vertex_unknowns(sphere, target, deformed_source):
    vertices, faces = sphere
    gradients = dt.source_deformation_gradients(vertices, deformed_source, faces)
    out = dt.deformation_transfer(vertices, deformed_source, faces, target, faces)
    np.testing.assert_allclose(out, _paper_formulation(gradients, target, faces), atol=1e-10)
    # Not trivially the source or the reference: the transfer genuinely moves the target.
    assert np.abs(out - target).max() > 0.1


def test_solver_recovers_a_consistent_set_of_target_gradients(sphere, target):
    _, faces = sphere
    # Gradients that some deformed target realises exactly (a random non-affine deformation of it)
    # must be reproduced exactly: the solver recovers that deformed target.
    deformed_target = target + 0.1 * np.random.default_rng(21).normal(size=target.shape)
    gradients = dt.triangle_deformation_gradients(target, deformed_target, faces)
    system = dt.prepare_target(target, faces)
    out = system.transfer(gradients)
    np.testing.assert_allclose(out - out[0], deformed_target - deformed_target[0], atol=1e-11)
    np.testing.assert_allclose(dt.triangle_deformation_gradients(target, out, faces), gradients, atol=1e-11)


def test_correspondence_onto_a_subdivided_target(sphere, target, deformed_source):
    vertices, faces = sphere
    fine_vertices, fine_faces, parents = _subdivide(target, faces)
    rotation = Rotation.random(random_state=8).as_matrix()
    out = dt.deformation_transfer(
        vertices, 1.3 * vertices @ rotation.T, faces, fine_vertices, fine_faces, face_correspondence=parents
    )
    np.testing.assert_allclose(_centred(out), _centred(1.3 * fine_vertices @ rotation.T), atol=1e-11)

    gradients = dt.source_deformation_gradients(vertices, deformed_source, faces)
    out = dt.deformation_transfer(
        vertices, deformed_source, faces, fine_vertices, fine_faces, face_correspondence=parents
    )
    np.testing.assert_allclose(
        out, _paper_formulation(gradients, fine_vertices, fine_faces, parents), atol=1e-10
    )


def test_face_order_with_explicit_correspondence_matches_identity_map(sphere, target, deformed_source):
    vertices, faces = sphere
    order = np.random.default_rng(2).permutation(len(faces))
    identity_map = dt.deformation_transfer(vertices, deformed_source, faces, target, faces)
    shuffled = dt.deformation_transfer(
        vertices, deformed_source, faces, target, faces[order], face_correspondence=order
    )
    np.testing.assert_allclose(shuffled, identity_map, atol=1e-11)


def test_bent_thin_cylinder_bends_a_thick_cylinder(rng):
    height, total_angle = 1.0, np.pi / 2
    thin, faces = _cylinder(0.05, height)
    thick, _ = _cylinder(0.15, height)
    out = dt.deformation_transfer(thin, _bend(thin, total_angle), faces, thick, faces)

    def end_tangent_angle(x):
        centreline = x.reshape(11, 12, 3).mean(axis=1)
        first, last = centreline[1] - centreline[0], centreline[-1] - centreline[-2]
        return np.degrees(np.arccos(first @ last / np.linalg.norm(first) / np.linalg.norm(last)))

    # The centreline turns like the source's (81° between the first and last of 10 segments).
    assert end_tangent_angle(out) == pytest.approx(end_tangent_angle(_bend(thin, total_angle)), abs=2.0)
    bent_thick = _bend(thick, total_angle)
    error = np.linalg.norm(_centred(out) - _centred(bent_thick), axis=-1).mean()
    unbent_error = np.linalg.norm(_centred(thick) - _centred(bent_thick), axis=-1).mean()
    assert error < 0.05 * unbent_error
    assert error < 0.01 * height


def test_multiple_components_each_keep_an_anchor(sphere, target):
    vertices, faces = sphere
    two_vertices = np.concatenate([vertices, vertices + 5.0])
    two_faces = np.concatenate([faces, faces + len(vertices)])
    two_targets = np.concatenate([target, target + np.array([4.0, 0.0, 0.0])])
    system = dt.prepare_target(two_targets, two_faces)
    np.testing.assert_array_equal(system.anchors, [0, len(vertices)])
    rotation = Rotation.random(random_state=9).as_matrix()
    gradients = dt.source_deformation_gradients(two_vertices, two_vertices @ rotation.T, two_faces)
    out = system.transfer(gradients)
    for anchor, part in ((0, slice(0, len(vertices))), (len(vertices), slice(len(vertices), None))):
        expected = (two_targets[part] - two_targets[anchor]) @ rotation.T + two_targets[anchor]
        np.testing.assert_allclose(out[part], expected, atol=1e-11)


def test_centroid_placement_is_a_translation_of_anchor_placement(sphere, target, deformed_source):
    vertices, faces = sphere
    gradients = dt.source_deformation_gradients(vertices, deformed_source, faces)
    system = dt.prepare_target(target, faces)
    anchored = system.transfer(gradients)
    centred = system.transfer(gradients, placement="centroid")
    np.testing.assert_allclose(centred.mean(axis=0), target.mean(axis=0), atol=1e-12)
    offset = centred - anchored
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-12)
    assert np.abs(offset[0]).max() > 1e-3


def test_harness_call_caches_factorisation_and_batches(sphere, target, deformed_source):
    vertices, faces = sphere
    model = dt.DeformationTransfer()
    rotation = Rotation.random(random_state=1).as_matrix()
    poses = [deformed_source, vertices @ rotation.T]
    first = model(target, faces, poses[0], source_reference=vertices, source_faces=faces)
    second = model(target, faces, poses[1], source_reference=vertices, source_faces=faces)
    assert model.factorizations == 1
    np.testing.assert_allclose(first, dt.deformation_transfer(vertices, poses[0], faces, target, faces), atol=1e-12)
    np.testing.assert_allclose(_centred(second), _centred(target @ rotation.T), atol=1e-12)

    batch = model.transfer_triples(
        [(target, poses[0], vertices), (target, poses[1], vertices), (vertices, poses[0], vertices)],
        identity_faces=faces,
        source_faces=faces,
    )
    assert batch.shape == (3,) + target.shape
    assert model.factorizations == 2  # only the new identity (the sphere) was factorised
    np.testing.assert_allclose(batch[0], first, atol=1e-12)
    np.testing.assert_allclose(batch[1], second, atol=1e-12)
    np.testing.assert_allclose(batch[2] - batch[2][0], poses[0] - poses[0][0], atol=1e-12)


def test_cache_is_bounded(sphere, target):
    vertices, faces = sphere
    model = dt.DeformationTransfer(cache_size=1)
    for identity in (target, vertices, target):
        model(identity, faces, vertices, source_reference=vertices, source_faces=faces)
    assert model.factorizations == 3


def test_clear_errors_on_bad_input(sphere, target, deformed_source):
    vertices, faces = sphere
    fine_vertices, fine_faces, _ = _subdivide(target, faces)
    with pytest.raises(ValueError, match="identity correspondence needs equal face counts"):
        dt.deformation_transfer(vertices, deformed_source, faces, fine_vertices, fine_faces)
    with pytest.raises(ValueError, match=r"face_correspondence must be an integer array of shape \(320,\)"):
        dt.deformation_transfer(
            vertices, deformed_source, faces, fine_vertices, fine_faces, face_correspondence=np.arange(80)
        )
    with pytest.raises(ValueError, match="source has 80 faces"):
        dt.deformation_transfer(
            vertices, deformed_source, faces, fine_vertices, fine_faces,
            face_correspondence=np.arange(320),
        )
    collapsed = target.copy()
    a, b, _ = faces[7]
    collapsed[b] = collapsed[a]
    with pytest.raises(ValueError, match=r"target_reference has \d+ degenerate \(zero-area\) triangle"):
        dt.deformation_transfer(vertices, deformed_source, faces, collapsed, faces)
    flat = vertices.copy()
    flat[faces[3]] = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]  # collinear corners
    with pytest.raises(ValueError, match="source_reference has .* degenerate"):
        dt.deformation_transfer(flat, deformed_source, faces, target, faces)
    with pytest.raises(ValueError, match="must have the same shape"):
        dt.deformation_transfer(vertices, deformed_source[:-1], faces, target, faces)
    nan_pose = deformed_source.copy()
    nan_pose[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dt.DeformationTransfer()(target, faces, nan_pose, source_reference=vertices, source_faces=faces)
    with pytest.raises(ValueError, match=r"identity_vertices \(target reference\) must have shape \(V, 3\)"):
        dt.DeformationTransfer()(target[:, :2], faces, deformed_source, source_reference=vertices, source_faces=faces)
    with pytest.raises(ValueError, match="the mesh has 42 vertices"):
        dt.prepare_target(target, faces + 1)
    with pytest.raises(ValueError, match="placement"):
        dt.prepare_target(target, faces).transfer(np.tile(np.eye(3), (80, 1, 1)), placement="bbox")
    with pytest.raises(ValueError, match="triple 0"):
        dt.DeformationTransfer().transfer_triples([(target, vertices)], identity_faces=faces, source_faces=faces)


def test_degenerate_deformed_source_triangles_are_allowed(sphere, target):
    vertices, faces = sphere
    squashed = vertices * np.array([1.0, 1.0, 0.0])  # every triangle flattened onto z = 0
    out = dt.deformation_transfer(vertices, squashed, faces, target, faces)
    assert np.all(np.isfinite(out))
    assert np.ptp(out[:, 2]) < 0.5 * np.ptp(target[:, 2])
