"""Synthetic clothed subjects with pose-dependent, non-linear cloth, written in the CAPE layout.

The open substitute for CAPE (docs/skinning.md, "Synthetic clothed subjects"). A subject is the free
ANNY body (`default_body`) with subject-specific betas plus a garment: a per-vertex displacement field D(theta) (V, 3), in metres, in
the canonical (zero-pose) space, added to the minimal template before linear blend skinning:

    v_cano(theta)  = minimal + D(theta)                      (CAPE's v_cano: zero pose, posed cloth)
    v_posed(theta) = LBS(v_cano(theta); weights, joints, theta) + transl

D(theta) = D_static + D_pose(theta). D_pose is a smooth non-linear function of joint angles (tanh^2
of hip flexion, a smoothed |difference| of the two hips, softplus of abduction, sin^2 of elbow/knee
bend times a spatial ripple), partly coupling the two legs, so no per-vertex LBS with any weights and
any rest position can reproduce v_posed. The total offset is soft-clamped to `MAX_OFFSET_M`; offsets
are along rest normals with the inner thigh faces suppressed so the legs do not grow into each other.

Garments (`GARMENTS`):
  skirt        waist-to-mid-thigh flare; hem opens with hip flexion and leg spread; knee folds.
  shirt        long loose shirt (chest to upper thigh): hem flares with hip flexion, sides billow when
               the arms rise; sleeve folds at the elbows.
  dress        waist-to-below-knee; as skirt but longer, plus elbow and knee folds.
  skirtstatic  the skirt's zero-pose shape only: the "pure LBS" control (INS should match LBS there).

Motions: train = walk, squat, armraise, randomA, randomB; test (held-out) = kick (a motion type never
seen in training), walkB (new gait parameters), randomC; ood = independent poses drawn uniformly from
the whole `wide` joint box with +-45 degree root yaw. Every motion is deterministic from (seed,
subject, sequence). The canonical pose of SNARF-style models is `jaxpose.bodies.star_pose()`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import pickle
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies import default_body, save_body_npz, shaped_rest, star_pose
from jaxpose.bodies.poses import motion_sequence, sample_pose
from jaxpose.bodies.skeleton import SMPL_JOINT_NAMES
from jaxpose.geometry.mesh import vertex_normals
from jaxpose.io.atomic import atomic_open, atomic_save_npz, atomic_write_bytes, atomic_write_text
from jaxpose.skinning.outfits import OUTFITS, coverage, make_outfit_subject
from jaxpose.skinning.posing import lbs_vertices

FORMAT_VERSION = 1
MAX_OFFSET_M = 0.05
_J = {name: index for index, name in enumerate(SMPL_JOINT_NAMES)}

TRAIN_MOTIONS = ("walk", "squat", "armraise", "randomA", "randomB")
TEST_MOTIONS = ("kick", "walkB", "randomC")
OOD_MOTIONS = ("ood",)
ALL_MOTIONS = TRAIN_MOTIONS + TEST_MOTIONS + OOD_MOTIONS
# Motion name -> (kind for `motion_sequence`, or our own "kick"/"ood").
_MOTION_KIND = {
    "walk": "walk", "squat": "squat", "armraise": "arm_raise", "randomA": "random_walk",
    "randomB": "random_walk", "kick": "kick", "walkB": "walk", "randomC": "random_walk", "ood": "ood",
}
_BASE_FRAMES = 120  # motions are built at 30 fps over 4 s and subsampled to `frames_per_motion`


@dataclasses.dataclass(frozen=True)
class Garment:
    """Parameters of one garment's displacement field (lengths in metres, angles implicit in radians)."""

    name: str
    region: str  # "skirt" (waist down, legs) or "shirt" (chest down, torso + upper legs)
    hem: str  # "midthigh" | "belowknee" | "upperthigh"
    static_flare: float  # zero-pose outward offset at the hem
    pose_dependent: bool
    flex_flare: float = 0.0  # hem opening per tanh^2(hip flexion / 0.45)
    spread_flare: float = 0.0  # front/back panel push per smoothed |left - right hip flexion|
    abduction_flare: float = 0.0  # outer-side push per softplus(abduction)
    arm_billow: float = 0.0  # side billow per raised arm (shirt)
    swing: float = 0.0  # hem lag opposite to the thigh's swing (canonical -z for forward flexion)
    folds: tuple[str, ...] = ()  # subset of ("elbow", "knee")
    fold_amplitude: float = 0.018


GARMENTS = {
    "skirt": Garment("skirt", "skirt", "midthigh", 0.012, True, flex_flare=0.03, spread_flare=0.025, abduction_flare=0.02, swing=0.02, folds=("knee",)),
    "shirt": Garment("shirt", "shirt", "upperthigh", 0.01, True, flex_flare=0.025, spread_flare=0.015, arm_billow=0.025, swing=0.012, folds=("elbow",)),
    "dress": Garment("dress", "skirt", "belowknee", 0.015, True, flex_flare=0.035, spread_flare=0.03, abduction_flare=0.02, swing=0.025, folds=("elbow", "knee")),
    "skirtstatic": Garment("skirtstatic", "skirt", "midthigh", 0.012, False),
}
DEFAULT_SUBJECTS = {"synth01": "skirt", "synth02": "shirt", "synth03": "dress", "synth04": "skirtstatic"}


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _softplus(x, sharpness=4.0):
    return np.logaddexp(0.0, sharpness * x) / sharpness


@dataclasses.dataclass(frozen=True)
class GarmentField:
    """Rest-space quantities a garment needs, precomputed once per subject (all (V,) or (V, 3))."""

    garment: Garment
    profile: np.ndarray  # 0 at the top edge, rising to 1 at the hem, fading below it
    direction: np.ndarray  # unit horizontal outward direction, inner thigh suppressed (V, 3)
    side: np.ndarray  # +1 left (x > 0), -1 right
    midline: np.ndarray  # ~1 near x = 0 (front/back panels between the legs)
    outer: np.ndarray  # ~1 on the outer side of the hips/thighs
    front: np.ndarray  # max(0, n_z)
    folds: tuple[tuple[str, str, np.ndarray], ...]  # (side, joint kind, per-vertex ripple weight)
    normals: np.ndarray


def garment_field(garment: Garment, minimal: np.ndarray, joints: np.ndarray, weights: np.ndarray, faces: np.ndarray) -> GarmentField:
    """Precompute the rest-space masks of `garment` on a subject (minimal (V, 3), joints (24, 3), weights (V, 24))."""
    with jax.enable_x64(True):  # float64 normals: the garment masks are host-side float64
        normals = np.asarray(vertex_normals(jnp.asarray(minimal, jnp.float64), np.asarray(faces)))
    y, x = minimal[:, 1].astype(np.float64), minimal[:, 0].astype(np.float64)
    part = np.argmax(weights, axis=1)
    hip_y = 0.5 * (joints[_J["left_hip"], 1] + joints[_J["right_hip"], 1])
    knee_y = 0.5 * (joints[_J["left_knee"], 1] + joints[_J["right_knee"], 1])
    if garment.region == "skirt":
        top = joints[_J["pelvis"], 1] + 0.06
        allowed = [_J[n] for n in ("pelvis", "spine1", "left_hip", "right_hip", "left_knee", "right_knee")]
    else:
        top = joints[_J["spine3"], 1]
        allowed = [_J[n] for n in ("pelvis", "spine1", "spine2", "spine3", "left_hip", "right_hip", "left_knee", "right_knee")]
    hem = {"midthigh": hip_y + 0.5 * (knee_y - hip_y), "belowknee": knee_y - 0.08, "upperthigh": hip_y + 0.2 * (knee_y - hip_y)}[garment.hem]
    in_part = np.isin(part, allowed).astype(np.float64)
    down = np.clip((top - y) / (top - hem), 0.0, None)
    profile = np.where(down <= 1.0, down**1.5, np.exp(-(((hem - y) / 0.03) ** 2))) * (y <= top) * in_part
    horizontal = normals * np.asarray([1.0, 0.0, 1.0])
    horizontal /= np.maximum(np.linalg.norm(horizontal, axis=1, keepdims=True), 1e-6)
    side = np.where(x >= 0, 1.0, -1.0)
    below_crotch = _smoothstep(hip_y - y, 0.0, 0.08)
    inward = np.maximum(0.0, -horizontal[:, 0] * side)  # horizontal normal pointing to the mid-plane
    suppress = 1.0 - below_crotch * _smoothstep(inward, 0.2, 0.6)
    direction = horizontal * suppress[:, None]
    hip_half_width = abs(joints[_J["left_hip"], 0] - joints[_J["right_hip"], 0]) / 2
    midline = np.exp(-((x / (0.8 * hip_half_width)) ** 2))
    outer = _smoothstep(horizontal[:, 0] * side, 0.3, 0.9)
    folds = []
    for kind in garment.folds:
        for s in ("left", "right"):
            j, c = (f"{s}_elbow", f"{s}_wrist") if kind == "elbow" else (f"{s}_knee", f"{s}_ankle")
            parent = f"{s}_shoulder" if kind == "elbow" else f"{s}_hip"
            axis = joints[_J[c]] - joints[_J[j]]
            axis = axis / np.linalg.norm(axis)
            rel = minimal - joints[_J[j]]
            along = rel @ axis
            radial = np.linalg.norm(rel - along[:, None] * axis[None], axis=1)
            # Cloth bunches on the compression side: front of the elbow (+z), back of the knee (-z).
            compress = np.asarray([0.0, 0.0, 1.0 if kind == "elbow" else -1.0])
            side_weight = 0.3 + 0.7 * np.maximum(0.0, normals @ compress)
            limb = np.isin(part, [_J[parent], _J[j], _J[c]]).astype(np.float64)
            ripple = (0.5 + 0.5 * np.sin(2 * np.pi * along / 0.035)) * np.exp(-((along / 0.07) ** 2))
            folds.append((s, kind, ripple * side_weight * limb * (radial < 0.15)))
    return GarmentField(garment, profile, direction, side, midline, outer, np.maximum(0.0, normals[:, 2]), tuple(folds), normals)


def garment_offsets(field: GarmentField, pose: np.ndarray) -> np.ndarray:
    """Canonical-space cloth displacement D(pose) (V, 3) metres for one pose (24, 3) axis-angle radians."""
    g = field.garment
    pose = np.asarray(pose, np.float64).reshape(24, 3)
    magnitude = g.static_flare * field.profile
    folds = np.zeros_like(magnitude)
    if g.pose_dependent:
        flex = {s: -pose[_J[f"{s}_hip"], 0] for s in ("left", "right")}  # > 0 = thigh forward
        abduction = {"left": pose[_J["left_hip"], 2], "right": -pose[_J["right_hip"], 2]}  # > 0 = leg out
        own = lambda table: np.where(field.side > 0, table["left"], table["right"])  # noqa: E731
        # Saturating and even in the angle: cloth opens whether the thigh swings forward or back.
        flex_drive = np.tanh(own(flex) / 0.45) ** 2 + 0.3 * np.tanh(np.maximum(flex["left"], flex["right"]) / 0.6) ** 2
        spread = np.sqrt((flex["left"] - flex["right"]) ** 2 + 0.01) - 0.1
        magnitude = magnitude + field.profile * (
            g.flex_flare * flex_drive * (0.4 + 0.6 * field.front)
            + g.spread_flare * spread * field.midline
            + g.abduction_flare * _softplus(own(abduction) - 0.1) * field.outer
        )
        if g.arm_billow:
            # Lateral arm raise: left shoulder z goes from about -70 degrees (arm down) to +40 (up).
            raise_l = _smoothstep(pose[_J["left_shoulder"], 2], -1.0, 0.6)
            raise_r = _smoothstep(-pose[_J["right_shoulder"], 2], -1.0, 0.6)
            lateral = np.abs(field.direction[:, 0])
            magnitude = magnitude + g.arm_billow * np.where(field.side > 0, raise_l, raise_r) * lateral * np.sqrt(field.profile)
        for s, kind, ripple in field.folds:
            joint = _J[f"{s}_elbow"] if kind == "elbow" else _J[f"{s}_knee"]
            bend = np.linalg.norm(pose[joint])
            folds = folds + g.fold_amplitude * np.sin(np.minimum(bend, np.pi / 2)) ** 2 * ripple
    offsets = magnitude[:, None] * field.direction + folds[:, None] * field.normals
    if g.pose_dependent and g.swing:
        lag = -g.swing * np.tanh(own(flex) / 0.5) * field.profile**2
        offsets = offsets + lag[:, None] * np.asarray([0.0, 0.0, 1.0])
    length = np.linalg.norm(offsets, axis=1, keepdims=True)
    safe = np.maximum(length, 1e-12)
    return offsets * (MAX_OFFSET_M * np.tanh(safe / MAX_OFFSET_M) / safe)


def _stable_id(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _kick(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Alternating front kicks: hip flexes up to 55-80 degrees with the knee extending at the top."""
    period = rng.uniform(40, 60)
    height = rng.uniform(55, 80)
    phase = (t / period + rng.uniform(0, 1)) % 1.0
    pose = np.zeros((len(t), 24, 3))
    for side, start in (("left", 0.0), ("right", 0.5)):
        local = np.clip((phase - start) * 2.0, 0.0, 1.0)
        lift = 0.5 - 0.5 * np.cos(2 * np.pi * local)
        pose[:, _J[f"{side}_hip"], 0] = -height * lift
        pose[:, _J[f"{side}_knee"], 0] = 70.0 * np.sin(np.pi * local) ** 2 * (1 - lift) + 10.0 * lift
    pose[:, _J["left_shoulder"], 2] = -rng.uniform(40, 60)
    pose[:, _J["right_shoulder"], 2] = rng.uniform(40, 60)
    return np.deg2rad(pose)


def motion_poses(motion: str, num_frames: int, seed: int, subject: str) -> tuple[np.ndarray, np.ndarray]:
    """Poses (T, 24, 3) radians and translations (T, 3) metres of one named motion, deterministic in (seed, subject, motion)."""
    if motion not in _MOTION_KIND:
        raise ValueError(f"unknown motion {motion!r}; known: {ALL_MOTIONS}")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    index = ALL_MOTIONS.index(motion)
    rng = np.random.default_rng([seed, _stable_id(subject), index])
    kind = _MOTION_KIND[motion]
    base = max(_BASE_FRAMES, int(num_frames))
    if kind == "ood":
        pose = sample_pose(rng, "wide", num_samples=int(num_frames), uniform_prob=1.0, root_yaw_deg=45.0)
        transl = np.zeros((num_frames, 3))
        return pose.astype(np.float32), transl.astype(np.float32)
    if kind == "kick":
        full = _kick(rng, np.arange(base, dtype=float))
    else:
        full = motion_sequence(kind, base, int(rng.integers(2**31)), index)
    t = np.arange(base, dtype=float)
    yaw = np.deg2rad(rng.uniform(10, 25)) * np.sin(2 * np.pi * t / rng.uniform(80, 160) + rng.uniform(0, 2 * np.pi))
    full = np.array(full)
    full[:, 0, 1] += yaw  # all motions above leave the root at zero: a pure yaw
    speed = 0.04 if kind == "walk" else 0.0  # metres per base frame (walks move forward)
    transl = np.stack([0.02 * np.sin(t / 17.0), 0.01 * np.sin(t / 5.0), speed * t], axis=1)
    pick = np.round(np.linspace(0, base - 1, num_frames)).astype(int)
    return full[pick].astype(np.float32), transl[pick].astype(np.float32)


def subject_betas(seed: int, subject: str, num_betas: int) -> np.ndarray:
    """Subject shape (num_betas,) ~ N(0, 0.7^2), deterministic in (seed, subject)."""
    return (0.7 * np.random.default_rng([seed, _stable_id(subject), 999]).standard_normal(num_betas)).astype(np.float32)


def boundary_edge_counts(faces: np.ndarray) -> tuple[int, int]:
    """(boundary edges used by one face, non-manifold edges used by > 2 faces) of a triangle mesh."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum())


@dataclasses.dataclass(frozen=True)
class ClothedSubject:
    """A subject ready to generate frames: body model posing its minimal template, and its garment field."""

    name: str
    garment: Garment
    betas: np.ndarray
    body: object  # BodyModel whose v_template is the minimal template (betas 0)
    field: GarmentField

    def frames(self, pose: np.ndarray, transl: np.ndarray, *, noise_key=()) -> tuple[np.ndarray, np.ndarray]:
        """v_cano (T, V, 3) and v_posed (T, V, 3) for poses (T, 24, 3) and transl (T, 3) (noiseless: `noise_key` is unused)."""
        del noise_key
        minimal = np.asarray(self.body.v_template, np.float64)
        v_cano = np.stack([minimal + garment_offsets(self.field, p) for p in pose]).astype(np.float32)
        posed = lbs_vertices(v_cano, np.asarray(self.body.weights), np.asarray(self.body.j_template), pose)
        return v_cano, (posed + transl[:, None, :]).astype(np.float32)


def make_subject(name: str, garment: str | Garment, *, resolution: str = "low", seed: int = 0) -> ClothedSubject:
    """Build one synthetic subject on the default body at `resolution`."""
    garment = GARMENTS[garment] if isinstance(garment, str) else garment
    if not isinstance(garment, Garment):
        raise ValueError(f"garment must be one of {sorted(GARMENTS)} or a Garment, got {garment!r}")
    base = default_body(resolution)
    betas = subject_betas(seed, name, base.num_betas)
    minimal, joints = (np.asarray(a, np.float32) for a in shaped_rest(base, jnp.asarray(betas)))
    body = dataclasses.replace(
        base,
        v_template=minimal,
        j_template=joints,
        shapedirs=np.zeros_like(np.asarray(base.shapedirs)),
        j_shapedirs=np.zeros_like(np.asarray(base.j_shapedirs)),
        meta=json.dumps({"source": "jaxpose.skinning.clothed", "base": resolution, "betas": betas.tolist()}),
    )
    faces = np.asarray(base.faces)
    field = garment_field(garment, minimal, joints, np.asarray(base.weights), faces)
    return ClothedSubject(name, garment, betas, body, field)


def _config(resolution, subjects, frames_per_motion, ood_frames, seed) -> dict:
    return {
        "version": FORMAT_VERSION,
        "resolution": resolution,
        "subjects": dict(subjects),
        # Garment parameters are part of the identity of the data: changing one invalidates a dataset.
        "garments": {g: json.loads(json.dumps(dataclasses.asdict(GARMENTS.get(g) or OUTFITS[g]))) for g in sorted(set(subjects.values()))},
        "frames_per_motion": int(frames_per_motion),
        "ood_frames": int(ood_frames),
        "seed": int(seed),
    }


def generate_clothed_dataset(
    out_dir,
    *,
    resolution: str = "low",
    subjects: dict[str, str] | None = None,
    frames_per_motion: int = 8,
    ood_frames: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write synthetic clothed subjects in the CAPE layout under `out_dir`; return the meta dict.

    Args:
      out_dir: root directory (created). Layout as `jaxpose.skinning.cape`, plus per subject
        `minimal_body_shape/<s>/<s>_body.npz` (skinning model of the minimal template) and `meta.json`
        (config, split, star pose, garment parameters, watertightness, offset statistics).
      resolution: default-body resolution: "low" (1,229 vertices; the CI variant, seconds) or "full"
        (13,718 vertices; the realistic variant, e.g. frames_per_motion=60 -> 480 frames + OOD per subject).
      subjects: {subject name: garment name in `GARMENTS`}; default `DEFAULT_SUBJECTS` (skirt, shirt,
        dress, and the pure-LBS control "skirtstatic").
      frames_per_motion: frames per sequence; each motion spans 4 s at 30 fps and is subsampled.
      ood_frames: frames of the OOD pose set (default frames_per_motion).
      seed: every shape, motion and translation is a function of (seed, subject, motion).
      overwrite: if `out_dir/meta.json` exists with a different config, replace that dataset's files
        instead of raising FileExistsError. With the same config the existing data is returned as is.

    Frames are written atomically, meta.json last: its presence means the dataset is complete.
    """
    subjects = dict(DEFAULT_SUBJECTS if subjects is None else subjects)
    if not subjects:
        raise ValueError("subjects must name at least one subject")
    for name, garment in subjects.items():
        if garment not in GARMENTS and garment not in OUTFITS:
            raise ValueError(f"subject {name!r}: unknown garment {garment!r}; known: {sorted(GARMENTS)} and the CAPE-like outfits {sorted(OUTFITS)}")
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid subject name {name!r}")
    if not isinstance(frames_per_motion, (int, np.integer)) or frames_per_motion < 1:
        raise ValueError(f"frames_per_motion must be a positive int, got {frames_per_motion!r}")
    ood_frames = frames_per_motion if ood_frames is None else ood_frames
    if not isinstance(ood_frames, (int, np.integer)) or ood_frames < 1:
        raise ValueError(f"ood_frames must be a positive int, got {ood_frames!r}")
    out = pathlib.Path(out_dir)
    config = _config(resolution, subjects, frames_per_motion, ood_frames, seed)  # after validating the garments
    meta_path = out / "meta.json"
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_path}: corrupt JSON ({exc}); delete the directory to regenerate") from exc
        if old.get("config") == config:
            return old
        if not overwrite:
            raise FileExistsError(f"{out} already holds a clothed dataset with config {old.get('config')}; pass overwrite=True to replace it")
        meta_path.unlink()
        for subject in old.get("config", {}).get("subjects", {}):
            for motion in ALL_MOTIONS:
                seq = out / "sequences" / subject / f"{old['config']['subjects'][subject]}_{motion}"
                for f in seq.glob("*.npz"):
                    f.unlink()
    start = time.perf_counter()
    faces = np.asarray(default_body(resolution).faces, np.int32)
    _atomic_save_npy(out / "misc" / "smpl_tris.npy", faces)
    atomic_write_bytes(out / "misc" / "subj_genders.pkl", pickle.dumps({name: "neutral" for name in subjects}, protocol=2))
    boundary, nonmanifold = boundary_edge_counts(faces)
    meta_subjects, split = {}, {}
    for name, garment_name in subjects.items():
        if garment_name in OUTFITS:
            betas = subject_betas(seed, name, default_body(resolution).num_betas)
            subject = make_outfit_subject(name, garment_name, betas=betas, resolution=resolution, seed=seed)
        else:
            subject = make_subject(name, garment_name, resolution=resolution, seed=seed)
        _atomic_save_npy(out / "minimal_body_shape" / name / f"{name}_minimal.npy", np.asarray(subject.body.v_template, np.float32))
        save_body_npz(subject.body, out / "minimal_body_shape" / name / f"{name}_body.npz")
        max_offset, max_pose_offset = 0.0, 0.0
        static = np.asarray(subject.frames(np.zeros((1, 24, 3), np.float32), np.zeros((1, 3), np.float32))[0][0]) - np.asarray(subject.body.v_template)
        for motion in ALL_MOTIONS:
            n = ood_frames if motion in OOD_MOTIONS else frames_per_motion
            pose, transl = motion_poses(motion, n, seed, name)
            v_cano, v_posed = subject.frames(pose, transl, noise_key=(ALL_MOTIONS.index(motion),))
            offsets = v_cano - np.asarray(subject.body.v_template)[None]
            max_offset = max(max_offset, float(np.linalg.norm(offsets, axis=-1).max()))
            max_pose_offset = max(max_pose_offset, float(np.linalg.norm(offsets - static[None], axis=-1).max()))
            seq = f"{garment_name}_{motion}"
            for t in range(n):
                atomic_save_npz(
                    out / "sequences" / name / seq / f"{seq}.{t + 1:06d}.npz",
                    v_posed=v_posed[t], v_cano=v_cano[t], pose=pose[t].reshape(72), transl=transl[t],
                )
        split[name] = {
            "train": [f"{garment_name}_{m}" for m in TRAIN_MOTIONS],
            "test": [f"{garment_name}_{m}" for m in TEST_MOTIONS],
            "ood": [f"{garment_name}_{m}" for m in OOD_MOTIONS],
        }
        meta_subjects[name] = {
            "garment": dataclasses.asdict(subject.garment),
            "betas": subject.betas.tolist(),
            "pose_dependent": getattr(subject.garment, "pose_dependent", True),
            **({"garment_coverage": coverage(subject.field, subject.body.v_template, faces)} if garment_name in OUTFITS else {}),
            "max_offset_m": max_offset,
            "max_pose_dependent_offset_m": max_pose_offset,
        }
    meta = {
        "format": "cape",
        "generator": "jaxpose.skinning.clothed",
        "config": config,
        "split": split,
        "subjects": meta_subjects,
        "star_pose": star_pose().tolist(),
        "canonical_pose": "star (SNARF): left hip +pi/6, right hip -pi/6 about z",
        "num_vertices": int(default_body(resolution).num_vertices),
        "num_faces": int(faces.shape[0]),
        "watertight": {"boundary_edges": boundary, "nonmanifold_edges": nonmanifold},
        "max_offset_clamp_m": MAX_OFFSET_M,
        "generation_seconds": time.perf_counter() - start,
    }
    text = json.dumps(meta, indent=1)
    atomic_write_text(meta_path, text)
    return json.loads(text)


def _atomic_save_npy(path: pathlib.Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


__all__ = [
    "ALL_MOTIONS",
    "DEFAULT_SUBJECTS",
    "GARMENTS",
    "MAX_OFFSET_M",
    "OOD_MOTIONS",
    "TEST_MOTIONS",
    "TRAIN_MOTIONS",
    "ClothedSubject",
    "Garment",
    "GarmentField",
    "boundary_edge_counts",
    "garment_field",
    "garment_offsets",
    "generate_clothed_dataset",
    "lbs_vertices",
    "make_subject",
    "motion_poses",
    "subject_betas",
]
