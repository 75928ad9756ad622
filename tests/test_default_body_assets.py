"""Properties of the committed ANNY-derived body files (jaxpose/bodies/assets/anny24_*_k16.npz).

Runs without the `anny` extra: only NumPy on the committed arrays, plus a float64 NumPy LBS written here.
"""

import json
import pathlib

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "jaxpose" / "bodies" / "assets"
VARIANTS = {"low": ("anny24_low_k16.npz", 1229, 2454), "full": ("anny24_full_k16.npz", 13718, 27420)}
NUM_BETAS = 16
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
SMPL_NAMES = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
]  # fmt: skip
LEFT_ARM = [16, 18, 20, 22]  # shoulder, elbow, wrist, hand
TORSO = [0, 3, 6, 9]
COCO_NOSE, COCO_LEFT_SHOULDER = 0, 5


def _load(name: str) -> dict[str, np.ndarray]:
    with np.load(ASSETS / name, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def bodies() -> dict[str, dict[str, np.ndarray]]:
    return {variant: _load(file) for variant, (file, _, _) in VARIANTS.items()}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, bodies):
    return request.param, bodies[request.param]


def lbs_float64(body: dict[str, np.ndarray], pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference SMPL-style LBS of the mean shape. pose (24, 3) axis-angle, radians.

    Returns posed vertices (V, 3) and posed joint positions (24, 3), float64.
    """
    vertices = body["v_template"].astype(np.float64)
    joints = body["J_template"].astype(np.float64)
    weights = body["weights"].astype(np.float64)
    parents = body["parents"]
    rotations = Rotation.from_rotvec(pose).as_matrix()
    world = np.zeros((24, 4, 4))
    for j in range(24):
        local = np.eye(4)
        local[:3, :3] = rotations[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0.0)
        world[j] = local if parents[j] < 0 else world[parents[j]] @ local
    skinning = world.copy()
    skinning[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
    per_vertex = np.einsum("vj,jab->vab", weights, skinning)
    posed = np.einsum("vab,vb->va", per_vertex[:, :3, :3], vertices) + per_vertex[:, :3, 3]
    return posed, world[:, :3, 3]


def test_keys_shapes_dtypes(variant):
    name, body = variant
    _, num_vertices, num_faces = VARIANTS[name]
    expected = {
        "v_template": ((num_vertices, 3), np.float32),
        "shapedirs": ((num_vertices, 3, NUM_BETAS), np.float32),
        "posedirs": ((num_vertices, 3, 0), np.float32),
        "J_regressor": ((24, num_vertices), np.float32),
        "J_template": ((24, 3), np.float32),
        "J_shapedirs": ((24, 3, NUM_BETAS), np.float32),
        "weights": ((num_vertices, 24), np.float32),
        "kintree_table": ((2, 24), np.int64),
        "parents": ((24,), np.int32),
        "f": ((num_faces, 3), np.int32),
        "coco_regressor": ((23, num_vertices), np.float32),
        "part_ids": ((num_vertices,), np.int8),
    }
    for key, (shape, dtype) in expected.items():
        assert body[key].shape == shape, key
        assert body[key].dtype == dtype, key
    assert body["joint_names"].dtype.kind == "U" and body["joint_names"].tolist() == SMPL_NAMES
    assert body["meta"].shape == () and body["meta"].dtype.kind == "U"
    for key, array in body.items():
        assert array.dtype != object, key
        if array.dtype.kind == "f":
            assert np.all(np.isfinite(array)), key
    if name == "full":
        assert body["vt"].ndim == 2 and body["vt"].shape[1] == 2
        assert body["ft"].shape == body["f"].shape
        assert body["ft"].min() >= 0 and body["ft"].max() < body["vt"].shape[0]


def test_skin_weights_are_convex(variant):
    _, body = variant
    assert body["weights"].min() >= 0.0
    np.testing.assert_allclose(body["weights"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(body["part_ids"], np.argmax(body["weights"], axis=1))


def test_faces_in_range_every_vertex_used_no_degenerates(variant):
    _, body = variant
    faces, num_vertices = body["f"], body["v_template"].shape[0]
    assert faces.min() >= 0 and faces.max() < num_vertices
    assert np.unique(faces).size == num_vertices
    corners = body["v_template"][faces].astype(np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    assert areas.min() > 0.0


def test_kinematic_tree_is_smpl(variant):
    _, body = variant
    parents = body["parents"]
    assert parents.tolist() == SMPL_PARENTS
    assert all(parents[j] < j for j in range(1, 24)) and parents[0] == -1
    np.testing.assert_array_equal(body["kintree_table"][0], parents.astype(np.int64))
    np.testing.assert_array_equal(body["kintree_table"][1], np.arange(24))


def test_axes_orientation_and_size(variant):
    _, body = variant
    vertices, joints = body["v_template"], body["J_template"]
    pelvis, left_hip, right_hip, head = joints[0], joints[1], joints[2], joints[15]
    assert left_hip[0] > 0.03 and right_hip[0] < -0.03  # +x = body's left
    assert head[1] > pelvis[1] + 0.4  # y-up
    coco = body["coco_regressor"].astype(np.float64) @ vertices.astype(np.float64)
    assert coco[COCO_NOSE, 2] > pelvis[2] + 0.05  # facing +z
    assert coco[COCO_LEFT_SHOULDER, 0] > 0.1
    height = vertices[:, 1].max() - vertices[:, 1].min()
    assert 1.5 < height < 1.95
    # Feet at the bottom, ankles just above them; every joint inside the mesh's bounding box.
    assert joints[[7, 8], 1].min() - vertices[:, 1].min() < 0.15
    assert np.all(joints >= vertices.min(axis=0)) and np.all(joints <= vertices.max(axis=0))


def test_rest_pose_is_a_t_pose(variant):
    _, body = variant
    joints = body["J_template"].astype(np.float64)
    for shoulder, wrist in ((16, 20), (17, 21)):
        arm = joints[wrist] - joints[shoulder]
        assert abs(arm[0]) > 0.4  # arm points sideways ...
        assert np.degrees(np.arcsin(np.linalg.norm(arm[1:]) / np.linalg.norm(arm))) < 15.0  # ... nearly horizontally


def test_body_is_left_right_symmetric(variant):
    _, body = variant
    vertices = body["v_template"].astype(np.float64)
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    distance, _ = cKDTree(vertices).query(mirrored)
    assert np.percentile(distance, 99) < 0.01
    joints = body["J_template"].astype(np.float64)
    for left, right in ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23)):
        np.testing.assert_allclose(joints[left] * np.array([-1.0, 1.0, 1.0]), joints[right], atol=2e-3)


def test_shapedirs_are_scaled_principal_components(bodies):
    # Full-res: exactly orthogonal columns with decreasing norms (PC x std).
    flat = bodies["full"]["shapedirs"].astype(np.float64).reshape(-1, NUM_BETAS)
    gram = flat.T @ flat
    norms = np.sqrt(np.diag(gram))
    assert np.all(np.diff(norms) <= 1e-6)
    off_diagonal = gram / np.outer(norms, norms) - np.eye(NUM_BETAS)
    assert np.abs(off_diagonal).max() < 1e-4
    # Low-res: transferred, so only approximately orthogonal.
    flat_low = bodies["low"]["shapedirs"].astype(np.float64).reshape(-1, NUM_BETAS)
    gram_low = flat_low.T @ flat_low
    norms_low = np.sqrt(np.diag(gram_low))
    assert np.abs(gram_low / np.outer(norms_low, norms_low) - np.eye(NUM_BETAS)).max() < 0.35
    # Beta 1 (mostly size) changes the height by a plausible amount per standard deviation.
    body = bodies["full"]
    tall = body["v_template"] + body["shapedirs"][..., 0]
    delta = abs((tall[:, 1].max() - tall[:, 1].min()) - (body["v_template"][:, 1].max() - body["v_template"][:, 1].min()))
    assert 0.02 < delta < 0.2


def test_both_resolutions_share_the_joint_model(bodies):
    np.testing.assert_array_equal(bodies["low"]["J_template"], bodies["full"]["J_template"])
    np.testing.assert_array_equal(bodies["low"]["J_shapedirs"], bodies["full"]["J_shapedirs"])


def point_triangle_distance(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Euclidean distance from points (N, 3) to triangles (N, 3, 3), float64."""
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    height = np.einsum("nd,nd->n", points - a, normal)
    projected = points - height[:, None] * normal
    inside = np.ones(points.shape[0], dtype=bool)
    for p, q in ((a, b), (b, c), (c, a)):
        inside &= np.einsum("nd,nd->n", np.cross(q - p, projected - p), normal) >= 0.0
    edge_distance = np.full(points.shape[0], np.inf)
    for p, q in ((a, b), (b, c), (c, a)):
        t = np.clip(np.einsum("nd,nd->n", points - p, q - p) / np.einsum("nd,nd->n", q - p, q - p), 0.0, 1.0)
        edge_distance = np.minimum(edge_distance, np.linalg.norm(points - (p + t[:, None] * (q - p)), axis=1))
    return np.where(inside, np.abs(height), edge_distance)


def test_low_res_lies_on_the_full_surface(bodies):
    low, full = bodies["low"], bodies["full"]
    points = low["v_template"].astype(np.float64)
    vertices = full["v_template"].astype(np.float64)
    faces = full["f"]
    # Candidate triangles: those touching any of the 16 full-res vertices nearest to each low-res vertex.
    _, neighbours = cKDTree(vertices).query(points, k=16)
    incident = [[] for _ in range(vertices.shape[0])]
    for face_id, face in enumerate(faces):
        for vertex in face:
            incident[vertex].append(face_id)
    best = np.full(points.shape[0], np.inf)
    for i, row in enumerate(neighbours):
        candidates = np.unique(np.concatenate([incident[v] for v in row]))
        distance = point_triangle_distance(np.repeat(points[i][None], candidates.size, axis=0), vertices[faces[candidates]])
        best[i] = distance.min()
    # Barycentric transfer: each low-res vertex sits on a full-res triangle (up to float32 rounding).
    assert best.max() < 1e-5
    distance, nearest = cKDTree(vertices).query(points)
    # Shape directions and weights were transferred with the same barycentric weights.
    np.testing.assert_allclose(low["shapedirs"], full["shapedirs"][nearest], atol=0.004)
    assert np.mean(np.abs(low["weights"] - full["weights"][nearest]).sum(axis=1) < 0.5) > 0.97
    low_height = np.ptp(low["v_template"][:, 1])
    assert abs(low_height - np.ptp(full["v_template"][:, 1])) < 0.01


def test_regressors(variant):
    _, body = variant
    for key, bound in (("J_regressor", 0.01), ("coco_regressor", 0.006)):
        regressor = body[key].astype(np.float64)
        assert regressor.min() >= 0.0, key
        np.testing.assert_allclose(regressor.sum(axis=1), 1.0, atol=1e-5, err_msg=key)
    vertices = body["v_template"].astype(np.float64)
    joints = body["J_template"].astype(np.float64)
    # The J_regressor reproduces the exact joints on the mean shape and on +-2 sd of each beta. Being convex,
    # it cannot follow joints that slide under the skin with shape (ANNY's knees move ~4 cm relative to the
    # knee surface over +-2 sd of beta 1; measured worst error 39 mm), hence the loose bound.
    for k in range(-1, NUM_BETAS):
        for sign in (-2.0, 2.0):
            shaped = vertices if k < 0 else vertices + sign * body["shapedirs"][..., k]
            target = joints if k < 0 else joints + sign * body["J_shapedirs"][..., k]
            error = np.linalg.norm(body["J_regressor"].astype(np.float64) @ shaped - target, axis=1)
            assert error.max() < 0.05, (k, sign, error.max())
    error = np.linalg.norm(body["J_regressor"].astype(np.float64) @ vertices - joints, axis=1)
    assert error.mean() < 0.005


def test_meta(variant):
    name, body = variant
    meta = json.loads(str(body["meta"]))
    assert meta["num_betas"] == NUM_BETAS
    assert meta["rest_pose"] == "tpose"
    assert meta["anny_version"] == "0.6.2"
    assert meta["topology"] == ("default" if name == "full" else "notoes_collapse10pc")
    assert meta["num_vertices"] == body["v_template"].shape[0]
    assert meta["num_samples"] >= 1000 and isinstance(meta["seed"], int)
    assert set(meta["slider_ranges"]) == {"gender", "age", "muscle", "weight", "height", "proportions"}
    assert "CC0" in meta["license"] and "MakeHuman" in meta["attribution"]
    ratios = np.asarray(meta["pca_explained_variance_ratio"])
    assert ratios.shape == (NUM_BETAS,) and np.all(np.diff(ratios) <= 0) and 0.99 < ratios.sum() <= 1.0
    assert meta["pca_reconstruction_error_mm"]["mean"] < 1.0
    assert len(meta["coco_names"]) == 23 and meta["coco_names"][0] == "nose"


def test_arm_lift_moves_only_the_arm(bodies):
    """Low-res body, left shoulder lifted 45 deg about z: a sanity check of the T-pose rebinding."""
    body = bodies["low"]
    rest, rest_joints = lbs_float64(body, np.zeros((24, 3)))
    np.testing.assert_allclose(rest, body["v_template"], atol=1e-6)
    pose = np.zeros((24, 3))
    pose[16, 2] = np.radians(45.0)
    posed, joints = lbs_float64(body, pose)

    # The hand rises by |hand - shoulder| sin 45 deg (arm horizontal at rest) and stays away from the torso.
    arm = rest_joints[22] - rest_joints[16]
    expected_hand = rest_joints[16] + Rotation.from_rotvec(pose[16]).apply(arm)
    np.testing.assert_allclose(joints[22], expected_hand, atol=1e-9)
    assert joints[22, 1] - rest_joints[22, 1] > 0.4 * np.sin(np.radians(45.0))
    hand = posed[np.isin(body["part_ids"], [20, 22])]
    torso = posed[np.isin(body["part_ids"], TORSO)]
    assert np.min(np.linalg.norm(hand[:, None, :] - torso[None, :, :], axis=-1)) > 0.3

    arm_weight = body["weights"][:, LEFT_ARM].astype(np.float64).sum(axis=1)
    displacement = np.linalg.norm(posed - rest, axis=1)
    assert np.all(displacement[arm_weight == 0.0] < 1e-9)
    moved = displacement > 0.02
    assert moved.sum() > 50
    assert np.all(arm_weight[moved] > 0.05) and np.all(rest[moved, 0] > 0.1)
    # Vertices that mostly belong to the torso or the other side barely move.
    assert np.all(displacement[arm_weight < 0.01] < 0.003)
