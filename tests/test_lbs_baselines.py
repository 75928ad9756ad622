"""AVG-LBS / FIRST-LBS: closed-form unposing, exact recovery on pure-LBS frames, averaging helps with
pose-dependent offsets, weight transfer from a minimal body."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from jaxpose.bodies import default_body, forward, rectified_bone_transforms, sample_pose, star_pose
from jaxpose.geometry.mesh import vertex_normals
from jaxpose.skinning.lbs_baselines import (
    fit_avg_lbs,
    fit_first_lbs,
    fit_lbs_baseline,
    repose_lbs,
    reposed_mesh,
    transfer_skinning_weights,
    unpose_vertices,
)
from jaxpose.skinning.field import lbs_points


@pytest.fixture(scope="module")
def subject():
    body = default_body("low")
    star = star_pose()
    canonical = jnp.asarray(forward(body, jnp.zeros(4), star).vertices)
    poses = jnp.asarray(sample_pose(11, "wide", num_samples=12), jnp.float32)
    transforms = rectified_bone_transforms(body, jnp.zeros(4), poses, star)
    return body, canonical, jnp.asarray(body.weights), transforms, poses


def test_pure_lbs_frames_are_recovered_exactly(subject):
    body, canonical, weights, transforms, _ = subject
    frames = jax.vmap(lbs_points, in_axes=(None, None, 0))(canonical, weights, transforms)
    train, test = slice(0, 8), slice(8, 12)
    for fit in (fit_first_lbs, fit_avg_lbs):
        fitted = fit(frames[train], transforms[train], weights)
        np.testing.assert_allclose(np.asarray(fitted), np.asarray(canonical), atol=1e-5)
        np.testing.assert_allclose(np.asarray(repose_lbs(fitted, weights, transforms[test])), np.asarray(frames[test]), atol=1e-5)
    baseline = fit_lbs_baseline("first", frames[train], transforms[train], weights, body.faces)
    vertices, faces = reposed_mesh(baseline, transforms[9])
    np.testing.assert_allclose(np.asarray(vertices), np.asarray(frames[9]), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(faces), np.asarray(body.faces))
    # unposing is the float64-exact inverse of forward LBS with the same weights
    with jax.enable_x64(True):
        c64, w64, t64 = (jnp.asarray(np.asarray(a), jnp.float64) for a in (canonical, weights, transforms[0]))
        np.testing.assert_allclose(np.asarray(unpose_vertices(lbs_points(c64, w64, t64), w64, t64)), np.asarray(c64), atol=1e-12)


def test_averaging_beats_the_first_frame_under_pose_dependent_offsets(subject):
    body, canonical, weights, transforms, poses = subject
    normals = vertex_normals(canonical, jnp.asarray(body.faces))
    directions = jnp.asarray(np.random.default_rng(0).normal(size=(24, 3)), jnp.float32)
    # Smooth non-LBS deformation: each vertex bulges along its normal with its bones' pose angles.
    drive = jnp.tanh(jnp.einsum("vj,pj->pv", weights, jnp.einsum("pjc,jc->pj", poses, directions)))
    offsets = 0.02 * drive[:, :, None] * normals[None]
    frames = jax.vmap(lbs_points, in_axes=(0, None, 0))(canonical[None] + offsets, weights, transforms)
    train, test = slice(0, 8), slice(8, 12)
    errors = {}
    for name, fit in (("first", fit_first_lbs), ("avg", fit_avg_lbs)):
        reposed = repose_lbs(fit(frames[train], transforms[train], weights), weights, transforms[test])
        errors[name] = float(jnp.mean(jnp.linalg.norm(reposed - frames[test], axis=-1)))
    assert errors["avg"] < errors["first"], errors


def test_weight_transfer_nearest_and_barycentric(subject, rng):
    body, canonical, weights, _, _ = subject
    faces = np.asarray(body.faces)
    np.testing.assert_array_equal(
        np.asarray(transfer_skinning_weights(canonical[:50], canonical, weights, method="nearest")), np.asarray(weights[:50])
    )
    np.testing.assert_allclose(
        np.asarray(transfer_skinning_weights(canonical[:50], canonical, weights, faces)), np.asarray(weights[:50]), atol=1e-5
    )
    # Points off the surface: compare with trimesh's closest point + barycentric coordinates.
    mesh = trimesh.Trimesh(np.asarray(canonical, np.float64), faces, process=False)
    points = np.asarray(canonical)[rng.choice(canonical.shape[0], 40)] + rng.normal(scale=0.01, size=(40, 3))
    closest, _, tri = trimesh.proximity.closest_point(mesh, points)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], closest)
    want = np.einsum("pk,pkj->pj", bary, np.asarray(weights, np.float64)[faces[tri]])
    got = np.asarray(transfer_skinning_weights(jnp.asarray(points, jnp.float32), canonical, weights, faces, chunk_size=16))
    np.testing.assert_allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def test_bad_inputs(subject):
    body, canonical, weights, transforms, _ = subject
    frames = jnp.broadcast_to(canonical, (2,) + canonical.shape)
    with pytest.raises(ValueError, match="frames_transforms"):
        fit_avg_lbs(frames, transforms[:3], weights)
    with pytest.raises(ValueError, match="weights"):
        fit_first_lbs(frames, transforms[:2], weights[:5])
    with pytest.raises(ValueError, match="kind"):
        fit_lbs_baseline("median", frames, transforms[:2], weights, body.faces)
    with pytest.raises(ValueError, match="body_faces"):
        transfer_skinning_weights(canonical[:3], canonical, weights)
    with pytest.raises(ValueError, match="method"):
        transfer_skinning_weights(canonical[:3], canonical, weights, body.faces, method="cubic")
