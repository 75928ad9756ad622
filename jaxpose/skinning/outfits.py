"""CAPE-like synthetic subjects: body pose correctives, garments over most of the body, garment skinning
that the minimal body's weights do not reproduce, and registration noise (docs/skinning.md, "CAPE-like
subjects").

Why: a subject whose clothed surface is close to LBS of the minimal body cannot show what the INS
table shows (AVG-LBS 65 %, FIRST-LBS 57 % surface IoU on CAPE, i.e. whole-body errors of roughly 7 and
10 mm under the near-surface protocol). An outfit here reproduces the error sources of real clothed
registrations, all in the canonical (zero-pose) space of the minimal template unless stated:

    v_cano(θ)  = minimal + C(θ) + D_static + D_pose(θ) + N_frame          (V, 3) metres
    v_posed(θ) = LBS(v_cano(θ); W_garment, joints, θ) + transl

* C(θ), pose correctives of the body: bulges/creases along the rest normals around elbows, knees,
  hips and shoulders, amplitude `corrective_m` (5–15 mm) × sin²(bend), Gaussian falloff from the joint.
* D_static: loose fit of the garments, along rest normals: a smooth random field (seeded per subject)
  mapped to [`static_min_m`, `static_max_m`] (0.5–3 cm), larger towards the hems, suppressed where two
  body parts face each other (inner thighs).
* D_pose(θ): non-linear, joint-angle-driven cloth: wrinkle ripples across bent elbows/knees/hips,
  hem flare and swing lag at the trouser and sleeve hems and the shirt hem, bunching at the armpits
  when the arm comes down, a waist fold with torso flexion, and a crotch panel driven by the
  difference of the two hip flexions (couples the legs). Scaled so its RMS over the garment is about
  `pose_rms_m`; at hems and armpits it reaches several centimetres. The total garment offset is
  soft-clamped to `max_offset_m`.
* W_garment: the garment is skinned with weights smoothed in space (Gaussian, radius
  `weight_smoothing_m`) over the garment: sleeves lag the forearm, trouser crotch and hips blend.
  The LBS baselines only get the minimal body's weights (as in the paper), which are realistic for
  the garment but not optimal.
* N_frame: registration noise, an independent smooth random field per frame along the rest normals,
  RMS `noise_rms_m` (2–3 mm).

Coverage (fraction of the rest surface area under a garment) is reported by `coverage`; the default
outfits cover 70–80 %. `OUTFITS` names follow CAPE's clothing types (`longlong` = long sleeves + long
trousers, `shortlong` = short sleeves + trousers, `longshort` = long sleeves + shorts).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from jaxpose.bodies import default_body, shaped_rest
from jaxpose.bodies.poses import sample_pose
from jaxpose.bodies.skeleton import SMPL_JOINT_NAMES
from jaxpose.geometry.mesh import vertex_normals
from jaxpose.skinning.posing import lbs_vertices

_J = {name: index for index, name in enumerate(SMPL_JOINT_NAMES)}
_TORSO = ("spine1", "spine2", "spine3", "left_collar", "right_collar")
_SIDES = ("left", "right")


@dataclasses.dataclass(frozen=True)
class Outfit:
    """Parameters of a CAPE-like outfit (lengths in metres)."""

    name: str
    sleeves: str  # "long" (to the wrist) | "short" (upper arm) | "none"
    legs: str  # "long" (to the ankle) | "short" (mid-thigh)
    static_min_m: float = 0.005
    static_max_m: float = 0.03
    pose_rms_m: float = 0.014
    corrective_m: float = 0.015
    weight_smoothing_m: float = 0.1
    noise_rms_m: float = 0.003
    max_offset_m: float = 0.06


OUTFITS = {
    "longlong": Outfit("longlong", sleeves="long", legs="long"),
    "shortlong": Outfit("shortlong", sleeves="short", legs="long"),
    "longshort": Outfit("longshort", sleeves="long", legs="short"),
}


def _smoothstep(x, lo, hi):
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def gaussian_smoother(points: np.ndarray, radius: float) -> sparse.csr_matrix:
    """Row-normalised sparse Gaussian kernel (V, V) over rest positions (V, 3), truncated at 3·radius.

    Euclidean, not geodesic, on purpose: nearby surfaces of different body parts (crotch, armpits) blend
    the way cloth spanning them does.
    """
    points = np.asarray(points, np.float64)
    pairs = cKDTree(points).sparse_distance_matrix(cKDTree(points), 3.0 * radius, output_type="coo_matrix")
    values = np.exp(-0.5 * (pairs.data / radius) ** 2)
    kernel = sparse.coo_matrix((values, (pairs.row, pairs.col)), shape=pairs.shape).tocsr()
    kernel = kernel + sparse.identity(points.shape[0], format="csr")  # the diagonal (distance 0 is not stored)
    return sparse.diags(1.0 / np.asarray(kernel.sum(axis=1)).ravel()) @ kernel


def _unit_field(smoother: sparse.csr_matrix, rng: np.random.Generator, num: int) -> np.ndarray:
    """A smooth random scalar field (V,) with zero mean and unit RMS."""
    field = smoother @ (smoother @ rng.standard_normal(num))
    field = field - field.mean()
    return field / max(float(np.sqrt(np.mean(field**2))), 1e-12)


@dataclasses.dataclass(frozen=True)
class OutfitField:
    """Rest-space quantities of an outfit on one subject (all (V,) or (V, 3), float64)."""

    outfit: Outfit
    garment: np.ndarray  # 0..1 soft garment mask
    static: np.ndarray  # (V, 3) static offsets
    normals: np.ndarray
    hem_legs: np.ndarray  # 1 at the trouser / shorts hem
    hem_sleeves: np.ndarray
    hem_shirt: np.ndarray
    armpit: dict  # side -> (V,) weight around the armpit
    ripples: tuple  # ((joint id, (V,) ripple weight), ...)
    correctives: tuple  # ((joint id, (V,) signed falloff), ...)
    crotch: np.ndarray
    waist: np.ndarray
    side: np.ndarray  # +1 left (x > 0), -1 right
    weights: np.ndarray  # (V, 24) garment skinning weights
    smoother: sparse.csr_matrix
    pose_scale: float  # multiplies the raw pose-dependent terms so their garment RMS is ~ pose_rms_m


def _limb_coordinates(minimal, joints, start, end):
    axis = joints[_J[end]] - joints[_J[start]]
    length = float(np.linalg.norm(axis))
    axis = axis / length
    rel = minimal - joints[_J[start]]
    along = rel @ axis
    radial = np.linalg.norm(rel - along[:, None] * axis[None], axis=1)
    return along, radial, length


def outfit_field(outfit: Outfit, minimal, joints, weights, faces, *, seed: int) -> OutfitField:
    """Precompute an outfit on a subject: minimal (V, 3), joints (24, 3), body weights (V, 24), faces (F, 3)."""
    minimal = np.asarray(minimal, np.float64)
    joints = np.asarray(joints, np.float64)
    weights = np.asarray(weights, np.float64)
    with jax.enable_x64(True):
        normals = np.asarray(vertex_normals(jnp.asarray(minimal), np.asarray(faces)))
    num = minimal.shape[0]
    part = np.argmax(weights, axis=1)
    x, y = minimal[:, 0], minimal[:, 1]
    side = np.where(x >= 0, 1.0, -1.0)
    smoother = gaussian_smoother(minimal, 0.03)
    rng = np.random.default_rng(seed)

    def parts(*names):
        return np.isin(part, [_J[n] for n in names]).astype(np.float64)

    # Garment regions: shirt over the torso (+ sleeves), trousers over pelvis and legs.
    sleeve_along = {s: _limb_coordinates(minimal, joints, f"{s}_shoulder", f"{s}_wrist") for s in _SIDES}
    arm = {s: parts(f"{s}_shoulder", f"{s}_elbow", f"{s}_wrist", f"{s}_hand") for s in _SIDES}
    sleeve_end = {"long": 0.93, "short": 0.35, "none": 0.0}[outfit.sleeves]
    shirt = parts(*_TORSO)
    hem_sleeves = np.zeros(num)
    for s in _SIDES:
        along, _, length = sleeve_along[s]
        fraction = along / length
        shirt = np.maximum(shirt, arm[s] * (fraction <= sleeve_end))
        hem_sleeves = np.maximum(hem_sleeves, arm[s] * np.exp(-(((fraction - sleeve_end) * length / 0.05) ** 2)) * (fraction <= sleeve_end + 0.02))
    leg_end = {"long": 0.93, "short": 0.45}[outfit.legs]
    trousers = parts("pelvis")
    hem_legs = np.zeros(num)
    for s in _SIDES:
        along, _, length = _limb_coordinates(minimal, joints, f"{s}_hip", f"{s}_ankle")
        fraction = along / length
        leg = parts(f"{s}_hip", f"{s}_knee", f"{s}_ankle")
        trousers = np.maximum(trousers, leg * (fraction <= leg_end))
        hem_legs = np.maximum(hem_legs, leg * np.exp(-(((fraction - leg_end) * length / 0.06) ** 2)) * (fraction <= leg_end + 0.02))
    # The shirt hangs over the waistband: its hem sits just below the pelvis joint.
    pelvis_y = joints[_J["pelvis"], 1]
    shirt = np.maximum(shirt, parts("pelvis") * (y >= pelvis_y - 0.06))
    hem_shirt = np.exp(-(((y - (pelvis_y - 0.06)) / 0.05) ** 2)) * np.maximum(parts("pelvis", *_TORSO), 0.0)
    garment = np.clip(smoother @ np.maximum(shirt, trousers), 0.0, 1.0)

    # Suppress offsets on surfaces facing another body part (inner thighs) so the legs stay apart.
    hip_y = 0.5 * (joints[_J["left_hip"], 1] + joints[_J["right_hip"], 1])
    inward = np.maximum(0.0, -normals[:, 0] * side)
    facing = 1.0 - _smoothstep(hip_y - y, 0.0, 0.08) * _smoothstep(inward, 0.3, 0.7)
    hems = np.maximum.reduce([hem_legs, hem_sleeves, hem_shirt])
    looseness = 0.5 + 0.5 * np.tanh(_unit_field(smoother, rng, num))  # 0..1, smooth
    looseness = np.clip(0.6 * looseness + 0.6 * hems, 0.0, 1.0)
    magnitude = garment * facing * (outfit.static_min_m + (outfit.static_max_m - outfit.static_min_m) * looseness)
    static = magnitude[:, None] * normals

    ripples, correctives = [], []
    for joint, child, radius in (("elbow", "wrist", 0.08), ("knee", "ankle", 0.1), ("hip", "knee", 0.1), ("shoulder", "elbow", 0.09)):
        for s in _SIDES:
            along, radial, _ = _limb_coordinates(minimal, joints, f"{s}_{joint}", f"{s}_{child}")
            near = np.exp(-((along / radius) ** 2)) * (radial < 0.14)
            ripple = (0.5 + 0.5 * np.sin(2 * np.pi * along / 0.04 + rng.uniform(0, 2 * np.pi))) * near
            ripples.append((_J[f"{s}_{joint}"], garment * ripple))
            distance = np.linalg.norm(minimal - joints[_J[f"{s}_{joint}"]], axis=1)
            # Bulge on one side of the joint, crease on the other (flexor side: +z for the arm, -z for the leg).
            flexor = 1.0 if joint in ("elbow", "shoulder") else -1.0
            correctives.append((_J[f"{s}_{joint}"], np.exp(-((distance / radius) ** 2)) * (0.4 + flexor * normals[:, 2])))
    armpit = {}
    for s in _SIDES:
        distance = np.linalg.norm(minimal - (joints[_J[f"{s}_shoulder"]] + np.asarray([0.0, -0.06, 0.0])), axis=1)
        armpit[s] = garment * np.exp(-((distance / 0.07) ** 2))
    crotch = trousers * np.exp(-((x / 0.06) ** 2)) * _smoothstep(hip_y + 0.05 - y, 0.0, 0.1)
    waist = shirt * np.exp(-(((y - joints[_J["spine1"], 1]) / 0.06) ** 2))

    smoothing = gaussian_smoother(minimal, outfit.weight_smoothing_m)
    smooth_weights = smoothing @ weights
    garment_weights = (1.0 - garment)[:, None] * weights + garment[:, None] * smooth_weights
    garment_weights /= garment_weights.sum(axis=1, keepdims=True)
    field = OutfitField(outfit, garment, static, normals, hem_legs, hem_sleeves, hem_shirt, armpit, tuple(ripples),
                        tuple(correctives), crotch, waist, side, garment_weights, smoother, 1.0)
    return dataclasses.replace(field, pose_scale=_calibrate_pose_scale(field, rng))


def _bend(pose: np.ndarray, joint: int) -> float:
    return float(np.sin(min(float(np.linalg.norm(pose[joint])), np.pi / 2)) ** 2)


def _raw_pose_offsets(field: OutfitField, pose: np.ndarray) -> np.ndarray:
    """Unscaled pose-dependent cloth offsets (V, 3) for one pose (24, 3) axis-angle radians."""
    pose = np.asarray(pose, np.float64).reshape(24, 3)
    normal_mag = np.zeros(field.garment.shape)
    for joint, ripple in field.ripples:
        normal_mag += 0.02 * _bend(pose, joint) * ripple
    flex = {s: -pose[_J[f"{s}_hip"], 0] for s in _SIDES}  # > 0 = thigh forward
    knee = {s: _bend(pose, _J[f"{s}_knee"]) for s in _SIDES}
    own = lambda table: np.where(field.side > 0, table["left"], table["right"])  # noqa: E731
    leg_drive = np.tanh(own(flex) / 0.5) ** 2 + 0.6 * own(knee)
    normal_mag += 0.05 * leg_drive * field.hem_legs
    # Arm down (shoulder rotated towards the body) bunches cloth at the armpit; raised arms lift the shirt hem.
    down = {"left": _smoothstep(-pose[_J["left_shoulder"], 2], 0.2, 1.2), "right": _smoothstep(pose[_J["right_shoulder"], 2], 0.2, 1.2)}
    up = {"left": _smoothstep(pose[_J["left_shoulder"], 2], -0.2, 0.8), "right": _smoothstep(-pose[_J["right_shoulder"], 2], -0.2, 0.8)}
    for s in _SIDES:
        normal_mag += 0.05 * down[s] * field.armpit[s]
    normal_mag += 0.03 * (0.5 * (up["left"] + up["right"]) + 0.5 * np.tanh(max(flex["left"], flex["right"]) / 0.6) ** 2) * field.hem_shirt
    elbow = {s: _bend(pose, _J[f"{s}_elbow"]) for s in _SIDES}
    normal_mag += 0.035 * own(elbow) * field.hem_sleeves
    torso_bend = sum(float(np.linalg.norm(pose[_J[n]])) for n in ("spine1", "spine2", "spine3"))
    normal_mag += 0.03 * np.tanh(torso_bend / 0.4) ** 2 * field.waist
    normal_mag += 0.03 * (np.sqrt((flex["left"] - flex["right"]) ** 2 + 0.01) - 0.1) * field.crotch
    offsets = normal_mag[:, None] * field.normals
    # Hems lag behind the limb's swing (rest-space -z for a forward thigh swing).
    lag = -0.03 * np.tanh(own(flex) / 0.5) * field.hem_legs
    return offsets + lag[:, None] * np.asarray([0.0, 0.0, 1.0])


def _calibrate_pose_scale(field: OutfitField, rng: np.random.Generator) -> float:
    """Scale so the pose-dependent offsets have RMS ~ pose_rms_m over the garment, on reference poses."""
    poses = sample_pose(rng, "wide", num_samples=16, uniform_prob=1.0)
    mask = field.garment > 0.5
    rms = np.sqrt(np.mean([np.mean(np.sum(_raw_pose_offsets(field, p)[mask] ** 2, axis=1)) for p in poses]))
    return float(field.outfit.pose_rms_m / max(rms, 1e-9))


def body_correctives(field: OutfitField, pose: np.ndarray) -> np.ndarray:
    """Pose correctives C(θ) of the body (V, 3), metres."""
    pose = np.asarray(pose, np.float64).reshape(24, 3)
    magnitude = sum(field.outfit.corrective_m * _bend(pose, joint) * falloff for joint, falloff in field.correctives)
    return magnitude[:, None] * field.normals


def cloth_offsets(field: OutfitField, pose: np.ndarray) -> np.ndarray:
    """Garment offsets D_static + D_pose(θ) (V, 3) metres, soft-clamped to max_offset_m."""
    offsets = field.static + field.pose_scale * _raw_pose_offsets(field, pose)
    length = np.maximum(np.linalg.norm(offsets, axis=1, keepdims=True), 1e-12)
    limit = field.outfit.max_offset_m
    return offsets * (limit * np.tanh(length / limit) / length)


def registration_noise(field: OutfitField, rng: np.random.Generator) -> np.ndarray:
    """One frame's smooth registration noise (V, 3) along the rest normals, RMS noise_rms_m."""
    return (field.outfit.noise_rms_m * _unit_field(field.smoother, rng, field.normals.shape[0]))[:, None] * field.normals


def coverage(field: OutfitField, vertices: np.ndarray, faces: np.ndarray) -> float:
    """Fraction of the surface area (of mesh `vertices`, `faces`) under the garment (mask > 0.5)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    covered = (field.garment[np.asarray(faces)] > 0.5).mean(axis=1)
    return float((areas * covered).sum() / areas.sum())


@dataclasses.dataclass(frozen=True)
class OutfitSubject:
    """A CAPE-like subject: body model posing its minimal template (its weights are the minimal body's),
    and the outfit field (whose garment weights skin the clothed mesh)."""

    name: str
    outfit: Outfit
    betas: np.ndarray
    body: object
    field: OutfitField
    seed: int

    @property
    def garment(self) -> Outfit:  # the dataset writer's name for what a subject wears
        return self.outfit

    def frames(self, pose: np.ndarray, transl: np.ndarray, *, noise_key=(0,)) -> tuple[np.ndarray, np.ndarray]:
        """v_cano (T, V, 3) and v_posed (T, V, 3) for poses (T, 24, 3), transl (T, 3); noise seeded by
        (subject seed, *noise_key, frame index)."""
        minimal = np.asarray(self.body.v_template, np.float64)
        v_cano = []
        for t, p in enumerate(pose):
            rng = np.random.default_rng([self.seed, *noise_key, t, 0x5E])
            v_cano.append(minimal + body_correctives(self.field, p) + cloth_offsets(self.field, p) + registration_noise(self.field, rng))
        v_cano = np.stack(v_cano).astype(np.float32)
        posed = lbs_vertices(v_cano, self.field.weights.astype(np.float32), np.asarray(self.body.j_template), pose)
        return v_cano, (posed + transl[:, None, :]).astype(np.float32)


def make_outfit_subject(name: str, outfit: str | Outfit, *, betas: np.ndarray, resolution: str = "low", seed: int = 0) -> OutfitSubject:
    """A CAPE-like subject on the default body at `resolution` with the given shape `betas`."""
    outfit = OUTFITS[outfit] if isinstance(outfit, str) else outfit
    if not isinstance(outfit, Outfit):
        raise ValueError(f"outfit must be one of {sorted(OUTFITS)} or an Outfit, got {outfit!r}")
    base = default_body(resolution)
    minimal, joints = (np.asarray(a, np.float32) for a in shaped_rest(base, jnp.asarray(betas)))
    body = dataclasses.replace(
        base, v_template=minimal, j_template=joints,
        shapedirs=np.zeros_like(np.asarray(base.shapedirs)), j_shapedirs=np.zeros_like(np.asarray(base.j_shapedirs)),
        meta=json.dumps({"source": "jaxpose.skinning.outfits", "base": resolution, "betas": np.asarray(betas).tolist()}),
    )
    subject_seed = int(np.random.default_rng([seed, sum(map(ord, name)), 0x0F]).integers(2**31))
    field = outfit_field(outfit, minimal, joints, np.asarray(base.weights), np.asarray(base.faces), seed=subject_seed)
    return OutfitSubject(name, outfit, np.asarray(betas, np.float32), body, field, subject_seed)


__all__ = [
    "OUTFITS",
    "Outfit",
    "OutfitField",
    "OutfitSubject",
    "body_correctives",
    "cloth_offsets",
    "coverage",
    "gaussian_smoother",
    "make_outfit_subject",
    "outfit_field",
    "registration_noise",
]
