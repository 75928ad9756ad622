"""SNARF's CAPE evaluation set (`cape_eval_points`), protocol dispatch and the protocol-aware cache.

SNARF's CAPE set per frame: 2000 vertices drawn with replacement + N(0, 0.01^2) noise, then 250 points
uniform in [-1.8, 1.8]^3; "IoU bbox" is scored on the first half (1125 points), "IoU surface" on the rest.
"""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from jaxpose.skinning.occupancy_points import (
    CAPE_N_UNIFORM,
    CAPE_N_VERTICES,
    EVAL_CACHE_VERSION,
    ScoringProtocol,
    _mesh_fingerprint,
    cached_eval_points,
    cape_eval_points,
    eval_points,
    iou_bbox,
    iou_surface,
    label_points,
    protocol_eval_points,
)

SIGMA = 0.01


@pytest.fixture(scope="module")
def sphere():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)  # 642 vertices, closed
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


@pytest.fixture(scope="module")
def cape_set(sphere):
    vertices, faces = sphere
    return cape_eval_points(vertices, faces, seed=3, frame=5)


def _nearest_vertex_distance(points, vertices):
    d2 = ((points[:, None, :].astype(np.float64) - vertices[None].astype(np.float64)) ** 2).sum(-1)
    return np.sqrt(d2.min(1))


def test_cape_layout_counts_and_split(sphere, cape_set):
    vertices, faces = sphere
    n = CAPE_N_VERTICES + CAPE_N_UNIFORM
    assert (CAPE_N_VERTICES, CAPE_N_UNIFORM) == (2000, 250)
    assert cape_set.points.shape == (n, 3) == (2250, 3) and cape_set.points.dtype == np.float32
    assert cape_set.occupancy.shape == (n,) and cape_set.occupancy.dtype == bool
    assert cape_set.n_bbox == n // 2 == 1125
    index = np.arange(n)  # per-point values, as the helpers take them: (..., P)
    np.testing.assert_array_equal(iou_bbox(index, cape_set.n_bbox), np.arange(1125))
    np.testing.assert_array_equal(iou_surface(index, cape_set.n_bbox), np.arange(1125, 2250))
    # Near-vertex points first: every one within a few sigma of a vertex (|N(0, s^2 I_3)| > 6 s: p ~ 1e-7).
    near = _nearest_vertex_distance(cape_set.points[:CAPE_N_VERTICES], vertices)
    assert near.max() < 6 * SIGMA and np.median(near) > 0.3 * SIGMA  # noisy, not the vertices themselves
    # Then the uniform points in SNARF's box, spread over it (most far from the 0.5 m sphere).
    uniform = cape_set.points[CAPE_N_VERTICES:]
    assert np.all(uniform >= -1.8) and np.all(uniform <= 1.8)
    assert np.all(uniform.min(0) < -1.5) and np.all(uniform.max(0) > 1.5)
    assert np.median(_nearest_vertex_distance(uniform, vertices)) > 0.5
    # SNARF's split: the "bbox" half is all near-surface, the "surface" half ends with the 250 uniform points.
    assert iou_bbox(index, cape_set.n_bbox).max() < CAPE_N_VERTICES
    np.testing.assert_array_equal(iou_surface(index, cape_set.n_bbox)[-CAPE_N_UNIFORM:], np.arange(2000, 2250))
    # Labels are the winding-number labels; about half the noisy vertex points are inside, few uniform ones.
    np.testing.assert_array_equal(cape_set.occupancy, label_points(cape_set.points, vertices, faces))
    assert 0.35 < cape_set.occupancy[:CAPE_N_VERTICES].mean() < 0.65
    assert cape_set.occupancy[CAPE_N_VERTICES:].mean() < 0.05


def test_cape_vertices_are_drawn_with_replacement(sphere):
    vertices, faces = sphere
    result = cape_eval_points(vertices, faces, seed=0, frame=0, sigma=0.0)
    near = result.points[:CAPE_N_VERTICES]
    match = (near[:, None, :] == vertices[None]).all(-1)
    assert np.all(match.sum(1) >= 1)  # sigma = 0: exactly mesh vertices
    hit = match.any(0).sum()
    expected = len(vertices) * (1 - np.exp(-CAPE_N_VERTICES / len(vertices)))  # ~614 of 642 distinct
    assert abs(hit - expected) < 25 and hit < len(vertices)


def test_cape_is_deterministic_in_seed_and_frame(sphere, cape_set):
    vertices, faces = sphere
    again = cape_eval_points(vertices, faces, seed=3, frame=5)
    np.testing.assert_array_equal(again.points, cape_set.points)
    np.testing.assert_array_equal(again.occupancy, cape_set.occupancy)
    for other in (dict(seed=3, frame=6), dict(seed=4, frame=5)):
        moved = cape_eval_points(vertices, faces, **other).points
        assert not np.allclose(moved[:CAPE_N_VERTICES], cape_set.points[:CAPE_N_VERTICES])
        assert not np.allclose(moved[CAPE_N_VERTICES:], cape_set.points[CAPE_N_VERTICES:])


def test_custom_counts_and_box(sphere):
    vertices, faces = sphere
    result = cape_eval_points(vertices, faces, seed=0, frame=1, n_vertices=100, n_uniform=31, box=((-1, -2, -3), (1, 2, 3)))
    assert result.points.shape == (131, 3) and result.n_bbox == 65
    uniform = result.points[100:]
    assert np.all(np.abs(uniform) <= np.array([1, 2, 3], np.float32))


def test_protocol_dispatch(sphere, cape_set):
    vertices, faces = sphere
    by_enum = protocol_eval_points(ScoringProtocol.CAPE, vertices, faces, seed=3, frame=5)
    by_value = protocol_eval_points("cape", vertices, faces, seed=3, frame=5)
    for result in (by_enum, by_value):
        np.testing.assert_array_equal(result.points, cape_set.points)
        assert result.n_bbox == cape_set.n_bbox
    dfaust = protocol_eval_points(ScoringProtocol.DFAUST, vertices, faces, seed=3, frame=5, n_bbox=200, n_surface=300)
    reference = eval_points(vertices, faces, seed=3, frame=5, n_bbox=200, n_surface=300)
    np.testing.assert_array_equal(dfaust.points, reference.points)
    np.testing.assert_array_equal(dfaust.occupancy, reference.occupancy)
    assert dfaust.n_bbox == 200


def test_cache_keeps_protocols_apart(tmp_path, sphere, cape_set):
    vertices, faces = sphere
    path = tmp_path / "frame_000005.npz"
    first = cached_eval_points(tmp_path, vertices, faces, seed=3, frame=5, protocol=ScoringProtocol.CAPE)
    np.testing.assert_array_equal(first.points, cape_set.points)
    assert first.n_bbox == 1125
    stamp = path.stat().st_mtime_ns
    reused = cached_eval_points(tmp_path, vertices, faces, seed=3, frame=5, protocol=ScoringProtocol.CAPE)
    assert path.stat().st_mtime_ns == stamp and reused.n_bbox == 1125
    np.testing.assert_array_equal(reused.occupancy, first.occupancy)
    # The same file name under the other protocol: recomputed and replaced, never reused.
    dfaust = cached_eval_points(tmp_path, vertices, faces, seed=3, frame=5, n_bbox=300, n_surface=300)
    assert path.stat().st_mtime_ns != stamp
    assert dfaust.points.shape == (600, 3) and dfaust.n_bbox == 300
    np.testing.assert_array_equal(dfaust.points, eval_points(vertices, faces, seed=3, frame=5, n_bbox=300, n_surface=300).points)
    stamp = path.stat().st_mtime_ns
    back = cached_eval_points(tmp_path, vertices, faces, seed=3, frame=5, protocol="cape")
    assert path.stat().st_mtime_ns != stamp
    assert back.points.shape == (2250, 3) and back.n_bbox == 1125
    np.testing.assert_array_equal(back.points, cape_set.points)


def test_dfaust_cache_key_is_the_pre_protocol_key(tmp_path, sphere):
    """A cache written before protocols existed (no "protocol" entry) is still read under DFAUST."""
    vertices, faces = sphere
    settings = {
        "version": EVAL_CACHE_VERSION, "seed": 1, "frame": 2, "n_bbox": 4, "n_surface": 6, "sigma": 0.01,
        "bbox_scale": 1.1, "mesh": _mesh_fingerprint(vertices, faces),
    }
    marker = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.savez(tmp_path / "old.npz", points=marker, occupancy=np.zeros(10, bool), settings=np.asarray(repr(sorted(settings.items()))))
    result = cached_eval_points(tmp_path, vertices, faces, seed=1, frame=2, n_bbox=4, n_surface=6, name="old")
    np.testing.assert_array_equal(result.points, marker)
    assert result.n_bbox == 4
    cape = cached_eval_points(tmp_path, vertices, faces, seed=1, frame=2, name="old", protocol=ScoringProtocol.CAPE)
    assert cape.points.shape == (2250, 3)  # the old DFAUST file is not read as a CAPE set


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_vertices=-1), "n_vertices"),
        (dict(n_uniform=2.5), "n_uniform"),
        (dict(n_vertices=0, n_uniform=0), "n_vertices \\+ n_uniform"),
        (dict(sigma=-0.01), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(box=(1.8, -1.8)), "box"),
        (dict(box="bbox"), "box"),
        (dict(box=(-1.0, 0.0, 1.0)), "box"),
        (dict(box=(-1.0, float("inf"))), "box"),
        (dict(seed=-1), "seed"),
        (dict(frame=1.5), "frame"),
    ],
)
def test_cape_bad_inputs_raise(sphere, kwargs, name):
    vertices, faces = sphere
    args = dict(seed=0, frame=0) | kwargs
    with pytest.raises(ValueError, match=name):
        cape_eval_points(vertices, faces, **args)


def test_bad_mesh_and_protocol_arguments_raise(tmp_path, sphere):
    vertices, faces = sphere
    with pytest.raises(ValueError, match="vertices"):
        cape_eval_points(vertices[:, :2], faces, seed=0, frame=0)
    with pytest.raises(ValueError, match="faces"):
        cape_eval_points(vertices, faces + len(vertices), seed=0, frame=0)
    with pytest.raises(ValueError, match="protocol"):
        protocol_eval_points("snarf", vertices, faces, seed=0, frame=0)
    with pytest.raises(ValueError, match="n_bbox"):
        protocol_eval_points(ScoringProtocol.CAPE, vertices, faces, seed=0, frame=0, n_bbox=100)
    with pytest.raises(ValueError, match="n_surface, bbox_scale"):
        protocol_eval_points(ScoringProtocol.CAPE, vertices, faces, seed=0, frame=0, n_surface=100, bbox_scale=1.1)
    with pytest.raises(ValueError, match="protocol"):
        cached_eval_points(tmp_path, vertices, faces, seed=0, frame=0, protocol="snarf")
    with pytest.raises(ValueError, match="n_surface"):
        cached_eval_points(tmp_path, vertices, faces, seed=0, frame=0, n_surface=10, protocol=ScoringProtocol.CAPE)
    assert not list(tmp_path.iterdir())  # nothing written for rejected arguments
