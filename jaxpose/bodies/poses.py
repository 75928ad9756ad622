"""Procedural body poses for the 24-joint SMPL skeleton (no motion-capture corpus is available offline).

Everything here is host-side NumPy (the root-yaw composition uses `jaxpose.geometry.rotations` in
float64), deterministic per seed, and returns axis-angle poses in radians with shape (24, 3) (or
(N, 24, 3) / (T, 24, 3)), float64, in SMPL joint order (see `jaxpose.bodies.skeleton`). Ranges are
stated on the **axis-angle vector components** in degrees, in the SMPL / jaxpose npz frame (y up, +z
the body's forward, +x the body's left) with a T-pose rest:

  * positive x bends the spine forward and flexes the knee; negative x flexes the hip (lifts the
    thigh forward); the left elbow flexes with negative y, the right with positive y;
  * a left/right mirror maps a joint's (x, y, z) to (x, -y, -z) on the paired joint.

Presets:
  * `"npt"`  — the Neural Pose Transfer data generator's samplers (uniform draws; a "wide" sampler
    for pose indices < 400, a "straight" one for >= 400; table in `NPT_WIDE_DEG` / `NPT_STRAIGHT_DEG`).
  * `"wide"` — jaxpose's per-joint limit box `JOINT_LIMITS_DEG`. These limits are design defaults
    (not from a published source), chosen by visual inspection. Each component is drawn from a
    Gaussian centred on the rest value 0 with sigma = (hi - lo) / 4 truncated to [lo, hi], mixed
    with a uniform draw on [lo, hi] with probability `uniform_prob` (0.3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies.skeleton import (
    NUM_SMPL_JOINTS,
    SMPL_CENTRE_JOINTS,
    SMPL_JOINT_NAMES,
    SMPL_LEFT_RIGHT_PAIRS,
    SMPL_MIRROR_PERMUTATION,
)
from jaxpose.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

_J = {name: index for index, name in enumerate(SMPL_JOINT_NAMES)}


def _limits_table() -> np.ndarray:
    table = np.zeros((NUM_SMPL_JOINTS, 3, 2))

    def put(name: str, x, y, z):
        for axis, rng in enumerate((x, y, z)):
            lo, hi = (-rng, rng) if np.isscalar(rng) else rng
            table[_J[name], axis] = (lo, hi)

    for name in ("spine1", "spine2", "spine3"):
        put(name, (-10, 25), 15, 10)
    put("neck", (-20, 30), 30, 15)
    put("head", (-20, 20), 30, 15)
    put("left_hip", (-100, 20), 30, (-10, 45))
    put("right_hip", (-100, 20), 30, (-45, 10))
    for side in ("left", "right"):
        put(f"{side}_knee", (0, 130), 0, 0)
        put(f"{side}_ankle", (-20, 30), 10, 15)
        put(f"{side}_foot", (-10, 30), 0, 0)
        put(f"{side}_collar", 0, 10, 10)
        put(f"{side}_wrist", 30, 20, 60)
        put(f"{side}_hand", 10, 10, 10)
    put("left_shoulder", 45, (-90, 30), (-80, 40))
    put("right_shoulder", 45, (-30, 90), (-40, 80))
    put("left_elbow", 0, (-140, 0), 0)
    put("right_elbow", 0, (0, 140), 0)
    table.setflags(write=False)
    return table


# (24, 3, 2): [joint, axis-angle component x/y/z, (lo, hi)] in degrees for the "wide" preset. The root
# (joint 0) is the global orientation and has no limits here (its box is [0, 0]; see `root_yaw_deg`).
JOINT_LIMITS_DEG = _limits_table()


def _npt_table(straight: bool) -> dict[str, tuple]:
    """NPT's per-joint uniform ranges (degrees) for the independent draws."""
    wrist = 10 if straight else 20
    table = {
        "left_elbow": ((0, 0), (-60, 0), (0, 0)),
        "right_elbow": ((0, 0), (0, 60), (0, 0)),
        "left_wrist": ((-wrist, wrist),) * 3,
        "right_wrist": ((-wrist, wrist),) * 3,
        "left_hand": ((-5, 5), (0, 10), (-10, 0)),
        "right_hand": ((-5, 5), (-10, 0), (0, 10)),
        "left_hip": ((-90, 0), (0, 0), (0, 5) if straight else (0, 40)),
        "right_hip": ((-90, 0), (0, 0), (-5, 0) if straight else (-40, 0)),
        "left_knee": ((0, 10) if straight else (0, 100), (0, 0), (0, 0)),
        "right_knee": ((0, 10) if straight else (0, 100), (0, 0), (0, 0)),
        "left_ankle": ((-10, 20) if straight else (-10, 10), (-10, 10), (-1, 1)),
        "right_ankle": ((-10, 10), (-10, 10), (-1, 1)),
    }
    return table


NPT_WIDE_DEG = _npt_table(straight=False)
NPT_STRAIGHT_DEG = _npt_table(straight=True)
NPT_NUM_WIDE_POSES = 400


def _npt_sample(rng: np.random.Generator, straight: bool) -> np.ndarray:
    """One NPT pose (24, 3) in radians, drawn from `rng` in a fixed order."""
    pose = np.zeros((NUM_SMPL_JOINTS, 3))
    # Collar and shoulder of one side share a single (0, y, z) draw, y, z in +-30 degrees.
    for collar, shoulder in (("left_collar", "left_shoulder"), ("right_collar", "right_shoulder")):
        yz = rng.uniform(-30.0, 30.0, size=2)
        pose[_J[collar], 1:] = yz
        pose[_J[shoulder], 1:] = yz
    for name, ranges in _npt_table(straight).items():
        lo, hi = np.asarray(ranges, float).T
        pose[_J[name]] = rng.uniform(lo, hi)
    pose[[_J["neck"], _J["head"]]] = rng.uniform(-1.0, 1.0)  # one shared value on all 6 components
    pose[[_J["spine1"], _J["spine2"], _J["spine3"]]] = rng.uniform(-1.0, 1.0)  # another, on 9
    pose[0] = rng.uniform(-2.0, 2.0, size=3)
    return np.deg2rad(pose)


def npt_pose(pose_index: int) -> np.ndarray:
    """NPT's pose number `pose_index` as (24, 3) axis-angle radians (float64).

    Uses the "wide" sampler for `pose_index < 400` and the "straight" one (hips and knees almost
    straight) from 400 on, exactly NPT's ranges (see `NPT_WIDE_DEG` / `NPT_STRAIGHT_DEG`). The pose
    depends only on the index, so pose j is the same for every identity (what makes ground-truth
    transfer triples exist). NPT seeded Python's `random` with j; that Mersenne-Twister stream and
    NPT's exact call order cannot be reproduced bit-for-bit, so this draws from
    `np.random.default_rng(pose_index)` instead: same distribution, different individual poses.
    """
    if isinstance(pose_index, bool) or not isinstance(pose_index, (int, np.integer)) or pose_index < 0:
        raise ValueError(f"pose_index must be a non-negative integer, got {pose_index!r}")
    return _npt_sample(np.random.default_rng(int(pose_index)), straight=pose_index >= NPT_NUM_WIDE_POSES)


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Left/right mirror image of (..., 24, 3) axis-angle poses.

    Reflecting the body through its mid-plane (x -> -x) turns rotation vector (x, y, z) into
    (x, -y, -z) and swaps every left joint with its right partner. `mirror_pose` is an involution.
    """
    pose = _check_pose(pose, "pose")
    mirrored = pose[..., list(SMPL_MIRROR_PERMUTATION), :]
    return mirrored * np.asarray([1.0, -1.0, -1.0])


def symmetrize_pose(pose: np.ndarray) -> np.ndarray:
    """The mirror-symmetric pose that keeps the left side and the mid-line flexion of `pose`.

    Right joints become the mirror of their left partners; mid-line joints (root, spine, neck,
    head) keep only their x component (their y/z would break the symmetry).
    Returns p with mirror_pose(p) == p.
    """
    pose = np.array(_check_pose(pose, "pose"), dtype=float)
    for left, right in SMPL_LEFT_RIGHT_PAIRS:
        pose[..., right, :] = pose[..., left, :] * np.asarray([1.0, -1.0, -1.0])
    pose[..., list(SMPL_CENTRE_JOINTS), 1:] = 0.0
    return pose


def _check_pose(pose, name: str) -> np.ndarray:
    pose = np.asarray(pose)
    if pose.ndim < 2 or pose.shape[-2:] != (NUM_SMPL_JOINTS, 3):
        raise ValueError(f"{name} must have shape (..., {NUM_SMPL_JOINTS}, 3) axis-angle, got {pose.shape}")
    return pose


def _as_generator(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool) and rng_or_seed >= 0:
        return np.random.default_rng(int(rng_or_seed))
    if isinstance(rng_or_seed, (tuple, list)) and all(isinstance(s, (int, np.integer)) and s >= 0 for s in rng_or_seed):
        return np.random.default_rng([int(s) for s in rng_or_seed])
    raise ValueError(f"expected a numpy Generator, a non-negative int seed or a tuple of them, got {rng_or_seed!r}")


def _truncated_gaussian_or_uniform(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, uniform_prob: float) -> np.ndarray:
    """Per component: uniform on [lo, hi] with prob `uniform_prob`, else N(0, ((hi-lo)/4)^2) truncated to [lo, hi]."""
    width = hi - lo
    sigma = np.where(width > 0, width / 4.0, 1.0)
    centre = np.clip(0.0, lo, hi)
    gaussian = centre + sigma * rng.standard_normal(lo.shape)
    for _ in range(64):  # rejection; acceptance >= ~0.5 per round since the centre lies inside the box
        outside = (gaussian < lo) | (gaussian > hi)
        if not outside.any():
            break
        gaussian = np.where(outside, centre + sigma * rng.standard_normal(lo.shape), gaussian)
    gaussian = np.clip(gaussian, lo, hi)
    uniform = rng.uniform(lo, hi)
    use_uniform = rng.random(lo.shape) < uniform_prob
    return np.where(width > 0, np.where(use_uniform, uniform, gaussian), lo)


def _yaw(rng: np.random.Generator, root_yaw_deg: float, shape: tuple[int, ...]) -> np.ndarray:
    yaw = np.zeros(shape + (3,))
    if root_yaw_deg:
        yaw[..., 1] = np.deg2rad(rng.uniform(-root_yaw_deg, root_yaw_deg, size=shape))
    return yaw


_MODES = ("asymmetric", "symmetric", "mirrored")


def sample_pose(
    rng_or_seed,
    preset: str = "wide",
    *,
    num_samples: int | None = None,
    mode: str = "asymmetric",
    root_yaw_deg: float = 0.0,
    uniform_prob: float = 0.3,
    npt_sampler: str = "wide",
) -> np.ndarray:
    """Random body poses, (24, 3) or (num_samples, 24, 3) axis-angle radians, float64.

    Args:
      rng_or_seed: a `np.random.Generator`, or a non-negative int (or tuple of ints) seed.
      preset: "wide" (the `JOINT_LIMITS_DEG` box, truncated Gaussian + uniform mixture) or "npt"
        (NPT's uniform sampler; `npt_sampler` picks its "wide" or "straight" variant).
      num_samples: None for one pose, else the number of poses.
      mode: "asymmetric" (every joint independent), "symmetric" (`symmetrize_pose` of the draw:
        right = mirror of left, mid-line y/z zeroed) or "mirrored" (`mirror_pose` of exactly the
        pose "asymmetric" gives for the same seed — the pair forms a left/right augmentation).
      root_yaw_deg: if > 0, the root gets a rotation about the vertical (y) axis drawn uniformly in
        +-root_yaw_deg, composed on top of the preset's own root rotation.
      uniform_prob: mixture weight of the uniform component ("wide" only).
    """
    if preset not in ("wide", "npt"):
        raise ValueError(f"preset must be 'wide' or 'npt', got {preset!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if npt_sampler not in ("wide", "straight"):
        raise ValueError(f"npt_sampler must be 'wide' or 'straight', got {npt_sampler!r}")
    if not 0.0 <= uniform_prob <= 1.0:
        raise ValueError(f"uniform_prob must be in [0, 1], got {uniform_prob}")
    if root_yaw_deg < 0 or not np.isfinite(root_yaw_deg):
        raise ValueError(f"root_yaw_deg must be a finite non-negative angle, got {root_yaw_deg}")
    if num_samples is not None and (not isinstance(num_samples, (int, np.integer)) or num_samples < 0):
        raise ValueError(f"num_samples must be None or a non-negative int, got {num_samples!r}")
    rng = _as_generator(rng_or_seed)
    shape = () if num_samples is None else (int(num_samples),)
    if preset == "wide":
        limits = np.deg2rad(JOINT_LIMITS_DEG)
        lo = np.broadcast_to(limits[..., 0], shape + limits.shape[:2])
        hi = np.broadcast_to(limits[..., 1], shape + limits.shape[:2])
        pose = _truncated_gaussian_or_uniform(rng, lo, hi, uniform_prob)
    else:
        flat = [_npt_sample(rng, straight=npt_sampler == "straight") for _ in range(int(np.prod(shape, dtype=int)))]
        pose = np.stack(flat).reshape(shape + (NUM_SMPL_JOINTS, 3)) if flat else np.zeros(shape + (NUM_SMPL_JOINTS, 3))
    yaw = _yaw(rng, root_yaw_deg, shape)
    if mode == "symmetric":  # symmetric in the body's own frame; the yaw only turns the whole body
        pose = symmetrize_pose(pose)
    if root_yaw_deg:
        root = pose[..., 0, :]
        # Compose with the preset's root rotation; where that is exactly zero keep the yaw exact.
        at_rest = np.all(root == 0, axis=-1, keepdims=True)
        with jax.enable_x64(True):  # float64, like the rest of this module; local, not global state
            rotation = axis_angle_to_matrix(jnp.asarray(yaw, jnp.float64)) @ axis_angle_to_matrix(jnp.asarray(root, jnp.float64))
            composed = np.asarray(matrix_to_axis_angle(rotation))
        pose[..., 0, :] = np.where(at_rest, yaw, composed)
    if mode == "mirrored":
        pose = mirror_pose(pose)
    return pose


# ---------------------------------------------------------------------------------------------
# Motion sequences.

MOTION_KINDS = ("walk", "arm_raise", "squat", "random_walk")


def _smooth01(phase: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0 over one period: (1 - cos(2 pi phase)) / 2."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * phase)


def _arms_down(frames: int, down_deg: float) -> np.ndarray:
    pose = np.zeros((frames, NUM_SMPL_JOINTS, 3))
    pose[:, _J["left_shoulder"], 2] = -down_deg
    pose[:, _J["right_shoulder"], 2] = down_deg
    return pose


def _walk(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    period = rng.uniform(24, 40)
    hip_amp, knee_amp = rng.uniform(18, 28), rng.uniform(35, 60)
    knee_phase, arm_amp = rng.uniform(0.6, 1.2), rng.uniform(10, 25)
    arm_down = rng.uniform(60, 75)
    start = rng.uniform(0, 2 * np.pi)
    wt = 2 * np.pi * t / period + start
    pose = np.zeros((len(t), NUM_SMPL_JOINTS, 3))
    for side, offset in (("left", 0.0), ("right", np.pi)):
        swing = np.sin(wt + offset)
        # Negative x = thigh forward; the -0.35 A offset keeps extension inside the 20-degree limit.
        pose[:, _J[f"{side}_hip"], 0] = -hip_amp * (swing + 0.35)
        pose[:, _J[f"{side}_knee"], 0] = knee_amp * np.maximum(0.0, np.sin(wt + offset + knee_phase))
        pose[:, _J[f"{side}_ankle"], 0] = 8.0 * np.sin(wt + offset + 0.5)
        # The arm hangs `arm_down` degrees below the T-pose and counter-swings with the opposite
        # leg by angle s about x (s < 0 = forward). The twist-free rotation taking the T-pose arm
        # (+x) there is arm_down * (0, sin s, -cos s) for the left arm; mirrored for the right.
        arm_swing = np.deg2rad(arm_amp) * np.sin(wt + offset)
        sign = 1.0 if side == "left" else -1.0
        pose[:, _J[f"{side}_shoulder"], 1] = sign * arm_down * np.sin(arm_swing)
        pose[:, _J[f"{side}_shoulder"], 2] = -sign * arm_down * np.cos(arm_swing)
        pose[:, _J[f"{side}_elbow"], 1] = -sign * rng.uniform(10, 35)
    pose[:, _J["spine2"], 1] = 3.0 * np.sin(wt)  # slight torso counter-rotation
    return np.deg2rad(pose)


def _arm_raise(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    period = rng.uniform(40, 90)
    s = _smooth01(t / period + rng.uniform(0, 1))
    frontal = rng.random() < 0.5
    arms = ("left", "right") if rng.random() < 0.6 else (("left",) if rng.random() < 0.5 else ("right",))
    down = rng.uniform(65, 78)
    pose = _arms_down(len(t), down)
    top = rng.uniform(20, 38)
    for side in arms:
        sign = 1.0 if side == "left" else -1.0  # mirror: y, z flip sign on the right
        j = _J[f"{side}_shoulder"]
        if frontal:  # arm forward then up: lower to the side, then swing forward about x
            pose[:, j, 2] = -sign * down * (1 - s)
            pose[:, j, 1] = -sign * 85.0 * s
        else:  # lateral raise in the coronal plane
            pose[:, j, 2] = sign * (-down + (down + top) * s)
        pose[:, _J[f"{side}_collar"], 2] = sign * 8.0 * s
    return np.deg2rad(pose)


def _squat(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    period = rng.uniform(40, 80)
    depth = rng.uniform(40, 90)
    s = _smooth01(t / period + rng.uniform(0, 1))
    pose = np.zeros((len(t), NUM_SMPL_JOINTS, 3))
    for side in ("left", "right"):
        pose[:, _J[f"{side}_hip"], 0] = -depth * s
        pose[:, _J[f"{side}_knee"], 0] = min(2.0 * depth, 128.0) * s
        # Keep the feet roughly flat: cancel the shin's forward tilt within the ankle's range.
        pose[:, _J[f"{side}_ankle"], 0] = -np.minimum(depth * s, 20.0)
    pose[:, _J["spine1"], 0] = 0.25 * depth * s
    pose[:, _J["spine2"], 0] = 0.1 * depth * s
    pose[:, _J["left_shoulder"], 1] = -80.0 * s  # arms forward for balance
    pose[:, _J["right_shoulder"], 1] = 80.0 * s
    return np.deg2rad(pose)


def _random_walk(rng: np.random.Generator, frames: int, step_deg: float, smoothing_frames: float) -> np.ndarray:
    limits = np.deg2rad(JOINT_LIMITS_DEG)
    lo, hi = limits[..., 0], limits[..., 1]
    width = hi - lo
    state = sample_pose(rng, "wide")
    path = np.empty((frames, NUM_SMPL_JOINTS, 3))
    step = np.deg2rad(step_deg) * width / (np.pi / 2)  # step_deg for a 90-degree range, proportional otherwise
    for f in range(frames):
        path[f] = state
        state = state + step * rng.standard_normal(state.shape)
        # Reflect at the box walls (the box is the `wide` limits), then clip for steps > width.
        state = np.where(state > hi, 2 * hi - state, state)
        state = np.where(state < lo, 2 * lo - state, state)
        state = np.clip(state, lo, hi)
    if smoothing_frames > 0 and frames > 1:
        radius = int(np.ceil(3 * smoothing_frames))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / smoothing_frames) ** 2)
        kernel /= kernel.sum()
        padded = np.concatenate([np.repeat(path[:1], radius, 0), path, np.repeat(path[-1:], radius, 0)])
        # A convex combination of points in the box stays in the box.
        path = np.einsum("k,tkjc->tjc", kernel, np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0).transpose(0, 3, 1, 2))
        path = np.clip(path, lo, hi)  # only removes float round-off
    return path


def motion_sequence(
    kind: str,
    num_frames: int,
    seed: int,
    sequence_id: int = 0,
    *,
    step_deg: float = 4.0,
    smoothing_frames: float = 4.0,
) -> np.ndarray:
    """A deterministic pose sequence (num_frames, 24, 3), axis-angle radians, float64.

    kind:
      "walk"        sinusoidal gait: hip x = -A sin(wt), knee x = B max(0, sin(wt + phi)), arms
                    lowered and counter-swinging, legs in antiphase.
      "arm_raise"   one or both arms raised laterally or frontally and lowered again.
      "squat"       hips, knees and ankles flex together, torso leans forward, arms reach forward.
      "random_walk" a Gaussian random walk reflected inside the `wide` box (per-frame step
                    `step_deg` for a component with a 90-degree range, proportional to the range
                    otherwise; fixed components stay 0), smoothed with a Gaussian of
                    `smoothing_frames` frames; it stays inside `JOINT_LIMITS_DEG`.
    Amplitudes, periods and phases are drawn from `np.random.default_rng([seed, sequence_id])`, so
    every (seed, sequence_id) gives one reproducible motion; frames are at an implied 30 fps.
    """
    if kind not in MOTION_KINDS:
        raise ValueError(f"kind must be one of {MOTION_KINDS}, got {kind!r}")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    rng = _as_generator((seed, sequence_id))
    t = np.arange(num_frames, dtype=float)
    if kind == "walk":
        return _walk(rng, t)
    if kind == "arm_raise":
        return _arm_raise(rng, t)
    if kind == "squat":
        return _squat(rng, t)
    return _random_walk(rng, int(num_frames), step_deg, smoothing_frames)


__all__ = [
    "JOINT_LIMITS_DEG",
    "MOTION_KINDS",
    "NPT_NUM_WIDE_POSES",
    "NPT_STRAIGHT_DEG",
    "NPT_WIDE_DEG",
    "mirror_pose",
    "motion_sequence",
    "npt_pose",
    "sample_pose",
    "symmetrize_pose",
]
