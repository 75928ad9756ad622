"""3DPW sequence reader on SYNTHETIC files in 3DPW's format (2 people, 5 frames; no real data, no SMPL).

Files are written both by Python 3's pickle (protocol 2) and by a small writer that emits the opcodes
a Python-2 pickler produces for 3DPW's content (`str` byte buffers, `numpy.core.multiarray` paths),
which only load through latin-1 decoding.
"""

import json
import os
import pickle
import struct

import numpy as np
import pytest

from jaxpose.bodies import UnsafePickleError, default_body
from jaxpose.fitting.threedpw import (
    COCO17_NAMES,
    OPENPOSE18_NAMES,
    PIXEL_OFFSET,
    ThreeDPWFormatError,
    camera_for_frame,
    frames_for_fitting,
    load_threedpw_sequence,
    openpose18_to_names,
)
from jaxpose.render import project

P, F = 2, 5


def _rotation(axis_angle) -> np.ndarray:
    """Rodrigues' formula: (3,) axis-angle -> (3, 3)."""
    theta = np.linalg.norm(axis_angle)
    k = np.asarray(axis_angle) / theta
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross


def synthetic_sequence(seed: int = 0) -> dict:
    """A dict with 3DPW's keys, types and shapes, filled with random values."""
    rng = np.random.default_rng(seed)
    cam_poses = np.tile(np.eye(4), (F, 1, 1))
    for frame in range(F):
        cam_poses[frame, :3, :3] = _rotation(rng.normal(size=3) * 0.3)
        cam_poses[frame, :3, 3] = rng.normal(size=3) * 0.5 + [0.0, 0.0, 4.0]
    poses2d = []
    for _ in range(P):
        keypoints = np.stack([rng.uniform(0, 1080, (F, 18)), rng.uniform(0, 1920, (F, 18)), rng.uniform(0.1, 1, (F, 18))], axis=1)
        keypoints[1, :, 4] = 0.0  # frame 1: keypoint 4 undetected (3DPW stores zeros)
        poses2d.append(keypoints)
    return {
        "sequence": "courtyard_synthetic_00",
        "genders": ["m", "f"],
        "poses": [rng.normal(size=(F, 72)) * 0.3 for _ in range(P)],
        "trans": [rng.normal(size=(F, 3)) for _ in range(P)],
        "betas": [rng.normal(size=10) for _ in range(P)],
        "betas_clothed": [rng.normal(size=10) for _ in range(P)],
        "v_template_clothed": [rng.normal(size=(30, 3)) for _ in range(P)],
        "texture_maps": [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(P)],
        "jointPositions": [rng.normal(size=(F, 72)) for _ in range(P)],
        "poses2d": poses2d,
        "img_frame_ids": np.arange(F, dtype=np.int64) * 2 + 7,
        "cam_poses": cam_poses,
        "cam_intrinsics": np.array([[1961.2, 0.0, 540.3], [0.0, 1969.1, 960.7], [0.0, 0.0, 1.0]]),
        "campose_valid": [np.array([True, True, False, True, True]), np.ones(F, bool)],
    }


# --- a Python-2-style pickle writer (protocol 2, `str` buffers, `numpy.core` global paths) -------


def _py2_string(data: bytes) -> bytes:
    return (b"U" + bytes([len(data)]) + data) if len(data) < 256 else (b"T" + struct.pack("<i", len(data)) + data)


def _py2_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _py2_object(x) -> bytes:
    if isinstance(x, dict):
        return b"}" + (b"(" + b"".join(_py2_object(k) + _py2_object(v) for k, v in x.items()) + b"u" if x else b"")
    if isinstance(x, tuple):
        return b"(" + b"".join(_py2_object(v) for v in x) + b"t"
    if isinstance(x, list):
        return b"]" + (b"(" + b"".join(_py2_object(v) for v in x) + b"e" if x else b"")
    if isinstance(x, (bool, np.bool_)):
        return b"\x88" if x else b"\x89"
    if x is None:
        return b"N"
    if isinstance(x, int):
        return b"J" + struct.pack("<i", x)
    if isinstance(x, str):
        return _py2_string(x.encode("latin1"))
    if isinstance(x, np.ndarray):
        order = "|" if x.dtype.itemsize == 1 else "<"
        dtype = (_py2_global("numpy", "dtype") + _py2_object((x.dtype.str[1:], 0, 1)) + b"R"
                 + _py2_object((3, order, None, None, None, -1, -1, 0)) + b"b")
        head = (_py2_global("numpy.core.multiarray", "_reconstruct") + b"(" + _py2_global("numpy", "ndarray")
                + _py2_object((0,)) + _py2_object("b") + b"tR")
        data = np.ascontiguousarray(x, x.dtype.newbyteorder("<") if order == "<" else x.dtype).tobytes()
        state = b"(" + _py2_object(1) + _py2_object(tuple(int(s) for s in x.shape)) + dtype + b"\x89" + _py2_string(data) + b"t"
        return head + state + b"b"
    raise TypeError(f"no Python-2 pickling for {type(x).__name__}")


def dumps_py2(x) -> bytes:
    return b"\x80\x02" + _py2_object(x) + b"."


# --- helpers ----------------------------------------------------------------------------------


def _write(tmp_path, data, name="seq.pkl", writer="py3"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=2) if writer == "py3" else dumps_py2(data))
    return path


def _check_round_trip(sequence, data, path):
    assert sequence.name == data["sequence"] and sequence.source == str(path)
    assert sequence.genders == ("m", "f")
    assert sequence.num_people == P and sequence.num_frames == F
    assert sequence.poses.shape == (P, F, 24, 3) and sequence.betas.shape == (P, 10)
    assert sequence.trans.shape == (P, F, 3) and sequence.poses2d.shape == (P, F, 18, 3)
    assert sequence.campose_valid.shape == (P, F) and sequence.campose_valid.dtype == bool
    for person in range(P):
        np.testing.assert_array_equal(sequence.poses[person].reshape(F, 72), data["poses"][person])
        np.testing.assert_array_equal(sequence.betas[person], data["betas"][person])
        np.testing.assert_array_equal(sequence.betas_clothed[person], data["betas_clothed"][person])
        np.testing.assert_array_equal(sequence.trans[person], data["trans"][person])
        np.testing.assert_array_equal(sequence.poses2d[person], data["poses2d"][person].transpose(0, 2, 1))
        np.testing.assert_array_equal(sequence.campose_valid[person], data["campose_valid"][person])
        np.testing.assert_array_equal(sequence.joint_positions[person].reshape(F, 72), data["jointPositions"][person])
        np.testing.assert_array_equal(sequence.v_template_clothed[person], data["v_template_clothed"][person])
        np.testing.assert_array_equal(sequence.extras["texture_maps"][person], data["texture_maps"][person])
    np.testing.assert_array_equal(sequence.cam_poses, data["cam_poses"])
    np.testing.assert_array_equal(sequence.intrinsics, data["cam_intrinsics"])
    np.testing.assert_array_equal(sequence.frame_ids, data["img_frame_ids"])
    assert set(sequence.extras) == {"texture_maps"}


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["py3", "py2"])
def test_every_field_round_trips(tmp_path, writer):
    data = synthetic_sequence()
    path = _write(tmp_path, data, writer=writer)
    if writer == "py2":
        with pytest.raises(UnicodeDecodeError):  # byte buffers stored as Python-2 `str`: latin-1 only
            pickle.loads(path.read_bytes())
    _check_round_trip(load_threedpw_sequence(path), data, path)


def test_long_betas_are_cut_to_ten_and_gender_alias(tmp_path):
    data = synthetic_sequence()
    data["betas"] = [np.arange(300.0), np.arange(10.0).reshape(10, 1)]
    data["gender"] = data.pop("genders")
    sequence = load_threedpw_sequence(_write(tmp_path, data))
    np.testing.assert_array_equal(sequence.betas, np.stack([np.arange(10.0)] * 2))
    assert sequence.genders == ("m", "f")


def test_coco17_names_are_the_default_body_coco_regressor_order():
    names = json.loads(default_body("low").meta)["coco_names"]
    assert tuple(names[:17]) == COCO17_NAMES
    assert default_body("low").extras["coco_regressor"].shape[0] == len(names)


def test_openpose18_to_coco17_mapping():
    keypoints = np.zeros((18, 3))
    keypoints[:, 0] = np.arange(18)  # x = OpenPose index
    keypoints[:, 2] = 1.0
    coco = openpose18_to_names(keypoints)
    assert coco.shape == (17, 3)
    expected = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]  # OpenPose index of each COCO-17 row
    np.testing.assert_array_equal(coco[:, 0], expected)
    for row, name in enumerate(COCO17_NAMES):
        assert OPENPOSE18_NAMES[int(coco[row, 0])] == name
    assert 1 not in coco[:, 0]  # the neck has no COCO-17 counterpart
    # the default body's full 23-name list: the 6 foot keypoints are absent (confidence 0)
    names = json.loads(default_body("low").meta)["coco_names"]
    full = openpose18_to_names(keypoints, names)
    np.testing.assert_array_equal(full[:17], coco)
    np.testing.assert_array_equal(full[17:], 0.0)


def test_frames_for_fitting_keypoints_params_and_cameras(tmp_path):
    data = synthetic_sequence()
    sequence = load_threedpw_sequence(_write(tmp_path, data))
    frames = list(frames_for_fitting(sequence, 0))
    assert [f.frame for f in frames] == [0, 1, 3, 4]  # frame 2 has campose_valid False
    assert [f.image_frame_id for f in frames] == [7, 9, 13, 15]
    assert all(f.camera is None and f.campose_valid for f in frames)
    assert len(list(frames_for_fitting(sequence, 0, valid_only=False))) == F
    for item in frames:
        pose = data["poses"][0][item.frame]
        params = item.params
        assert set(params) == {"global_orient", "body_pose", "betas", "transl"}
        assert params["body_pose"].shape == (23, 3) and params["body_pose"].dtype == np.float32
        np.testing.assert_allclose(params["global_orient"], pose[:3], rtol=1e-6)
        np.testing.assert_allclose(params["body_pose"], pose[3:].reshape(23, 3), rtol=1e-6)
        np.testing.assert_allclose(params["betas"], data["betas"][0], rtol=1e-6)
        np.testing.assert_allclose(params["transl"], data["trans"][0][item.frame], rtol=1e-6)
        openpose = data["poses2d"][0][item.frame].T  # (18, 3)
        assert item.keypoints.shape == (17, 3)
        for row, name in enumerate(COCO17_NAMES):
            source = openpose[OPENPOSE18_NAMES.index(name)]
            shifted = [source[0] + PIXEL_OFFSET, source[1] + PIXEL_OFFSET, source[2]] if source[2] > 0 else [0.0, 0.0, 0.0]
            np.testing.assert_allclose(item.keypoints[row], shifted, rtol=1e-6)
    # frame 1: OpenPose keypoint 4 (right wrist, COCO row 10) was not detected -> all zeros
    second = {f.frame: f for f in frames_for_fitting(sequence, 1, image_size=(1920, 1080))}
    np.testing.assert_array_equal(second[1].keypoints[COCO17_NAMES.index("right_wrist")], 0.0)
    assert second[3].camera.height == 1920 and second[3].camera.width == 1080
    np.testing.assert_allclose(np.asarray(second[3].camera.rotation), data["cam_poses"][3, :3, :3], atol=1e-6)
    with pytest.raises(IndexError, match="person"):
        frames_for_fitting(sequence, 2)


def test_untracked_frames_with_nan_load_and_are_skipped(tmp_path):
    data = synthetic_sequence()
    data["trans"][0][1] = np.nan  # person 0, frame 1
    data["cam_poses"][4] = np.nan  # every person, frame 4
    data["poses2d"][1][0][:, 5] = np.nan  # person 1, frame 0: OpenPose keypoint 5 (left shoulder)
    sequence = load_threedpw_sequence(_write(tmp_path, data))
    assert np.isnan(sequence.trans[0, 1]).all() and np.isnan(sequence.cam_poses[4]).all()
    assert [f.frame for f in frames_for_fitting(sequence, 0)] == [0, 3]  # 2: campose_valid False
    assert [f.frame for f in frames_for_fitting(sequence, 1)] == [0, 1, 2, 3]
    every = list(frames_for_fitting(sequence, 0, valid_only=False, image_size=(1920, 1080)))
    assert len(every) == F and every[4].camera is None and every[3].camera is not None
    first = next(frames_for_fitting(sequence, 1))
    np.testing.assert_array_equal(first.keypoints[COCO17_NAMES.index("left_shoulder")], 0.0)
    assert np.all(np.isfinite(first.keypoints))
    with pytest.raises(ValueError, match="last row"):
        camera_for_frame(sequence, 4, 1920, 1080)


def test_camera_projects_like_intrinsics_times_pose(tmp_path):
    data = synthetic_sequence()
    sequence = load_threedpw_sequence(_write(tmp_path, data))
    point = np.array([0.3, -0.2, 0.5])
    for frame in (0, 3):
        camera = camera_for_frame(sequence, frame, height=1920, width=1080)
        assert (camera.height, camera.width) == (1920, 1080) and not camera.orthographic
        pose, k = data["cam_poses"][frame], data["cam_intrinsics"]
        x_cam = pose[:3, :3] @ point + pose[:3, 3]
        expected = (k @ x_cam)[:2] / x_cam[2] + PIXEL_OFFSET  # 3DPW/OpenCV pixels -> jaxpose pixels
        pixels, depth = project(point, camera)
        np.testing.assert_allclose(np.asarray(pixels), expected, rtol=1e-5)
        np.testing.assert_allclose(float(depth), x_cam[2], rtol=1e-5)
    landscape = camera_for_frame(sequence, 0, height=1080, width=1920)
    assert (landscape.height, landscape.width) == (1080, 1920)
    with pytest.raises(IndexError, match="frame"):
        camera_for_frame(sequence, F, 1920, 1080)


def _drop(key):
    def edit(data):
        del data[key]
    return edit


def _set(key, value):
    def edit(data):
        data[key] = value(data) if callable(value) else value
    return edit


ERROR_CASES = {
    "missing poses2d": (_drop("poses2d"), r"'poses2d'.*missing"),
    "missing cam_poses": (_drop("cam_poses"), r"'cam_poses'.*missing"),
    "poses 69 wide": (_set("poses", lambda d: [p[:, :69] for p in d["poses"]]), r"'poses\[0\]'.*\(F, 72\)"),
    "trans 4 frames": (_set("trans", lambda d: [d["trans"][0], d["trans"][1][:4]]), r"'trans\[1\]'.*4 frames.*5"),
    "poses2d untransposed": (_set("poses2d", lambda d: [p.transpose(0, 2, 1) for p in d["poses2d"]]), r"'poses2d\[0\]'.*\(F, 3, 18\)"),
    "img_frame_ids short": (_set("img_frame_ids", np.arange(4)), r"'img_frame_ids'.*\(5,\)"),
    "campose_valid 6 frames": (_set("campose_valid", [np.ones(6, bool)] * 2), r"'campose_valid\[0\]'.*6 frames"),
    "campose_valid not bool": (_set("campose_valid", [np.full(F, 2)] * 2), r"'campose_valid'.*boolean"),
    "betas one person": (_set("betas", lambda d: d["betas"][:1]), r"'betas'.*1 entries.*2 people"),
    "betas too short": (_set("betas", [np.zeros(8)] * 2), r"'betas\[0\]'.*\(10,\)"),
    "genders three": (_set("genders", ["m", "f", "m"]), r"'genders'.*3 entries"),
    "intrinsics 3x4": (_set("cam_intrinsics", np.eye(3, 4)), r"'cam_intrinsics'.*\(3, 3\)"),
    "cam_poses 3x4": (_set("cam_poses", lambda d: d["cam_poses"][:, :3]), r"'cam_poses'.*\(F, 4, 4\)"),
    "nan betas": (_set("betas", lambda d: [d["betas"][0], np.full(10, np.nan)]), r"'betas\[1\]'.*NaN"),
    "nan intrinsics": (_set("cam_intrinsics", np.full((3, 3), np.inf)), r"'cam_intrinsics'.*NaN or Inf"),
    "poses not a list": (_set("poses", "not a list"), r"'poses'.*one entry per person"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_format_errors_name_the_file_and_the_key(tmp_path, case):
    edit, pattern = ERROR_CASES[case]
    data = synthetic_sequence()
    edit(data)
    path = _write(tmp_path, data, name=f"{case.replace(' ', '_')}.pkl")
    with pytest.raises(ThreeDPWFormatError, match=pattern) as info:
        load_threedpw_sequence(path)
    assert str(path) in str(info.value)


def test_not_a_pickle_not_a_dict_unsafe_and_missing_files(tmp_path):
    text = tmp_path / "notes.pkl"
    text.write_text("this is not a pickle\n")
    with pytest.raises(ThreeDPWFormatError, match="not a readable 3DPW sequence pickle") as info:
        load_threedpw_sequence(text)
    assert str(text) in str(info.value)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pickle.dumps(synthetic_sequence(), protocol=2)[:500])
    with pytest.raises(ThreeDPWFormatError, match="truncated.pkl"):
        load_threedpw_sequence(truncated)
    listed = _write(tmp_path, [1, 2, 3], name="list.pkl")
    with pytest.raises(ThreeDPWFormatError, match=r"list.pkl.*holds a dict, got list"):
        load_threedpw_sequence(listed)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"sequence": os.system}, protocol=2))  # a global outside the allow-list
    with pytest.raises(UnsafePickleError, match="evil.pkl"):
        load_threedpw_sequence(evil)
    with pytest.raises(FileNotFoundError):
        load_threedpw_sequence(tmp_path / "absent.pkl")


def test_camera_rejects_skewed_intrinsics_and_non_rigid_poses(tmp_path):
    data = synthetic_sequence()
    data["cam_intrinsics"][0, 1] = 3.0
    data["cam_poses"][1, :3, :3] *= 2.0
    sequence = load_threedpw_sequence(_write(tmp_path, data))
    with pytest.raises(ValueError, match="not a rotation"):
        camera_for_frame(sequence, 1, 1920, 1080)
    with pytest.raises(ValueError, match="cam_intrinsics"):
        camera_for_frame(sequence, 0, 1920, 1080)
