"""Labelled query points for occupancy training and the INS/SNARF IoU protocol.

See docs/skinning.md, "Evaluation protocol".

Evaluation set of one frame (`eval_points`): the first `n_bbox` points (default 100k) uniform in the
axis-aligned cube centred on the posed mesh's bbox centre with side `bbox_scale` (1.1) x the mesh's
largest extent ("IoU bbox"), then `n_surface` (default 100k) area-weighted surface samples plus
isotropic N(0, sigma^2) noise, sigma = 0.01 m ("IoU surface"). Labels: generalised winding number
> 0.5 (`jaxpose.geometry.winding`). Everything is deterministic in (seed, frame). CPU configurations
should lower the counts (e.g. n_bbox = n_surface = 10_000); the defaults are the protocol's.
That is `ScoringProtocol.DFAUST`; `ScoringProtocol.CAPE` is SNARF's CAPE set (`cape_eval_points`).

Labelling cost: bbox points outside the mesh's own bounding box (padded by `aabb_margin`) are outside
any closed mesh and are labelled 0 without a winding-number evaluation — for a standing body that is
~80% of the cube points. The rest use the far-field accelerated winding number (see `label_points`).

Training samples (SNARF's CAPE defaults: 2000 near-surface points = mesh vertices drawn with
replacement + N(0, 0.01^2), and 250 uniform points in [-1.8, 1.8]^3) come two ways:
  * `training_points`: a pure function of (seed, step, frame) that labels fresh points with the
    winding number (exact; ~P x F solid angles per frame and step);
  * `TrainingPool` + `draw_training_batch`: a per-frame pool labelled once (`make_training_pool`),
    from which a jitted JAX function draws by index, keyed on (seed, step, frame) — cheap enough for
    every training step. Both make training exactly resumable from the step number alone.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.geometry.winding import winding_number
from jaxpose.io.atomic import atomic_save_npz

EVAL_CACHE_VERSION = 1


class ScoringProtocol(enum.Enum):
    """Which labelled point set scores occupancy IoU (see the module doc).

    DFAUST: `eval_points` (bbox-cube points, then area-weighted near-surface points).
    CAPE: `cape_eval_points` (SNARF's CAPE set: noisy vertices, then points in a fixed box; halves).
    """

    CAPE = "cape"
    DFAUST = "dfaust"


CAPE_N_VERTICES, CAPE_N_UNIFORM = 2000, 250  # SNARF's CAPE evaluation counts per frame
SNARF_UNIFORM_BOX = (-1.8, 1.8)


class EvalPoints(NamedTuple):
    """points (n_bbox + n_surface, 3) float32 metres; occupancy (n_bbox + n_surface,) bool; n_bbox int."""

    points: np.ndarray
    occupancy: np.ndarray
    n_bbox: int


def _check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, np.float32)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.shape[0] == 0:
        raise ValueError(f"vertices must have shape (V, 3) with V > 0, got {vertices.shape}")
    if not np.all(np.isfinite(vertices)):
        raise ValueError("vertices contain NaN or inf")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be a non-empty integer array of shape (F, 3), got {faces.dtype} {faces.shape}")
    if faces.min() < 0 or faces.max() >= vertices.shape[0]:
        raise ValueError(f"faces index vertices out of range [0, {vertices.shape[0]})")
    return vertices, faces.astype(np.int32)


def _check_count(value, name: str, allow_zero: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} int, got {value!r}")
    return int(value)


def _check_seed(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def label_points(
    points,
    vertices,
    faces,
    *,
    aabb_margin: float = 0.01,
    far_field_ratio: float | None = 3.0,
    point_chunk: int = 256,
    face_chunk: int = 128,
) -> np.ndarray:
    """(P,) bool inside labels: winding number > 0.5, skipped (False) outside the padded mesh AABB.

    By default the winding number uses the far-field acceleration (beta = 3, clusters of 128 faces;
    `jaxpose.geometry.winding`): its deviation from the exact sum measured below 1e-3 on the body
    meshes, so a label can only differ from the exact one for points within ~1e-3 of w = 0.5, i.e.
    practically on the surface. Pass far_field_ratio=None (and a larger face_chunk) for the exact sum.
    """
    points = np.asarray(points, np.float32)
    vertices, faces = _check_mesh(vertices, faces)
    lo, hi = vertices.min(0) - aabb_margin, vertices.max(0) + aabb_margin
    candidate = np.all((points >= lo) & (points <= hi), axis=1)
    labels = np.zeros(points.shape[0], bool)
    if candidate.any():
        w = winding_number(points[candidate], vertices, faces, point_chunk=point_chunk, face_chunk=face_chunk, far_field_ratio=far_field_ratio)
        labels[candidate] = np.asarray(w) > 0.5
    return labels


def bbox_cube(vertices, bbox_scale: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """(lo (3,), hi (3,)) of the cube centred on the mesh bbox centre with side bbox_scale x largest extent."""
    vertices = np.asarray(vertices, np.float64)
    lo, hi = vertices.min(0), vertices.max(0)
    centre, half = 0.5 * (lo + hi), 0.5 * bbox_scale * float(np.max(hi - lo))
    return (centre - half).astype(np.float32), (centre + half).astype(np.float32)


def sample_surface(vertices, faces, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on the triangle mesh, (num_points, 3) float64."""
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces)]
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not areas.sum() > 0:
        raise ValueError("mesh has zero total area")
    face = rng.choice(len(areas), size=num_points, p=areas / areas.sum())
    u, w = rng.random(num_points), rng.random(num_points)
    flip = u + w > 1
    u, w = np.where(flip, 1 - u, u), np.where(flip, 1 - w, w)
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + w[:, None] * (t[:, 2] - t[:, 0])


def eval_points(
    vertices,
    faces,
    *,
    seed: int,
    frame: int,
    n_bbox: int = 100_000,
    n_surface: int = 100_000,
    sigma: float = 0.01,
    bbox_scale: float = 1.1,
) -> EvalPoints:
    """The labelled evaluation set of one posed mesh (vertices (V, 3) metres, faces (F, 3)); see module doc."""
    vertices, faces = _check_mesh(vertices, faces)
    n_bbox, n_surface = _check_count(n_bbox, "n_bbox"), _check_count(n_surface, "n_surface")
    if not (np.isfinite(sigma) and sigma >= 0 and np.isfinite(bbox_scale) and bbox_scale > 0):
        raise ValueError(f"sigma must be >= 0 and bbox_scale > 0, got {sigma}, {bbox_scale}")
    rng = np.random.default_rng([_check_seed(seed, "seed"), _check_seed(frame, "frame"), 0xE7A1])
    lo, hi = bbox_cube(vertices, bbox_scale)
    uniform = rng.uniform(lo, hi, size=(n_bbox, 3))
    near = sample_surface(vertices, faces, n_surface, rng) + sigma * rng.standard_normal((n_surface, 3))
    points = np.concatenate([uniform, near]).astype(np.float32)
    return EvalPoints(points, label_points(points, vertices, faces), n_bbox)


def _check_box(box) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = (np.broadcast_to(np.asarray(b, np.float64), (3,)) for b in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be a (lo, hi) pair of scalars or 3-vectors in metres, got {box!r}") from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ValueError(f"box needs finite lo < hi, got {box!r}")
    return lo, hi


def cape_eval_points(
    vertices,
    faces,
    *,
    seed: int,
    frame: int,
    n_vertices: int = CAPE_N_VERTICES,
    n_uniform: int = CAPE_N_UNIFORM,
    sigma: float = 0.01,
    box=SNARF_UNIFORM_BOX,
) -> EvalPoints:
    """SNARF's CAPE evaluation set of one posed mesh (vertices (V, 3) metres, faces (F, 3)).

    points (n_vertices + n_uniform, 3) float32 metres: first `n_vertices` mesh vertices drawn uniformly
    with replacement plus isotropic N(0, sigma^2) noise (sigma metres), then `n_uniform` points uniform
    in the cube `box` = (lo, hi), scalars or 3-vectors in metres. SNARF's box [-1.8, 1.8]^3 is fixed in
    the frame of the CAPE registration with its global translation removed: pass vertices in that frame.
    n_bbox = (n_vertices + n_uniform) // 2, SNARF's split ("IoU bbox" = the first half, "IoU surface" =
    the rest): with the defaults 2250 points, the first 1125 all near-surface, the last 1125 being 875
    near-surface + 250 uniform points. Labels: `label_points`. Deterministic in (seed, frame).
    """
    vertices, faces = _check_mesh(vertices, faces)
    n_vertices, n_uniform = _check_count(n_vertices, "n_vertices"), _check_count(n_uniform, "n_uniform")
    if n_vertices + n_uniform == 0:
        raise ValueError("n_vertices + n_uniform must be positive, got 0 points")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)) or not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0 (metres), got {sigma!r}")
    lo, hi = _check_box(box)
    rng = np.random.default_rng([_check_seed(seed, "seed"), _check_seed(frame, "frame"), 0xCA9E])
    near = vertices[rng.integers(0, vertices.shape[0], n_vertices)].astype(np.float64)
    near += float(sigma) * rng.standard_normal((n_vertices, 3))
    points = np.concatenate([near, rng.uniform(lo, hi, (n_uniform, 3))]).astype(np.float32)
    return EvalPoints(points, label_points(points, vertices, faces), (n_vertices + n_uniform) // 2)


def _check_protocol(protocol, **dfaust_only) -> ScoringProtocol:
    try:
        protocol = ScoringProtocol(protocol)
    except ValueError:
        raise ValueError(f"protocol must be a ScoringProtocol ({', '.join(p.value for p in ScoringProtocol)}), got {protocol!r}") from None
    given = [k for k, v in dfaust_only.items() if v is not None]
    if protocol is ScoringProtocol.CAPE and given:
        raise ValueError(f"{', '.join(given)} must be None for ScoringProtocol.CAPE (fixed {CAPE_N_VERTICES} + {CAPE_N_UNIFORM} points)")
    return protocol


def protocol_eval_points(
    protocol: ScoringProtocol,
    vertices,
    faces,
    *,
    seed: int,
    frame: int,
    n_bbox: int | None = None,
    n_surface: int | None = None,
    sigma: float = 0.01,
    bbox_scale: float | None = None,
) -> EvalPoints:
    """The evaluation set of `protocol` (a `ScoringProtocol` or its value) for one posed mesh.

    DFAUST: `eval_points`; n_bbox / n_surface / bbox_scale None mean its defaults (100k / 100k / 1.1).
    CAPE: `cape_eval_points` with SNARF's counts; its size is fixed by the protocol, so n_bbox,
    n_surface and bbox_scale must be None (a ValueError names any given, rather than ignoring it).
    """
    if _check_protocol(protocol, n_bbox=n_bbox, n_surface=n_surface, bbox_scale=bbox_scale) is ScoringProtocol.CAPE:
        return cape_eval_points(vertices, faces, seed=seed, frame=frame, sigma=sigma)
    return eval_points(vertices, faces, seed=seed, frame=frame, n_bbox=100_000 if n_bbox is None else n_bbox,
                       n_surface=100_000 if n_surface is None else n_surface, sigma=sigma,
                       bbox_scale=1.1 if bbox_scale is None else bbox_scale)


def iou_bbox(values, n_bbox: int):
    """The "IoU bbox" half of per-point values aligned with an `EvalPoints` set: values[..., :n_bbox]."""
    return values[..., : _check_count(n_bbox, "n_bbox")]


def iou_surface(values, n_bbox: int):
    """The "IoU surface" half of per-point values aligned with an `EvalPoints` set: values[..., n_bbox:]."""
    return values[..., _check_count(n_bbox, "n_bbox") :]


def _mesh_fingerprint(vertices: np.ndarray, faces: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(vertices, np.float32).tobytes())
    digest.update(np.ascontiguousarray(faces, np.int32).tobytes())
    return digest.hexdigest()[:32]


def cached_eval_points(
    cache_dir: str | os.PathLike,
    vertices,
    faces,
    *,
    seed: int,
    frame: int,
    n_bbox: int | None = None,
    n_surface: int | None = None,
    sigma: float = 0.01,
    bbox_scale: float | None = None,
    name: str | None = None,
    protocol: ScoringProtocol = ScoringProtocol.DFAUST,
) -> EvalPoints:
    """`protocol_eval_points`, cached as `<cache_dir>/<name or frame_%06d>.npz`.

    The file stores the settings (protocol included) and a fingerprint of the mesh; it is reused only
    when all match (otherwise recomputed and atomically replaced), so a stale cache, or one written under
    another protocol, can never be read silently. The DFAUST settings key is unchanged from before
    protocols existed (old caches stay valid); the CAPE key adds "protocol": "cape" and SNARF's counts.
    """
    vertices, faces = _check_mesh(vertices, faces)
    protocol = _check_protocol(protocol, n_bbox=n_bbox, n_surface=n_surface, bbox_scale=bbox_scale)
    settings = {"version": EVAL_CACHE_VERSION, "seed": int(seed), "frame": int(frame), "sigma": float(sigma),
                "mesh": _mesh_fingerprint(vertices, faces)}
    if protocol is ScoringProtocol.DFAUST:
        n_bbox = 100_000 if n_bbox is None else n_bbox
        settings.update(n_bbox=int(n_bbox), n_surface=int(100_000 if n_surface is None else n_surface),
                        bbox_scale=float(1.1 if bbox_scale is None else bbox_scale))
    else:
        settings.update(protocol=protocol.value, n_vertices=CAPE_N_VERTICES, n_uniform=CAPE_N_UNIFORM,
                        box=tuple(float(b) for b in SNARF_UNIFORM_BOX))
    key = np.asarray(repr(sorted(settings.items())))
    path = pathlib.Path(cache_dir) / f"{name or f'frame_{int(frame):06d}'}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if "settings" in data.files and str(data["settings"]) == str(key):
                    n_split = int(n_bbox) if protocol is ScoringProtocol.DFAUST else (CAPE_N_VERTICES + CAPE_N_UNIFORM) // 2
                    return EvalPoints(data["points"], data["occupancy"], n_split)
        except (ValueError, OSError, EOFError, KeyError):
            pass  # unreadable cache file: recompute and replace it
    result = protocol_eval_points(protocol, vertices, faces, seed=seed, frame=frame, n_bbox=n_bbox, n_surface=n_surface,
                                  sigma=sigma, bbox_scale=bbox_scale)
    atomic_save_npz(path, compressed=True, points=result.points, occupancy=result.occupancy, settings=key)
    return result


# ---------------------------------------------------------------------------------------------
# Training samples.


class TrainingPoints(NamedTuple):
    """points (n_surface + n_uniform, 3) float32 metres, occupancy (same,) float32 in {0, 1}."""

    points: np.ndarray | jax.Array
    occupancy: np.ndarray | jax.Array


def _uniform_box(vertices: np.ndarray, uniform_box) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(uniform_box, str):
        if uniform_box != "bbox":
            raise ValueError(f"uniform_box must be 'bbox' or a (lo, hi) pair, got {uniform_box!r}")
        return bbox_cube(vertices)
    lo, hi = (np.broadcast_to(np.asarray(b, np.float32), (3,)) for b in uniform_box)
    if not np.all(hi > lo):
        raise ValueError(f"uniform_box needs hi > lo, got {uniform_box!r}")
    return lo, hi


def training_points(
    vertices,
    faces,
    *,
    seed: int,
    step: int,
    frame: int,
    n_surface: int = 2000,
    n_uniform: int = 250,
    sigma: float = 0.01,
    surface_sampling: str = "vertices",
    uniform_box=SNARF_UNIFORM_BOX,
) -> TrainingPoints:
    """Fresh labelled training points for one frame at one step: a pure function of (seed, step, frame).

    surface_sampling: "vertices" (SNARF: mesh vertices with replacement) or "area" (area-weighted);
    uniform_box: (lo, hi) scalars or 3-vectors (SNARF's CAPE (-1.8, 1.8)) or "bbox" (the eval cube).
    """
    vertices, faces = _check_mesh(vertices, faces)
    n_surface, n_uniform = _check_count(n_surface, "n_surface"), _check_count(n_uniform, "n_uniform")
    rng = np.random.default_rng([_check_seed(seed, "seed"), _check_seed(step, "step"), _check_seed(frame, "frame"), 0x7A11])
    if surface_sampling == "vertices":
        base = vertices[rng.integers(0, vertices.shape[0], n_surface)].astype(np.float64)
    elif surface_sampling == "area":
        base = sample_surface(vertices, faces, n_surface, rng)
    else:
        raise ValueError(f"surface_sampling must be 'vertices' or 'area', got {surface_sampling!r}")
    lo, hi = _uniform_box(vertices, uniform_box)
    points = np.concatenate([base + sigma * rng.standard_normal((n_surface, 3)), rng.uniform(lo, hi, (n_uniform, 3))]).astype(np.float32)
    return TrainingPoints(points, label_points(points, vertices, faces).astype(np.float32))


class TrainingPool(NamedTuple):
    """Per-frame labelled pools: surface/uniform points (T, N, 3) float32 and occupancy (T, N) float32."""

    surface_points: jax.Array
    surface_occupancy: jax.Array
    uniform_points: jax.Array
    uniform_occupancy: jax.Array


def make_training_pool(
    vertices,
    faces,
    *,
    seed: int,
    pool_surface: int = 20_000,
    pool_uniform: int = 5_000,
    sigma: float = 0.01,
    surface_sampling: str = "vertices",
    uniform_box=SNARF_UNIFORM_BOX,
) -> TrainingPool:
    """Label a pool per frame once: vertices (T, V, 3) posed meshes -> `TrainingPool` with T frames.

    Frame t's pool is `training_points(..., seed=seed, step=0, frame=t)` with the pool sizes.
    """
    vertices = np.asarray(vertices, np.float32)
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (T, V, 3), got {vertices.shape}")
    sp, so, up, uo = [], [], [], []
    for t in range(vertices.shape[0]):
        sample = training_points(vertices[t], faces, seed=seed, step=0, frame=t, n_surface=pool_surface, n_uniform=pool_uniform,
                                 sigma=sigma, surface_sampling=surface_sampling, uniform_box=uniform_box)
        sp.append(sample.points[:pool_surface]); so.append(sample.occupancy[:pool_surface])
        up.append(sample.points[pool_surface:]); uo.append(sample.occupancy[pool_surface:])
    return TrainingPool(*(jnp.asarray(np.stack(a)) for a in (sp, so, up, uo)))


def draw_training_batch(pool: TrainingPool, frames: jax.Array, *, seed: int, step, n_surface: int = 2000, n_uniform: int = 250) -> TrainingPoints:
    """Draw points from the pools of `frames` (B,) int: points (B, n_surface + n_uniform, 3), occupancy (B, ...).

    Indices (with replacement) come from `jax.random.fold_in(key(seed), step)` folded with each frame
    index, so the batch is a pure function of (seed, step, frames); jit-compatible (step may be traced).
    """
    frames = jnp.asarray(frames)
    if frames.ndim != 1 or not jnp.issubdtype(frames.dtype, jnp.integer):
        raise ValueError(f"frames must be a 1-D integer array, got {frames.dtype} {frames.shape}")
    return _draw(pool, frames, jnp.asarray(step, jnp.uint32), seed=int(seed), n_surface=int(n_surface), n_uniform=int(n_uniform))


@functools.partial(jax.jit, static_argnames=("seed", "n_surface", "n_uniform"))
def _draw(pool: TrainingPool, frames, step, *, seed: int, n_surface: int, n_uniform: int) -> TrainingPoints:
    base = jax.random.fold_in(jax.random.key(seed), step)

    def one(frame):
        ks, ku = jax.random.split(jax.random.fold_in(base, frame))
        i = jax.random.randint(ks, (n_surface,), 0, pool.surface_points.shape[1])
        j = jax.random.randint(ku, (n_uniform,), 0, pool.uniform_points.shape[1])
        points = jnp.concatenate([pool.surface_points[frame, i], pool.uniform_points[frame, j]])
        occupancy = jnp.concatenate([pool.surface_occupancy[frame, i], pool.uniform_occupancy[frame, j]])
        return points, occupancy

    points, occupancy = jax.vmap(one)(frames)
    return TrainingPoints(points, occupancy)


__all__ = [
    "CAPE_N_UNIFORM",
    "CAPE_N_VERTICES",
    "EvalPoints",
    "SNARF_UNIFORM_BOX",
    "ScoringProtocol",
    "TrainingPool",
    "TrainingPoints",
    "bbox_cube",
    "cached_eval_points",
    "cape_eval_points",
    "draw_training_batch",
    "eval_points",
    "iou_bbox",
    "iou_surface",
    "label_points",
    "make_training_pool",
    "protocol_eval_points",
    "sample_surface",
    "training_points",
]
