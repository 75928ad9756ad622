"""Deform-and-learn data: part charts, synthetic DensePose-like dataset, DensePose JSON reader/writer."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxpose.bodies import SMPL_PARENTS, default_body, forward
from jaxpose.deform_learn.charts import chart_coordinates, exact_vertex, nearest_chart_vertex, part_charts, pixel_labels
from jaxpose.deform_learn.densepose_json import (
    DensePoseAnnotation,
    DensePoseFormatError,
    dataset_annotations,
    read_densepose_json,
    write_densepose_json,
)
from jaxpose.deform_learn.synthetic import (
    REQUIRED_KEYS,
    DeformLearnDataConfig,
    camera_at,
    canonical_bone_length,
    dataset_cache_path,
    load_or_make_dataset,
    make_dataset,
    subject_ids,
)
from jaxpose.render.camera import project

TINY = DeformLearnDataConfig(
    image_size=32, num_train=6, num_test=3, train_subjects=3, test_subjects=2, points_per_person=40, chunk_size=3, seed=5,
)

# Chart search vs the exact (argmax-barycentric) vertex on 20,000 area-uniform surface points of the
# default body (3 seeds): same vertex 68.3–68.6 %, same or adjacent (one ring) 94.6–95.0 %, mean
# rest-pose distance from the chart vertex to the surface point 2.40–2.41 cm (the exact vertex: 2.65–2.66
# cm; the chart search is *closer* on average, as argmax-barycentric is not the Euclidean nearest vertex).
# On rendered pixels (6 wide poses, 128 px, 13.5k pixels): 68.1 %, 95.3 %, 2.44 cm. Bounds with margin:
SAME_VERTEX_MIN = 0.63
ONE_RING_MIN = 0.92
MEAN_DISTANCE_MAX_M = 0.03


@pytest.fixture(scope="module")
def body():
    return default_body("low")


@pytest.fixture(scope="module")
def charts(body):
    return part_charts(body)


@pytest.fixture(scope="module")
def data():
    with jax.numpy_rank_promotion("raise"):  # as the autouse fixture: share its compiled programs
        return {split: make_dataset(TINY, split, progress=False) for split in ("train", "test")}


def _one_ring(faces: np.ndarray, num_vertices: int) -> list[set]:
    ring = [{v} for v in range(num_vertices)]
    for face in faces:
        for a in face:
            ring[a].update(int(b) for b in face)
    return ring


def _numpy_chart_uv(charts, points: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Float64 reference of `chart_coordinates`."""
    origin, axis = np.asarray(charts.origin, np.float64)[parts], np.asarray(charts.axis, np.float64)[parts]
    reference, binormal = np.asarray(charts.reference, np.float64)[parts], np.asarray(charts.binormal, np.float64)[parts]
    rel = points - origin
    along = np.sum(rel * axis, axis=1)
    low, high = np.asarray(charts.u_range, np.float64)[parts].T
    u = np.clip((along - low) / (high - low), 0.0, 1.0)
    v = np.mod(np.arctan2(np.sum(rel * binormal, axis=1), np.sum(rel * reference, axis=1)) / (2 * np.pi), 1.0)
    return np.stack([u, v], axis=1)


def test_charts_structure(body, charts):
    np.testing.assert_array_equal(np.asarray(charts.vertex_part), np.argmax(np.asarray(body.weights), axis=1))
    uv = np.asarray(charts.vertex_uv)
    assert uv.shape == (body.num_vertices, 2) and uv.min() >= 0.0 and uv.max() <= 1.0
    for frame in (charts.axis, charts.reference, charts.binormal):
        np.testing.assert_allclose(np.linalg.norm(np.asarray(frame), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(np.asarray(charts.axis) * np.asarray(charts.reference), axis=1), 0.0, atol=1e-5)
    # Every part's U spans [0, 1] over its own vertices.
    parts = np.asarray(charts.vertex_part)
    for part in range(24):
        u = uv[parts == part, 0]
        assert u.min() < 1e-5 and u.max() > 1 - 1e-5, part
    # Float64 reference of the chart coordinates on random points.
    rng = np.random.default_rng(0)
    points = np.asarray(body.v_template, np.float64)[rng.integers(0, body.num_vertices, 300)] + rng.normal(0, 0.01, (300, 3))
    random_parts = rng.integers(0, 24, 300)
    ours = np.asarray(chart_coordinates(charts, points.astype(np.float32), random_parts))
    expected = _numpy_chart_uv(charts, points, random_parts)
    dv = ours[:, 1] - expected[:, 1]
    np.testing.assert_allclose(ours[:, 0], expected[:, 0], atol=2e-5)
    np.testing.assert_allclose(dv - np.round(dv), 0.0, atol=2e-5)  # V compared modulo 1
    np.testing.assert_array_equal(np.asarray(chart_coordinates(charts, points[:2].astype(np.float32), np.asarray([-1, -1]))), 0.0)


def test_nearest_chart_vertex_matches_wrapped_reference(charts):
    rng = np.random.default_rng(1)
    parts = rng.integers(0, 24, 200)
    uv = rng.uniform(0, 1, (200, 2))
    uv[:20, 1] = rng.uniform(0.995, 1.0, 20)  # near the V seam: the nearest vertex may sit at V ≈ 0
    ours = np.asarray(nearest_chart_vertex(charts, parts, uv.astype(np.float32)))
    vertex_uv, vertex_part = np.asarray(charts.vertex_uv, np.float64), np.asarray(charts.vertex_part)
    metric = np.asarray(charts.metric, np.float64)
    for i in range(200):
        ids = np.flatnonzero(vertex_part == parts[i])
        du = (uv[i, 0] - vertex_uv[ids, 0]) * metric[parts[i], 0]
        dv = np.abs(uv[i, 1] - vertex_uv[ids, 1])
        dv = np.minimum(dv, 1.0 - dv) * metric[parts[i], 1]
        distance = du**2 + dv**2
        assert vertex_part[ours[i]] == parts[i]
        assert distance[ids == ours[i]][0] <= distance.min() + 1e-9, i  # ties allowed
    # A vertex's own label finds itself (or a vertex at chart distance 0), and −1 parts give −1.
    own = np.asarray(nearest_chart_vertex(charts, vertex_part, np.asarray(charts.vertex_uv)))
    assert np.mean(own == np.arange(len(own))) > 0.99
    assert np.asarray(nearest_chart_vertex(charts, np.asarray([-1]), np.zeros((1, 2), np.float32)))[0] == -1
    with pytest.raises(ValueError, match="uv"):
        nearest_chart_vertex(charts, parts, uv[:, :1])


def test_chart_search_agrees_with_exact_vertex(body, charts):
    """Surface points labelled (I, U, V) and searched back in the chart land on (or next to) their vertex."""
    rng = np.random.default_rng(0)
    template, faces = np.asarray(body.v_template, np.float64), np.asarray(body.faces)
    corners = template[faces]
    area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    n = 20000
    face_id = rng.choice(len(faces), n, p=area / area.sum())
    r = rng.random((n, 2))
    s = np.sqrt(r[:, 0])
    bary = np.stack([1 - s, s * (1 - r[:, 1]), s * r[:, 1]], axis=1)
    part, uv = pixel_labels(charts, faces, face_id, bary.astype(np.float32), body.v_template)
    found = np.asarray(nearest_chart_vertex(charts, part, uv))
    exact = np.asarray(exact_vertex(faces, face_id, bary.astype(np.float32)))
    np.testing.assert_array_equal(exact, faces[face_id, np.argmax(bary, axis=1)])
    np.testing.assert_array_equal(np.asarray(part), np.asarray(charts.vertex_part)[exact])
    ring = _one_ring(faces, body.num_vertices)
    same = np.mean(found == exact)
    near = np.mean([int(f) in ring[int(e)] for f, e in zip(found, exact)])
    point = np.einsum("nk,nkd->nd", bary, corners[face_id])
    distance = np.linalg.norm(template[found] - point, axis=1).mean()
    exact_distance = np.linalg.norm(template[exact] - point, axis=1).mean()
    assert same >= SAME_VERTEX_MIN and near >= ONE_RING_MIN, (same, near)
    assert distance <= MEAN_DISTANCE_MAX_M and distance <= exact_distance, (distance, exact_distance)


def test_dataset_shapes_and_label_consistency(data, body, charts):
    train, size, p = data["train"], TINY.image_size, TINY.points_per_person
    n, v = TINY.num_train, body.num_vertices
    assert set(REQUIRED_KEYS) <= set(train)
    assert train["image"].shape == (n, size, size, 3) and train["image"].dtype == np.uint8
    assert train["mask"].shape == (n, size, size) and train["mask"].dtype == bool
    assert train["dense_xy"].shape == (n, p, 2) and train["dense_uv"].shape == (n, p, 2)
    for key in ("dense_part", "dense_vertex", "dense_exact_vertex"):
        assert train[key].shape == (n, p) and train[key].dtype == np.int32
    assert train["keypoints"].shape == (n, 24, 2) and train["joints_cam"].shape == (n, 24, 3)
    assert train["vertices_cam"].shape == (n, v, 3) and train["camera_intrinsics"].shape == (n, 4)
    valid = train["dense_valid"]
    assert np.all(valid.sum(axis=1) == np.minimum(p, train["mask"].sum(axis=(1, 2))))
    # Sampled pixel centres are distinct covered pixels.
    pixels = np.round((train["dense_xy"] + 1.0) * size / 2.0 - 0.5).astype(int)  # (col, row)
    for i in range(n):
        cols, rows = pixels[i, valid[i], 0], pixels[i, valid[i], 1]
        assert np.all(train["mask"][i, rows, cols])
        assert len(set(zip(cols, rows))) == valid[i].sum()
    parts = np.asarray(charts.vertex_part)
    np.testing.assert_array_equal(train["dense_part"][valid], parts[train["dense_exact_vertex"][valid]])
    np.testing.assert_array_equal(parts[train["dense_vertex"][valid]], train["dense_part"][valid])
    # The exact vertex projects within ~a triangle of its pixel (triangles ≈ 1 px at 32 px).
    intrinsics = train["camera_intrinsics"][:, None, :].astype(np.float64)
    cam = np.take_along_axis(train["vertices_cam"].astype(np.float64), train["dense_exact_vertex"][..., None], axis=1)
    projected = np.stack([intrinsics[..., 0] * cam[..., 0] / cam[..., 2] + intrinsics[..., 2],
                          intrinsics[..., 1] * cam[..., 1] / cam[..., 2] + intrinsics[..., 3]], axis=-1)
    offset = np.linalg.norm(projected - (train["dense_xy"] + 1.0) * size / 2.0, axis=-1)[valid]
    assert np.median(offset) < 1.0 and np.percentile(offset, 95) < 2.5, np.percentile(offset, [50, 95])
    # Chart search on the rendered labels: a looser bound than the 20k-point test (few points here).
    assert np.mean(train["dense_vertex"][valid] == train["dense_exact_vertex"][valid]) > 0.5


def test_dataset_geometry_matches_numpy_reference(data, body):
    """GT joints/vertices, keypoints and framing recomputed in float64 from betas, pose and camera."""
    train, size = data["train"], TINY.image_size
    low, high = TINY.fill_range
    for i in range(TINY.num_train):
        out = forward(body, train["betas"][i], train["pose"][i])
        rotation, translation = train["camera_rotation"][i].astype(np.float64), train["camera_translation"][i].astype(np.float64)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        joints_cam = np.asarray(out.joints, np.float64) @ rotation.T + translation
        vertices_cam = np.asarray(out.vertices, np.float64) @ rotation.T + translation
        np.testing.assert_allclose(train["joints_cam"][i], joints_cam, atol=2e-4)
        np.testing.assert_allclose(train["vertices_cam"][i], vertices_cam, atol=2e-4)
        fx, fy, cx, cy = train["camera_intrinsics"][i].astype(np.float64)
        assert fx == pytest.approx(TINY.focal, rel=1e-6) and fy == fx
        keypoints = np.stack([fx * joints_cam[:, 0] / joints_cam[:, 2] + cx, fy * joints_cam[:, 1] / joints_cam[:, 2] + cy], axis=1)
        np.testing.assert_allclose(train["keypoints"][i], (keypoints - size / 2) / (size / 2), atol=1e-4)
        assert np.all(train["keypoint_valid"][i])
        pixels = np.stack([fx * vertices_cam[:, 0] / vertices_cam[:, 2] + cx, fy * vertices_cam[:, 1] / vertices_cam[:, 2] + cy], axis=1)
        extent = (pixels.max(axis=0) - pixels.min(axis=0)).max() / size
        assert low - 1e-3 <= extent <= high + 1e-3
        assert pixels.min() >= 1.0 - 1e-3 and pixels.max() <= size - 1.0 + 1e-3
    camera = camera_at(train, 0)  # the Camera object reproduces the stored keypoints
    pixels, _ = project(forward(body, train["betas"][0], train["pose"][0]).joints, camera)
    np.testing.assert_allclose((np.asarray(pixels) - size / 2) / (size / 2), train["keypoints"][0], atol=1e-5)
    # The root is a pure yaw within ±root_yaw_deg; the body is seen from the front half-space.
    root = train["pose"][:, 0]
    assert np.all(root[:, [0, 2]] == 0) and np.all(np.abs(root[:, 1]) <= np.deg2rad(TINY.root_yaw_deg) + 1e-6)


def test_dataset_deterministic_prefix_stable_and_seeded(data):
    with jax.numpy_rank_promotion("raise"):
        again = make_dataset(TINY, "train", progress=False)
        prefix = make_dataset(dataclasses.replace(TINY, num_train=3), "train", progress=False)
        other = make_dataset(dataclasses.replace(TINY, num_train=3, seed=6), "train", progress=False)
    for key in data["train"]:
        np.testing.assert_array_equal(data["train"][key], again[key], err_msg=key)
        np.testing.assert_array_equal(data["train"][key][:3], prefix[key], err_msg=key)  # also: padding-independent
    assert not np.array_equal(other["pose"], prefix["pose"]) and not np.array_equal(other["image"], prefix["image"])


def test_subjects_disjoint_between_splits(data):
    train, test = data["train"], data["test"]
    assert set(np.unique(train["subject"])) == set(subject_ids(TINY, "train")) == {0, 1, 2}
    assert set(np.unique(test["subject"])) == set(subject_ids(TINY, "test")) == {3, 4}
    assert not set(train["subject"]) & set(test["subject"])
    for split in (train, test):
        for subject in np.unique(split["subject"]):
            rows = split["betas"][split["subject"] == subject]
            assert np.all(rows == rows[0])  # one shape per subject
    assert not any(np.allclose(a, b) for a in train["betas"] for b in test["betas"])
    assert not np.allclose(train["pose"][0], train["pose"][TINY.train_subjects])  # a subject's images differ in pose


def test_canonical_bone_length(data, body):
    train = data["train"]
    joints = np.asarray(body.j_template, np.float64)[None] + np.einsum("jck,nk->njc", np.asarray(body.j_shapedirs, np.float64), train["betas"].astype(np.float64))
    lengths = sum(np.linalg.norm(joints[:, j] - joints[:, p], axis=-1) for j, p in enumerate(SMPL_PARENTS) if p >= 0)
    expected = np.mean([lengths[train["subject"] == s].mean() for s in np.unique(train["subject"])])
    assert canonical_bone_length(train) == pytest.approx(expected, rel=1e-4)


def test_cache_round_trip_and_corrupt_file(data, tmp_path):
    config = dataclasses.replace(TINY, num_test=3)
    path = dataset_cache_path(config, "test", tmp_path)
    np.savez(path, **data["test"])  # a cache written by an earlier run
    loaded = load_or_make_dataset(config, "test", tmp_path, progress=False)
    for key in REQUIRED_KEYS:
        np.testing.assert_array_equal(loaded[key], data["test"][key])
    assert dataset_cache_path(dataclasses.replace(config, seed=9), "test", tmp_path) != path
    assert dataset_cache_path(dataclasses.replace(config, chunk_size=7), "test", tmp_path) == path
    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=str(path.name)):
        load_or_make_dataset(config, "test", tmp_path, progress=False)
    np.savez(path, image=data["test"]["image"])
    with pytest.raises(ValueError, match="missing arrays"):
        load_or_make_dataset(config, "test", tmp_path, progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="fill_range"):
        DeformLearnDataConfig(fill_range=(0.9, 0.6))
    with pytest.raises(ValueError, match="train_subjects"):
        DeformLearnDataConfig(train_subjects=0)
    with pytest.raises(ValueError, match="split"):
        TINY.num_images("val")
    with pytest.raises(ValueError, match="num_test"):
        make_dataset(dataclasses.replace(TINY, num_test=0), "test")


def test_densepose_json_round_trip(data, tmp_path):
    annotations, images = dataset_annotations(data["train"])
    assert len(annotations) == TINY.num_train
    path = tmp_path / "dp.json"
    write_densepose_json(path, annotations, images)
    document = json.loads(path.read_text())
    first = document["annotations"][0]
    assert min(first["dp_I"]) >= 1 and max(first["dp_I"]) <= 24
    assert 0 <= min(first["dp_x"]) and max(first["dp_x"]) <= 255 and document["images"] == images
    back = read_densepose_json(path)
    assert len(back) == len(annotations)
    for ours, theirs in zip(annotations, back):
        assert ours.image_id == theirs.image_id and ours.annotation_id == theirs.annotation_id
        np.testing.assert_allclose(theirs.bbox, ours.bbox, rtol=0, atol=0)
        np.testing.assert_allclose(theirs.points, ours.points, atol=1e-9)
        np.testing.assert_array_equal(theirs.parts, ours.parts)
        np.testing.assert_allclose(theirs.uv, ours.uv, atol=1e-12)
        np.testing.assert_allclose(theirs.keypoints, ours.keypoints, atol=1e-12)
    # The points are the dataset's pixel centres.
    i, valid = 0, data["train"]["dense_valid"][0]
    np.testing.assert_allclose(back[i].points, (data["train"]["dense_xy"][i][valid] + 1.0) * TINY.image_size / 2.0, atol=1e-4)


def _write(tmp_path, document, name="bad.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _entry(**changes):
    entry = {"image_id": 1, "bbox": [10.0, 20.0, 50.0, 100.0], "dp_x": [0.0, 127.5, 255.0], "dp_y": [255.0, 0.0, 51.0],
             "dp_I": [1, 24, 3], "dp_U": [0.0, 0.5, 1.0], "dp_V": [0.25, 0.5, 0.75]}
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not _DROP}


_DROP = object()


def test_densepose_json_reader_conventions(tmp_path):
    path = _write(tmp_path, {"annotations": [_entry(), {"image_id": 2, "bbox": [0, 0, 1, 1]}, _entry(keypoints=[1, 2, 2, 3, 4, 0])]})
    annotations = read_densepose_json(path)
    assert len(annotations) == 2  # the entry without dp_* keys is skipped
    first = annotations[0]
    np.testing.assert_allclose(first.points, [[10.0, 120.0], [35.0, 20.0], [60.0, 40.0]])
    np.testing.assert_array_equal(first.parts, [0, 23, 2])
    assert first.keypoints is None and annotations[1].keypoints.shape == (2, 3)


@pytest.mark.parametrize(
    "document, message",
    [
        ("{not json", "not a valid JSON"),
        ({"images": []}, "'annotations' list"),
        ({"annotations": [_entry(bbox=_DROP)]}, r"missing key\(s\) \['bbox'\]"),
        ({"annotations": [_entry(dp_U=_DROP)]}, r"annotations\[0\].*missing key\(s\) \['dp_U'\]"),
        ({"annotations": [_entry(dp_V=[0.1, 0.2])]}, "different lengths"),
        ({"annotations": [_entry(dp_I=[0, 1, 2])]}, "dp_I"),
        ({"annotations": [_entry(dp_I=[1, 25, 2])]}, "dp_I"),
        ({"annotations": [_entry(dp_I=[1, 2.5, 2])]}, "dp_I"),
        ('{"annotations": [{"bbox": [0, 0, 1, 1], "dp_x": [NaN], "dp_y": [0], "dp_I": [1], "dp_U": [0], "dp_V": [0]}]}', "NaN"),
        ({"annotations": [_entry(dp_U=[0.0, 1.5, 0.2])]}, "dp_U"),
        ({"annotations": [_entry(dp_x=[0.0, 300.0, 1.0])]}, "dp_x"),
        ({"annotations": [_entry(bbox=[0, 0, -1, 5])]}, "bbox"),
        ({"annotations": [_entry(dp_y="abc")]}, "dp_y"),
        ({"annotations": [_entry(keypoints=[1, 2])]}, "multiple of 3"),
        ({"annotations": [_entry(), "oops"]}, r"annotations\[1\]"),
    ],
)
def test_densepose_json_malformed(tmp_path, document, message):
    path = _write(tmp_path, document)
    with pytest.raises(DensePoseFormatError, match=message) as info:
        read_densepose_json(path)
    assert str(path) in str(info.value)


def test_densepose_json_writer_rejects_bad_annotations(tmp_path):
    good = DensePoseAnnotation(image_id=0, bbox=np.asarray([0.0, 0.0, 10.0, 10.0]), points=np.asarray([[5.0, 5.0]]),
                               parts=np.asarray([3]), uv=np.asarray([[0.5, 0.5]]))
    write_densepose_json(tmp_path / "ok.json", [good], [])
    bad = {
        "inside the bbox": dataclasses.replace(good, points=np.asarray([[11.0, 5.0]])),
        "parts": dataclasses.replace(good, parts=np.asarray([24])),
        "NaN": dataclasses.replace(good, uv=np.asarray([[np.nan, 0.5]])),
        "different lengths": dataclasses.replace(good, parts=np.asarray([1, 2])),
    }
    for message, annotation in bad.items():
        with pytest.raises(ValueError, match=message):
            write_densepose_json(tmp_path / "bad.json", [annotation], [])
    assert not (tmp_path / "bad.json").exists()
