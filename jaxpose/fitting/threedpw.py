"""Reader for 3DPW sequence files (one pickle per sequence), without executing code and without SMPL.

3DPW ("3D Poses in the Wild", von Marcard et al., ECCV 2018) ships `sequenceFiles/<split>/<name>.pkl`:
Python-2 pickles (read with latin-1) of a dict. The keys read here, per its readme and the public
readers of the format (VIBE, SPIN, mmhuman3d), with P people and F image frames (30 Hz):

  sequence        str, the sequence name
  genders         P strings, 'm' or 'f' (the readme says `gender`; the files say `genders`;
                  both are accepted)
  poses           P arrays (F, 72): SMPL axis-angle pose, radians (24 joints x 3), world frame
  betas           P arrays (>= 10,): SMPL shape; the first 10 are kept (as every reader does)
  trans           P arrays (F, 3): SMPL root translation, metres, world frame
  cam_poses       (F, 4, 4): world -> camera rigid transforms (OpenCV axes: x right, y down, z forward)
  cam_intrinsics  (3, 3): K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels
  poses2d         P arrays (F, 3, 18): OpenPose COCO-18 keypoints as rows (x, y, confidence),
                  all zero where nothing was detected
  img_frame_ids   (F,) int: the image index of each frame (`image_{id:05d}.jpg`)
  campose_valid   P arrays (F,): whether the camera pose of that frame is aligned with the person

and, when present, `betas_clothed` (P x (>= 10,)), `jointPositions` (P x (F, 72), metres, world),
`v_template_clothed` (P x (V, 3)); every other key (`texture_maps`, `poses_60Hz`, ...) is kept
unparsed in `ThreeDPWSequence.extras`.

The pickle is read with `jaxpose.bodies.chumpy_pickle.load_chumpy_safe` (allow-listed globals only,
an allocation budget). Posing the people needs the licensed SMPL model, which the user loads with
`jaxpose.bodies.load_body`; nothing here needs it.

Pixel convention: 3DPW's intrinsics and OpenPose keypoints put the centre of pixel (row, col) at
(col, row) (OpenCV); jaxpose puts it at (col + 0.5, row + 0.5). `camera_for_frame` and
`frames_for_fitting` therefore add `PIXEL_OFFSET` = 0.5 to the principal point and to every detected
keypoint, so that projections and keypoints stay consistent in jaxpose's convention.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from jaxpose.bodies.chumpy_pickle import MalformedPickleError, load_chumpy_safe
from jaxpose.render import Camera, make_camera

NUM_JOINTS = 24
NUM_BETAS = 10
PIXEL_OFFSET = 0.5
"""Added to 3DPW pixel coordinates (OpenCV: pixel centres at integers) to get jaxpose's (centres at +0.5)."""

OPENPOSE18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
"""The 18 keypoints of 3DPW's `poses2d`, in file order (OpenPose's COCO-18 body model)."""

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
"""COCO-17 keypoint order: the first 17 rows of the default body's `coco_regressor` (meta `coco_names`)."""

REQUIRED_KEYS = (
    "sequence", "genders", "poses", "betas", "trans", "cam_poses", "cam_intrinsics", "poses2d",
    "img_frame_ids", "campose_valid",
)  # fmt: skip
_PARSED_OPTIONAL_KEYS = ("betas_clothed", "jointPositions", "v_template_clothed", "gender")


class ThreeDPWFormatError(ValueError):
    """A file is not a readable 3DPW sequence pickle (the message names the file and the key)."""


@dataclasses.dataclass(frozen=True)
class ThreeDPWSequence:
    """One 3DPW sequence as NumPy arrays (float64 as stored; P people, F image frames).

    Attributes:
      name: the sequence name (`sequence`).
      source: the file it was read from.
      genders: (P,) 'm' / 'f' per person (which SMPL model to pose them with).
      poses: (P, F, 24, 3) SMPL axis-angle pose, radians; joint 0 is the global orientation (world).
      betas: (P, 10) SMPL shape coefficients.
      trans: (P, F, 3) SMPL translation, metres, world frame.
      poses2d: (P, F, 18, 3) OpenPose COCO-18 keypoints (x, y, confidence), 3DPW pixel convention
        (see the module docstring); zeros where nothing was detected.
      campose_valid: (P, F) bool.
      cam_poses: (F, 4, 4) world -> camera transforms (OpenCV axes), metres.
      intrinsics: (3, 3) camera matrix K, pixels (3DPW convention).
      frame_ids: (F,) int64 image index of each frame (`imageFiles/<name>/image_{id:05d}.jpg`).
      betas_clothed: (P, 10) or None.
      joint_positions: (P, F, 24, 3) metres (world) or None.
      v_template_clothed: tuple of P (V, 3) arrays, or None.
      extras: every other key of the file, unparsed (e.g. `texture_maps`, `poses_60Hz`).
    """

    name: str
    source: str
    genders: tuple[str, ...]
    poses: np.ndarray
    betas: np.ndarray
    trans: np.ndarray
    poses2d: np.ndarray
    campose_valid: np.ndarray
    cam_poses: np.ndarray
    intrinsics: np.ndarray
    frame_ids: np.ndarray
    betas_clothed: np.ndarray | None = None
    joint_positions: np.ndarray | None = None
    v_template_clothed: tuple[np.ndarray, ...] | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_people(self) -> int:
        return int(self.poses.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.cam_poses.shape[0])


@dataclasses.dataclass(frozen=True)
class FittingFrame:
    """What `frames_for_fitting` yields for one frame of one person.

    frame: index into the sequence's frames (0..F-1); image_frame_id: `frame_ids[frame]`.
    keypoints: (K, 3) float32 (x, y, confidence) in jaxpose pixels (centres at +0.5), in the order
      of the requested keypoint names (COCO-17 by default); all 0 where OpenPose found nothing
      (confidence 0 or non-finite values) or the name has no OpenPose-18 counterpart.
    params: BodyParams dict of float32 arrays: global_orient (3,), body_pose (23, 3), betas (10,),
      transl (3,) — the 3DPW ground truth, world frame (radians, metres).
    campose_valid: whether 3DPW marks this frame's camera pose as aligned.
    camera: `camera_for_frame(...)` when `frames_for_fitting` got an `image_size`, else None.
    """

    frame: int
    image_frame_id: int
    keypoints: np.ndarray
    params: dict[str, np.ndarray]
    campose_valid: bool
    camera: Camera | None = None


# ---------------------------------------------------------------------------------------------
# Parsing


def _fail(source: str, key: str, message: str) -> ThreeDPWFormatError:
    return ThreeDPWFormatError(f"{source}: 3DPW key {key!r}: {message}")


def _as_float_array(value, source: str, key: str, *, finite: bool = True) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise _fail(source, key, f"not an array ({type(exc).__name__}: {exc})") from None
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise _fail(source, key, f"expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if finite and not np.all(np.isfinite(array)):
        raise _fail(source, key, "contains NaN or Inf")
    return array


def _per_person(data: dict, key: str, source: str) -> list:
    value = data[key]
    if not isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        raise _fail(source, key, f"expected one entry per person (a list), got {type(value).__name__}")
    items = list(value)  # a list of arrays, or an already stacked (P, ...) array
    if not items:
        raise _fail(source, key, "has no people (empty list)")
    return items


def _stack_people(data: dict, key: str, source: str, frame_shape: tuple, num_people: int,
                  num_frames: int) -> np.ndarray:  # fmt: skip
    """Stack per-person arrays of shape (F,) + frame_shape into (P, F) + frame_shape, checking shapes."""
    items = _per_person(data, key, source)
    if len(items) != num_people:
        raise _fail(source, key, f"has {len(items)} entries, but 'poses' has {num_people} people")
    arrays = []
    for person, item in enumerate(items):
        array = _as_float_array(item, source, f"{key}[{person}]", finite=False)  # see frames_for_fitting
        expected = (num_frames,) + frame_shape
        if array.shape != expected:
            what = "frames" if array.ndim >= 1 and array.shape[1:] == frame_shape else "shape"
            detail = (f"has {array.shape[0]} frames, but 'cam_poses' has {num_frames}" if what == "frames"
                      else f"expected shape {expected} (F, {', '.join(map(str, frame_shape))}), got {array.shape}")
            raise _fail(source, f"{key}[{person}]", detail)
        arrays.append(array)
    return np.stack(arrays)


def _betas(data: dict, key: str, source: str, num_people: int) -> np.ndarray:
    items = _per_person(data, key, source)
    if len(items) != num_people:
        raise _fail(source, key, f"has {len(items)} entries, but 'poses' has {num_people} people")
    rows = []
    for person, item in enumerate(items):
        array = _as_float_array(item, source, f"{key}[{person}]")
        if array.ndim == 2 and 1 in array.shape:  # the readme's "10x1"
            array = array.reshape(-1)
        if array.ndim != 1 or array.shape[0] < NUM_BETAS:
            raise _fail(source, f"{key}[{person}]", f"expected shape ({NUM_BETAS},) (or longer), got {array.shape}")
        rows.append(array[:NUM_BETAS])
    return np.stack(rows)


def _genders(data: dict, source: str, num_people: int) -> tuple[str, ...]:
    key = "genders" if "genders" in data else "gender"
    value = data[key]
    items = [value] if isinstance(value, (str, bytes)) else list(value)
    if len(items) != num_people:
        raise _fail(source, key, f"has {len(items)} entries, but 'poses' has {num_people} people")
    genders = []
    for person, item in enumerate(items):
        text = item.decode("latin1") if isinstance(item, bytes) else str(item)
        if text not in ("m", "f", "male", "female", "neutral"):
            raise _fail(source, f"{key}[{person}]", f"expected 'm' or 'f', got {text!r}")
        genders.append(text)
    return tuple(genders)


def threedpw_sequence_from_dict(data: dict, source: str = "3DPW sequence") -> ThreeDPWSequence:
    """Validate the dict of a 3DPW sequence pickle and convert it (see the module docstring).

    Raises `ThreeDPWFormatError` (a ValueError) naming `source` and the key for a missing key, a
    wrong shape or dtype, frame / person counts that disagree, or NaN / Inf in a per-sequence array
    (`cam_intrinsics`, `betas`, `betas_clothed`, `v_template_clothed`). Per-frame arrays (poses,
    trans, poses2d, cam_poses, jointPositions) may hold NaN / Inf in some frames (untracked frames);
    `frames_for_fitting` skips or blanks those.
    """
    if not isinstance(data, dict):
        raise ThreeDPWFormatError(f"{source}: a 3DPW sequence pickle holds a dict, got {type(data).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in data and not (key == "genders" and "gender" in data)]
    if missing:
        raise ThreeDPWFormatError(
            f"{source}: 3DPW key(s) {missing} missing; the file has keys {sorted(map(str, data))}"
        )
    name = data["sequence"]
    name = name.decode("latin1") if isinstance(name, bytes) else str(name)

    cam_poses = _as_float_array(data["cam_poses"], source, "cam_poses", finite=False)
    if cam_poses.ndim != 3 or cam_poses.shape[1:] != (4, 4) or cam_poses.shape[0] == 0:
        raise _fail(source, "cam_poses", f"expected shape (F, 4, 4) with F > 0, got {cam_poses.shape}")
    num_frames = cam_poses.shape[0]
    intrinsics = _as_float_array(data["cam_intrinsics"], source, "cam_intrinsics")
    if intrinsics.shape != (3, 3):
        raise _fail(source, "cam_intrinsics", f"expected shape (3, 3), got {intrinsics.shape}")

    frame_ids = np.asarray(data["img_frame_ids"])
    if frame_ids.shape != (num_frames,):
        raise _fail(source, "img_frame_ids",
                    f"expected shape ({num_frames},) (one per 'cam_poses' frame), got {frame_ids.shape}")
    if not np.issubdtype(frame_ids.dtype, np.integer):
        if not (np.issubdtype(frame_ids.dtype, np.floating) and np.all(frame_ids == np.round(frame_ids))):
            raise _fail(source, "img_frame_ids", f"expected integers, got dtype {frame_ids.dtype}")
    frame_ids = frame_ids.astype(np.int64)

    pose_items = _per_person(data, "poses", source)
    num_people = len(pose_items)
    poses = _stack_people(data, "poses", source, (3 * NUM_JOINTS,), num_people, num_frames)
    trans = _stack_people(data, "trans", source, (3,), num_people, num_frames)
    poses2d = _stack_people(data, "poses2d", source, (3, len(OPENPOSE18_NAMES)), num_people, num_frames)
    valid_raw = _stack_people(data, "campose_valid", source, (), num_people, num_frames)
    if not np.all((valid_raw == 0) | (valid_raw == 1)):  # NaN fails this too
        raise _fail(source, "campose_valid", "expected booleans (0 / 1)")

    sequence = ThreeDPWSequence(
        name=name,
        source=source,
        genders=_genders(data, source, num_people),
        poses=poses.reshape(num_people, num_frames, NUM_JOINTS, 3),
        betas=_betas(data, "betas", source, num_people),
        trans=trans,
        poses2d=np.ascontiguousarray(poses2d.transpose(0, 1, 3, 2)),
        campose_valid=valid_raw.astype(bool),
        cam_poses=cam_poses,
        intrinsics=intrinsics,
        frame_ids=frame_ids,
        betas_clothed=_betas(data, "betas_clothed", source, num_people) if "betas_clothed" in data else None,
        joint_positions=(
            _stack_people(data, "jointPositions", source, (3 * NUM_JOINTS,), num_people, num_frames)
            .reshape(num_people, num_frames, NUM_JOINTS, 3) if "jointPositions" in data else None
        ),
        v_template_clothed=_templates(data, source, num_people) if "v_template_clothed" in data else None,
        extras={key: value for key, value in data.items() if key not in REQUIRED_KEYS + _PARSED_OPTIONAL_KEYS},
    )
    return sequence


def _templates(data: dict, source: str, num_people: int) -> tuple[np.ndarray, ...]:
    items = _per_person(data, "v_template_clothed", source)
    if len(items) != num_people:
        raise _fail(source, "v_template_clothed", f"has {len(items)} entries, but 'poses' has {num_people} people")
    templates = []
    for person, item in enumerate(items):
        array = _as_float_array(item, source, f"v_template_clothed[{person}]")
        if array.ndim != 2 or array.shape[1] != 3:
            raise _fail(source, f"v_template_clothed[{person}]", f"expected shape (V, 3), got {array.shape}")
        templates.append(array)
    return tuple(templates)


def load_threedpw_sequence(path: str | os.PathLike) -> ThreeDPWSequence:
    """Read one 3DPW `sequenceFiles/<split>/<name>.pkl` safely (no code runs; see the module docstring).

    Raises FileNotFoundError; `ThreeDPWFormatError` (a ValueError) naming the file for anything that
    is not a readable pickle or not a 3DPW sequence (and the key for missing keys / wrong shapes /
    inconsistent frame counts); `jaxpose.bodies.UnsafePickleError` (a ValueError) if the pickle asks
    for a global outside the safe allow-list.
    """
    path = pathlib.Path(path)
    try:
        data = load_chumpy_safe(path)
    except MalformedPickleError as exc:
        detail = str(exc).removeprefix(f"{path}: ")
        raise ThreeDPWFormatError(f"{path}: not a readable 3DPW sequence pickle ({detail})") from None
    return threedpw_sequence_from_dict(data, str(path))


# ---------------------------------------------------------------------------------------------
# Cameras and fitting inputs


def _check_frame(sequence: ThreeDPWSequence, frame: int) -> int:
    if int(frame) != frame or not 0 <= int(frame) < sequence.num_frames:
        raise IndexError(f"{sequence.source}: frame must be in [0, {sequence.num_frames}), got {frame!r}")
    return int(frame)


def camera_for_frame(sequence: ThreeDPWSequence, frame: int, height: int, width: int) -> Camera:
    """The jaxpose perspective `Camera` of one frame (world -> camera, OpenCV axes, metres).

    Args:
      sequence: a loaded sequence.
      frame: index into its frames, 0..F-1 (not an image id).
      height, width: image size in pixels; 3DPW images are 1920 x 1080 (portrait: height 1920,
        width 1080) or 1080 x 1920 (landscape), depending on the sequence.

    Returns `make_camera(R, t, fx, fy, cx + 0.5, cy + 0.5)` with `[R | t] = cam_poses[frame][:3]` and
    fx, fy, cx, cy from `cam_intrinsics`: a world point X projects to `(K (R X + t))[:2] / z + 0.5`,
    i.e. 3DPW's projection moved to jaxpose's pixel-centre convention (`PIXEL_OFFSET`).
    Raises ValueError if the pose is not a rigid transform or K has skew / a non-standard last row.
    """
    frame = _check_frame(sequence, frame)
    pose, k = sequence.cam_poses[frame], sequence.intrinsics
    rotation, translation = pose[:3, :3], pose[:3, 3]
    where = f"{sequence.source}: 'cam_poses'[{frame}]"
    if not np.allclose(pose[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError(f"{where}: last row must be [0, 0, 0, 1], got {pose[3].tolist()}")
    if not (np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) and np.linalg.det(rotation) > 0):
        raise ValueError(f"{where}: the 3x3 block is not a rotation")
    if abs(k[0, 1]) > 1e-9 or not np.allclose(k[1, 0], 0.0) or not np.allclose(k[2], [0.0, 0.0, 1.0]):
        raise ValueError(
            f"{sequence.source}: 'cam_intrinsics' must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], got {k.tolist()}"
        )
    return make_camera(
        rotation, translation, fx=k[0, 0], fy=k[1, 1], cx=k[0, 2] + PIXEL_OFFSET, cy=k[1, 2] + PIXEL_OFFSET,
        height=int(height), width=int(width),
    )


def openpose18_to_names(keypoints: np.ndarray, names: Sequence[str] = COCO17_NAMES) -> np.ndarray:
    """Reorder OpenPose-18 keypoints (..., 18, 3) (x, y, confidence) into `names` order: (..., K, 3).

    Names with no OpenPose-18 counterpart (e.g. the foot keypoints of the default body's 23-row
    `coco_regressor`) get (0, 0, 0). Coordinates are copied unchanged (no pixel-convention shift).
    """
    keypoints = np.asarray(keypoints)
    if keypoints.shape[-2:] != (len(OPENPOSE18_NAMES), 3):
        raise ValueError(f"OpenPose-18 keypoints must have shape (..., 18, 3), got {keypoints.shape}")
    out = np.zeros(keypoints.shape[:-2] + (len(names), 3), keypoints.dtype)
    for row, name in enumerate(names):
        if name in OPENPOSE18_NAMES:
            out[..., row, :] = keypoints[..., OPENPOSE18_NAMES.index(name), :]
    return out


def _to_jaxpose_pixels(keypoints: np.ndarray) -> np.ndarray:
    """Shift detected keypoints (confidence > 0, finite) by PIXEL_OFFSET; zero the others entirely."""
    detected = (keypoints[..., 2:3] > 0) & np.all(np.isfinite(keypoints), axis=-1, keepdims=True)
    return np.where(detected, keypoints + np.asarray([PIXEL_OFFSET, PIXEL_OFFSET, 0.0]), 0.0)


def frames_for_fitting(
    sequence: ThreeDPWSequence,
    person: int,
    *,
    keypoint_names: Sequence[str] = COCO17_NAMES,
    valid_only: bool = True,
    image_size: tuple[int, int] | None = None,
) -> Iterator[FittingFrame]:
    """Yield one `FittingFrame` (keypoints, ground-truth BodyParams, camera) per frame of `person`.

    Args:
      sequence: a loaded sequence; person: 0..P-1.
      keypoint_names: order of the returned keypoints; default COCO-17 (the first 17 rows of the
        default body's `coco_regressor`; pass its full meta `coco_names` to get all 23 rows, the foot
        rows then having confidence 0).
      valid_only: skip frames whose `campose_valid` is False (as the 3DPW evaluation protocol does)
        or whose pose, translation or camera pose holds NaN / Inf.
      image_size: (height, width) to attach `camera_for_frame` to every frame (None where that
        frame's camera pose is not finite); None attaches none.

    Raises IndexError (at the call) for a person out of range.
    """
    if int(person) != person or not 0 <= int(person) < sequence.num_people:
        raise IndexError(f"{sequence.source}: person must be in [0, {sequence.num_people}), got {person!r}")
    return _fitting_frames(sequence, int(person), tuple(keypoint_names), bool(valid_only), image_size)


def _fitting_frames(sequence: ThreeDPWSequence, person: int, keypoint_names: tuple[str, ...], valid_only: bool,
                    image_size: tuple[int, int] | None) -> Iterator[FittingFrame]:  # fmt: skip
    keypoints = _to_jaxpose_pixels(openpose18_to_names(sequence.poses2d[person], keypoint_names)).astype(np.float32)
    betas = sequence.betas[person].astype(np.float32)
    finite = (
        np.all(np.isfinite(sequence.poses[person]), axis=(1, 2))
        & np.all(np.isfinite(sequence.trans[person]), axis=1)
        & np.all(np.isfinite(sequence.cam_poses), axis=(1, 2))
    )
    for frame in range(sequence.num_frames):
        valid = bool(sequence.campose_valid[person, frame])
        if valid_only and not (valid and finite[frame]):
            continue
        pose = sequence.poses[person, frame].astype(np.float32)
        params = {
            "global_orient": pose[0].copy(),
            "body_pose": pose[1:].copy(),
            "betas": betas.copy(),
            "transl": sequence.trans[person, frame].astype(np.float32),
        }
        camera_finite = bool(np.all(np.isfinite(sequence.cam_poses[frame])))
        camera = camera_for_frame(sequence, frame, *image_size) if image_size is not None and camera_finite else None
        yield FittingFrame(frame, int(sequence.frame_ids[frame]), keypoints[frame], params, valid, camera)
