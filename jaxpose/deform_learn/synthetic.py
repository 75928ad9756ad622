"""Synthetic DensePose-like training/test data for deform-and-learn, rendered from a free body.

Reconstruction (jaxpose's design; the paper trains on DensePose-COCO / Human3.6M, whose SMPL charts
cannot be used with other bodies): every image shows one *subject* of the body model in its own pose:
- subjects: betas ~ N(0, `beta_std`²) clipped to ±`beta_clip`, and a `procedural_texture`; the train
  and test splits have disjoint subjects (global ids: train [0, train_subjects), test after them);
  image i of a split shows the split's subject i mod (number of subjects);
- pose: `sample_pose(.., "wide")` with a root yaw uniform in ±`root_yaw_deg` (the body faces +z);
- perspective camera with a fixed field of view `fov_degrees` (fx = fy = (size/2) / tan(fov/2)),
  looking at the centre of the mesh's bounding box from the front, with an elevation uniform in
  ±`elevation_deg`; per image the camera distance is solved (fixed-point iteration on the exact
  projection) so that the larger side of the mesh's projected bounding box spans a fraction
  uniform in `fill_range` of the image, then the principal point is shifted so that the box lies at a
  uniformly random position inside the image (≥ 1 px from the border);
- image: the textured body lit by a random Lambertian light over a `random_backgrounds` gradient;
- dense labels: `points_per_person` covered pixels drawn uniformly without replacement (fewer when
  the body covers fewer pixels: `dense_valid` marks the real ones); per pixel the DensePose-style
  (I, U, V) of `charts.pixel_labels`, the chart's nearest vertex (the paper's correspondence) and the
  rasteriser's argmax-barycentric vertex (the exactness check);
- keypoints: the body's 24 joints (`forward(...).joints`) projected by the same camera.
Image coordinates: normalised n = (pixel − size/2) / (size/2), pixel centres at (col + 0.5, row + 0.5).
Everything is deterministic per seed (each image and subject has its own random stream, so a config's
first k images do not depend on the number of images) and independent of `chunk_size`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies import SMPL_PARENTS, default_body, forward, sample_pose
from jaxpose.deform_learn.charts import PartCharts, exact_vertex, nearest_chart_vertex, part_charts, pixel_labels
from jaxpose.fitting.renders import procedural_texture, render_modalities
from jaxpose.fitting.synthetic import _light, random_backgrounds
from jaxpose.io.cache import cached_arrays
from jaxpose.render.camera import Camera, look_at, project, world_to_camera

DATASET_VERSION = 1
SPLITS = ("train", "test")
_DISTANCE_ITERATIONS = 6
_BORDER_PX = 1.0


@dataclasses.dataclass(frozen=True)
class DeformLearnDataConfig:
    """Configuration of a synthetic deform-and-learn dataset (angles in degrees, lengths in metres).

    Sizes: `image_size` (square, px), `num_train`/`num_test` images, `train_subjects`/`test_subjects`
    (disjoint), `points_per_person` dense labels per image. Subjects: betas ~ N(0, `beta_std`²) clipped
    to ±`beta_clip` (reconstruction). Poses: "wide" with root yaw in ±`root_yaw_deg`. Camera:
    perspective with field of view `fov_degrees`, elevation in ±`elevation_deg`, the body's projected
    bounding box spanning a fraction in `fill_range` of the image (larger side). Lighting: azimuth /
    elevation ranges of the light (camera frame) and the ambient range (as `jaxpose.fitting.synthetic`).
    `chunk_size`: images per compiled rendering batch (no effect on the data).
    """

    image_size: int = 64
    num_train: int = 600
    num_test: int = 150
    train_subjects: int = 60
    test_subjects: int = 15
    beta_std: float = 1.0
    beta_clip: float = 2.5
    root_yaw_deg: float = 90.0
    points_per_person: int = 150
    fov_degrees: float = 15.0
    elevation_deg: float = 10.0
    fill_range: tuple[float, float] = (0.6, 0.9)
    light_azimuth_deg: tuple[float, float] = (-60.0, 60.0)
    light_elevation_deg: tuple[float, float] = (-10.0, 60.0)
    ambient_range: tuple[float, float] = (0.25, 0.6)
    seed: int = 0
    resolution: str = "low"
    chunk_size: int = 50

    def __post_init__(self):
        for name in ("image_size", "train_subjects", "test_subjects", "points_per_person", "chunk_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DeformLearnDataConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_train", "num_test", "seed"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"DeformLearnDataConfig.{name} must be >= 0, got {getattr(self, name)}")
        low, high = self.fill_range
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"fill_range must satisfy 0 < low <= high < 1, got {self.fill_range}")
        if not 0.0 < self.fov_degrees < 180.0:
            raise ValueError(f"fov_degrees must be in (0, 180), got {self.fov_degrees}")
        if not 0.0 <= self.elevation_deg < 90.0:
            raise ValueError(f"elevation_deg must be in [0, 90), got {self.elevation_deg}")
        low, high = self.ambient_range
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"ambient_range must satisfy 0 <= low <= high <= 1, got {self.ambient_range}")
        if self.beta_std < 0 or self.beta_clip < 0 or self.root_yaw_deg < 0:
            raise ValueError("beta_std, beta_clip and root_yaw_deg must be non-negative")

    def num_images(self, split: str) -> int:
        return self.num_train if _split_index(split) == 0 else self.num_test

    def num_subjects(self, split: str) -> int:
        return self.train_subjects if _split_index(split) == 0 else self.test_subjects

    @property
    def focal(self) -> float:
        """fx = fy in pixels: (image_size / 2) / tan(fov / 2)."""
        return 0.5 * self.image_size / float(np.tan(np.deg2rad(self.fov_degrees) / 2.0))


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


def subject_ids(config: DeformLearnDataConfig, split: str) -> np.ndarray:
    """(n,) int32 global subject ids of `split` (train: [0, train_subjects), test: after them)."""
    first = 0 if _split_index(split) == 0 else config.train_subjects
    return np.arange(first, first + config.num_subjects(split), dtype=np.int32)


def subject_betas(config: DeformLearnDataConfig, subjects, num_betas: int) -> np.ndarray:
    """(n, K) float32 betas of global subject ids (each subject has its own random stream)."""
    rows = [
        np.clip(np.random.default_rng([config.seed, 21, int(s)]).normal(0.0, config.beta_std, num_betas), -config.beta_clip, config.beta_clip)
        for s in np.atleast_1d(subjects)
    ]
    return np.asarray(rows, np.float32).reshape(-1, num_betas)


def _textured_body(body, charts: PartCharts):
    """`body` with `extras["part_ids"]` (needed by `procedural_texture`): the charts' parts if absent."""
    if "part_ids" in body.extras:
        return body
    return dataclasses.replace(body, extras={**body.extras, "part_ids": np.asarray(charts.vertex_part)})


def subject_texture(config: DeformLearnDataConfig, body, subject: int, charts: PartCharts | None = None) -> np.ndarray:
    """(V, 3) float32 procedural texture of a global subject id."""
    body = _textured_body(body, part_charts(body) if charts is None else charts)
    return procedural_texture(body, np.random.default_rng([config.seed, 22, int(subject)]))


def _yawed_pose(rng: np.random.Generator, root_yaw_deg: float) -> np.ndarray:
    """(24, 3) `sample_pose(rng, "wide")` with its root set to a yaw uniform in ±`root_yaw_deg`.

    The "wide" preset's root box is [0, 0], so the root is exactly the yaw (as `sample_pose`'s own
    `root_yaw_deg`, without its per-call float64 composition, which dominated the generation time).
    """
    pose = sample_pose(rng, "wide")
    yaw = np.deg2rad(rng.uniform(-root_yaw_deg, root_yaw_deg))
    if np.any(pose[0]):
        raise ValueError("the 'wide' pose preset drew a non-zero root rotation; expected the yaw only")
    pose[0] = (0.0, yaw, 0.0)
    return pose


def draw_images(config: DeformLearnDataConfig, split: str, num_betas: int) -> dict[str, np.ndarray]:
    """Host-side random draws of the `split`'s images (one random stream per image).

    Returns subject (N,) int32 global ids, betas (N, K), pose (N, 24, 3) rad, fill (N,), elevation (N,)
    rad, offset (N, 2) in [0, 1], light_direction (N, 3), ambient (N,), background (N, H, W, 3) in
    [0, 1], priority (N, H, W) (uniform numbers ranking the pixels for the dense sample).
    """
    total, size, index = config.num_images(split), config.image_size, _split_index(split)
    subjects = subject_ids(config, split)[np.arange(total) % config.num_subjects(split)]
    draws = {key: [] for key in ("pose", "fill", "elevation", "offset", "light_direction", "ambient", "background", "priority")}
    for i in range(total):
        rng = np.random.default_rng([config.seed, 20, index, i])
        draws["pose"].append(_yawed_pose(rng, config.root_yaw_deg))
        draws["fill"].append(rng.uniform(*config.fill_range))
        draws["elevation"].append(np.deg2rad(rng.uniform(-config.elevation_deg, config.elevation_deg)))
        draws["offset"].append(rng.uniform(0.0, 1.0, 2))
        light, ambient = _light(rng, 1, config.light_azimuth_deg, config.light_elevation_deg, config.ambient_range)
        draws["light_direction"].append(light[0])
        draws["ambient"].append(ambient[0])
        draws["background"].append(random_backgrounds(rng, 1, size, size)[0])
        draws["priority"].append(rng.random((size, size)))
    shapes = {"pose": (24, 3), "offset": (2,), "light_direction": (3,), "background": (size, size, 3), "priority": (size, size)}
    out = {k: np.asarray(v, np.float32).reshape((total,) + shapes.get(k, ())) for k, v in draws.items()}
    out["subject"] = subjects.astype(np.int32)
    out["betas"] = subject_betas(config, subjects, num_betas)
    return out


@jax.jit
def _posed(body, betas, pose):
    result = jax.vmap(lambda b, p: forward(body, b, p))(betas, pose)
    return result.vertices, result.joints


def place_cameras(config: DeformLearnDataConfig, vertices, elevation, fill, offset) -> dict[str, np.ndarray]:
    """Per-image perspective cameras framing posed meshes (see the module docstring).

    Args:
      vertices: (N, V, 3) posed world vertices, metres; elevation (N,) rad; fill (N,) fraction of the
      image spanned by the larger side of the projected bounding box; offset (N, 2) ∈ [0, 1] position
      of the box inside the free space of the image (x, y).

    Returns:
      camera_rotation (N, 3, 3), camera_translation (N, 3) (world → camera, OpenCV axes) and
      camera_intrinsics (N, 4) = (fx, fy, cx, cy) in pixels, float32.
    """
    vertices = np.asarray(vertices, np.float64)
    size, focal = float(config.image_size), config.focal
    centre = 0.5 * (vertices.min(axis=1) + vertices.max(axis=1))  # (N, 3)
    elevation = np.asarray(elevation, np.float64)
    towards_camera = np.stack([np.zeros_like(elevation), np.sin(elevation), np.cos(elevation)], axis=-1)
    rotations = np.asarray(jax.vmap(look_at)(towards_camera, np.zeros_like(towards_camera))[0], np.float64)
    local = np.einsum("nij,nvj->nvi", rotations, vertices - centre[:, None, :])  # camera axes, centred
    radius = np.linalg.norm(vertices - centre[:, None, :], axis=-1).max(axis=1)
    distance = radius / np.sin(np.deg2rad(config.fov_degrees) / 2.0) + radius
    for _ in range(_DISTANCE_ITERATIONS):  # extent ∝ 1/distance up to the body's depth: fixed point
        pixels = focal * local[..., :2] / (local[..., 2:3] + distance[:, None, None])
        extent = (pixels.max(axis=1) - pixels.min(axis=1)).max(axis=1)
        distance = distance * extent / (np.asarray(fill, np.float64) * size)
    pixels = focal * local[..., :2] / (local[..., 2:3] + distance[:, None, None])
    low, high = pixels.min(axis=1), pixels.max(axis=1)  # (N, 2), principal point at 0
    free = np.maximum(size - 2.0 * _BORDER_PX - (high - low), 0.0)
    principal = _BORDER_PX + np.asarray(offset, np.float64) * free - low
    eye = centre + distance[:, None] * towards_camera
    translation = -np.einsum("nij,nj->ni", rotations, eye)
    intrinsics = np.concatenate([np.full((len(distance), 2), focal), principal], axis=1)
    return {
        "camera_rotation": rotations.astype(np.float32),
        "camera_translation": translation.astype(np.float32),
        "camera_intrinsics": intrinsics.astype(np.float32),
    }


def camera_at(data, index: int) -> Camera:
    """The `Camera` of image `index` of a dataset dict."""
    size = int(data["image"].shape[1])
    fx, fy, cx, cy = (jnp.asarray(x) for x in np.asarray(data["camera_intrinsics"][index]))
    return Camera(jnp.asarray(data["camera_rotation"][index]), jnp.asarray(data["camera_translation"][index]), fx, fy, cx, cy, height=size, width=size)


@functools.partial(jax.jit, static_argnames=("size", "points"))
def _render_chunk(faces, charts, template, batch, *, size, points):
    """Per image: image, mask, dense labels, keypoints and camera-frame GT; one compile per chunk shape.

    `lax.map` over the chunk rather than `vmap`: under `vmap` the rasteriser's per-tile `lax.cond`
    becomes a select that evaluates every face chunk; measured on 2 CPU cores, 150 images at 64 px:
    1.7 s with `lax.map`, 3.0 s with `vmap` (compiled programs warm).
    """

    def person(p):
        fx, fy, cx, cy = p["intrinsics"][0], p["intrinsics"][1], p["intrinsics"][2], p["intrinsics"][3]
        camera = Camera(p["rotation"], p["translation"], fx, fy, cx, cy, height=size, width=size)
        out = render_modalities(p["vertices"], faces, camera, p["colors"], code_colors=p["colors"], light_direction=p["light"], ambient=p["ambient"])
        mask = out["mask"]
        image = jnp.where(mask[..., None], out["rgb"], p["background"])
        # Dense sample: the `points` covered pixels of highest priority (uniform draws), background last.
        priority = jnp.where(mask, p["priority"], -1.0).reshape(-1)
        score, pixel = jax.lax.top_k(priority, points)
        valid = score >= 0.0
        face_id = jnp.where(valid, out["face_id"].reshape(-1)[pixel], -1)
        barycentric = out["barycentric"].reshape(-1, 3)[pixel]
        part, uv = pixel_labels(charts, faces, face_id, barycentric, template)
        row, col = pixel // size, pixel % size
        xy = (jnp.stack([col, row], axis=-1).astype(image.dtype) + 0.5 - size / 2.0) / (size / 2.0)
        keypoints_px, _ = project(p["joints"], camera)
        keypoints = (keypoints_px - size / 2.0) / (size / 2.0)
        return {
            "image": jnp.round(jnp.clip(image, 0.0, 1.0) * 255.0).astype(jnp.uint8),
            "mask": mask,
            "dense_xy": jnp.where(valid[:, None], xy, 0.0),
            "dense_part": jnp.maximum(part, 0),
            "dense_uv": uv,
            "dense_vertex": jnp.maximum(nearest_chart_vertex(charts, part, uv), 0),
            "dense_exact_vertex": jnp.maximum(exact_vertex(faces, face_id, barycentric), 0),
            "dense_valid": valid,
            "keypoints": keypoints,
            "keypoint_valid": jnp.all(jnp.abs(keypoints) <= 1.0, axis=-1),
            "joints_cam": world_to_camera(p["joints"], camera),
            "vertices_cam": world_to_camera(p["vertices"], camera),
        }

    return jax.lax.map(person, batch)


def _chunks(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _pad(batch: dict, size: int) -> dict:
    """Pad a chunk's arrays to `size` rows by repeating the last one (one compiled shape per dataset)."""
    return {k: np.concatenate([v, np.repeat(v[-1:], size - len(v), axis=0)]) if len(v) < size else v for k, v in batch.items()}


def make_dataset(config: DeformLearnDataConfig, split: str, *, body=None, progress: bool = True) -> dict[str, np.ndarray]:
    """Generate the `split` ("train"/"test") of the synthetic deform-and-learn dataset (host arrays).

    Keys (N images, P = points_per_person, V vertices, K betas; float32 unless stated):
      image (N, H, W, 3) uint8; mask (N, H, W) bool;
      dense_xy (N, P, 2) normalised image coordinates of the sampled pixels' centres; dense_part (N, P)
      int32 0..23; dense_uv (N, P, 2); dense_vertex (N, P) int32 (chart-nearest vertex);
      dense_exact_vertex (N, P) int32 (argmax-barycentric vertex); dense_valid (N, P) bool (invalid
      entries are 0);
      keypoints (N, 24, 2) normalised projections of the GT joints; keypoint_valid (N, 24) bool
      (inside the image);
      joints_cam (N, 24, 3), vertices_cam (N, V, 3) GT in the camera frame, metres;
      betas (N, K), pose (N, 24, 3) axis-angle rad (world frame; root = yaw), subject (N,) int32;
      camera_rotation (N, 3, 3), camera_translation (N, 3), camera_intrinsics (N, 4) (fx, fy, cx, cy) px.
    `body` defaults to `default_body(config.resolution)`; any 24-joint `BodyModel` works. Progress
    lines go to stderr when `progress`.
    """
    total = config.num_images(split)
    if total == 0:
        raise ValueError(f"DeformLearnDataConfig.num_{split} is 0: nothing to generate")
    body = default_body(config.resolution) if body is None else body
    if body.num_joints != 24:
        raise ValueError(f"the deform-and-learn data needs a 24-joint body, got {body.num_joints} joints")
    started = time.perf_counter()
    charts = part_charts(body)
    draws = draw_images(config, split, body.num_betas)
    textures = {int(s): subject_texture(config, body, int(s), charts) for s in np.unique(draws["subject"])}
    vertices, joints = [], []
    for start, stop in _chunks(total, config.chunk_size):
        padded = _pad({"betas": draws["betas"][start:stop], "pose": draws["pose"][start:stop]}, config.chunk_size)
        v, j = _posed(body, padded["betas"], padded["pose"])
        vertices.append(np.asarray(v)[: stop - start])
        joints.append(np.asarray(j)[: stop - start])
    vertices, joints = np.concatenate(vertices), np.concatenate(joints)
    cameras = place_cameras(config, vertices, draws["elevation"], draws["fill"], draws["offset"])
    if progress:
        print(f"deform-learn {split}: drew {total} images in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    faces = jnp.asarray(body.faces, jnp.int32)
    template = jnp.asarray(body.v_template, jnp.result_type(float))
    outputs: list[dict[str, np.ndarray]] = []
    for start, stop in _chunks(total, config.chunk_size):
        batch = {
            "vertices": vertices[start:stop], "joints": joints[start:stop],
            "rotation": cameras["camera_rotation"][start:stop], "translation": cameras["camera_translation"][start:stop],
            "intrinsics": cameras["camera_intrinsics"][start:stop],
            "colors": np.stack([textures[int(s)] for s in draws["subject"][start:stop]]),
            "light": draws["light_direction"][start:stop], "ambient": draws["ambient"][start:stop],
            "background": draws["background"][start:stop], "priority": draws["priority"][start:stop],
        }
        out = _render_chunk(faces, charts, template, _pad(batch, config.chunk_size), size=config.image_size, points=config.points_per_person)
        outputs.append({k: np.asarray(v)[: stop - start] for k, v in out.items()})
        if progress:
            print(f"deform-learn {split}: {stop}/{total} images, {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    data = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    data.update({"betas": draws["betas"], "pose": draws["pose"], "subject": draws["subject"]})
    data.update(cameras)
    return data


REQUIRED_KEYS = (
    "image", "mask", "dense_xy", "dense_part", "dense_uv", "dense_vertex", "dense_exact_vertex", "dense_valid",
    "keypoints", "keypoint_valid", "joints_cam", "vertices_cam", "betas", "pose", "subject",
    "camera_rotation", "camera_translation", "camera_intrinsics",
)


def canonical_bone_length(train_data, parents=SMPL_PARENTS) -> float:
    """Mean total bone length (metres) of the training subjects' GT skeletons.

    Per image: Σ over the tree edges of ‖joint − parent joint‖ of `joints_cam` (bone lengths do not
    depend on pose or camera); averaged per subject, then over subjects (each subject counts once).
    """
    joints = np.asarray(train_data["joints_cam"], np.float64)
    child = np.asarray([j for j, p in enumerate(parents) if p >= 0])
    parent = np.asarray([p for p in parents if p >= 0])
    if joints.ndim != 3 or joints.shape[1] != len(parents):
        raise ValueError(f"joints_cam must have shape (N, {len(parents)}, 3), got {joints.shape}")
    total = np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1).sum(axis=1)
    subjects = np.asarray(train_data["subject"])
    return float(np.mean([total[subjects == s].mean() for s in np.unique(subjects)]))


def _body_fingerprint(body) -> str:
    digest = hashlib.sha256()
    for array in (body.v_template, body.faces, body.weights, body.j_template, body.shapedirs, body.j_shapedirs, body.posedirs):
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    digest.update(repr(tuple(body.parents)).encode())
    return digest.hexdigest()[:16]


def config_hash(config: DeformLearnDataConfig, split: str, body=None) -> str:
    """12 hex characters identifying the data of `split` (the other split's size and `chunk_size` excluded)."""
    fields = dataclasses.asdict(config)
    fields.pop("num_test" if _split_index(split) == 0 else "num_train")
    fields.pop("chunk_size")
    if body is not None:
        fields["body"] = _body_fingerprint(body)
    payload = json.dumps({"version": DATASET_VERSION, "split": split, **fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def dataset_cache_path(config: DeformLearnDataConfig, split: str, cache_dir, body=None) -> pathlib.Path:
    """`<cache_dir>/deform_learn_<split>_<config_hash>.npz`."""
    return pathlib.Path(cache_dir) / f"deform_learn_{split}_{config_hash(config, split, body)}.npz"


def load_or_make_dataset(config: DeformLearnDataConfig, split: str, cache_dir, *, body=None, progress: bool = True) -> dict[str, np.ndarray]:
    """`make_dataset`, cached in `dataset_cache_path(config, split, cache_dir, body)` (written atomically).

    A custom `body` is part of the cache key (fingerprint of its arrays). Raises ValueError naming the
    file if a cache file exists but is unreadable or incomplete (delete it to regenerate).
    """
    return cached_arrays(
        dataset_cache_path(config, split, cache_dir, body), lambda: make_dataset(config, split, body=body, progress=progress),
        what="deform-learn dataset cache", label=f"deform-learn {split}", required_keys=REQUIRED_KEYS, count_key="subject",
        expected_count=config.num_images(split), count_name="images", progress=progress,
    )  # fmt: skip
