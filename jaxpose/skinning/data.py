"""Data of the INS / SNARF / SNARF-NC tasks: one clothed subject in the CAPE layout (docs/skinning.md, "Data").

Config section `data` (see `configs/ins_small.py`):
  root            CAPE-layout directory (real CAPE or `jaxpose.skinning.clothed` output);
  generate        bool: build the synthetic clothed dataset at `root` when `root/meta.json` is missing,
                  with `resolution`, `subjects` = {subject: garment}, `frames_per_motion`, `seed`;
  subject         the subject trained on (one model per subject + clothing, as SNARF);
  train_split / eval_split   "train" | "test" | "ood" (the motion split of meta.json);
  max_eval_frames 0 = every frame of the eval split, else the first N (in sequence order);
  pool_surface, pool_uniform, sigma   per-frame labelled training pool (`make_training_pool`);
  uniform_box     where the pool's uniform points lie: "snarf" (SNARF's CAPE box [-1.8, 1.8]^3, default)
                  or "bbox" (each frame's evaluation cube, 1.1 x its largest extent). SNARF's box puts
                  most uniform points far from the body; with a small pool the networks (SIREN above
                  all) are then free to grow spurious "inside" blobs inside the evaluation cube, which
                  IoU bbox punishes. The CPU configs use "bbox" with a larger pool;
  n_surface, n_uniform                points drawn per training item (SNARF: 2000 + 250);
  eval_n_bbox, eval_n_surface         evaluation points per frame (protocol: 100k + 100k);
  eval_seed                           seed of the evaluation point sets.

Frames: vertices = v_posed − transl (SNARF), pose (24, 3), and the rectified bone transforms
B = T(θ) T(θ_star)⁻¹ of the subject's minimal body (`rectified_bone_transforms`, star canonical pose),
precomputed once per frame.

Training items (`PoolDataset`, epoch-aware): item = (frame, its training points); the points are drawn
from the frame's labelled pool with a NumPy generator keyed on (seed, epoch, frame), so a batch is a
pure function of (seed, step) and resuming is exact. Each item also carries its epoch, with which the
loss switches SNARF's first-epoch extras off after `loss.extras_epochs` epochs; the subject's
canonical (star-pose) joints, vertices and skinning weights those extras need are constants of the
task (`SubjectData`), not batch entries.

Evaluation items: the frame's 200k-protocol points (`cached_eval_points`, winding-number labels), an
"is bbox point" mask, the transforms, and the inside labels of the two non-learned baselines (AVG-LBS,
FIRST-LBS: fitted on the training frames with the minimal body's weights, reposed to the frame, then
the same winding-number inside test on their meshes).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose.bodies.canonical import rectified_bone_transforms, star_pose
from jaxpose.bodies.model import forward
from jaxpose.metrics.occupancy import occupancy_iou
from jaxpose.skinning.cape import CapeDataset, load_faces
from jaxpose.skinning.clothed import generate_clothed_dataset
from jaxpose.skinning.lbs_baselines import fit_lbs_baseline, reposed_mesh
from jaxpose.geometry.lbs import lbs_points
from jaxpose.geometry.root_finding import nearest_vertex_bones
from jaxpose.skinning.occupancy_points import (CAPE_N_UNIFORM, CAPE_N_VERTICES, SNARF_UNIFORM_BOX, ScoringProtocol, cached_eval_points,
                                               label_points, make_training_pool)
from jaxpose.skinning.warm_start import WarmStartTargets
from jaxpose.skinning.warm_start import make_targets as make_warm_start_targets
from jaxpose.training.data import ArrayDataset

SPLITS = ("train", "test", "ood")


@dataclasses.dataclass(frozen=True)
class SubjectFrames:
    """Frames of one subject: vertices (T, V, 3) metres (transl removed), pose (T, 24, 3) radians,
    transforms (T, 24, 4, 4) rectified bone transforms (star canonical pose), names (T,)."""

    vertices: np.ndarray
    pose: np.ndarray
    transforms: np.ndarray
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SubjectData:
    """The minimal body (`BodyModel`, betas 0), faces (F, 3) int32, canonical (star-pose) minimal vertices
    (V, 3) and joints (24, 3), and frames per split."""

    body: object
    faces: np.ndarray
    canonical_vertices: np.ndarray
    canonical_joints: np.ndarray
    splits: dict


def ensure_dataset(data: ml_collections.ConfigDict) -> pathlib.Path:
    """The dataset root; generated (synthetic clothed subjects) when missing and `data.generate`."""
    root = pathlib.Path(data.root)
    if not (root / "meta.json").is_file() and not (root / "sequences").is_dir():
        if not bool(data.get("generate", False)):
            raise FileNotFoundError(f"data.root {root} holds no CAPE-layout dataset (and data.generate is False)")
        generate_clothed_dataset(root, resolution=str(data.resolution), subjects=dict(data.subjects),
                                 frames_per_motion=int(data.frames_per_motion), seed=int(data.seed))
    return root


def _split_sequences(dataset: CapeDataset, subject: str, split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    meta = dataset.meta()
    if meta is None or subject not in meta.get("split", {}):
        raise ValueError(f"{dataset.root}: no meta.json split for subject {subject!r}; cannot select the {split!r} motions")
    return list(meta["split"][subject][split])


@functools.lru_cache(maxsize=4)
def _load_subject(root: str, subject: str, splits: tuple[str, ...]) -> SubjectData:
    dataset = CapeDataset(root)
    if subject not in dataset.subject_names:
        raise ValueError(f"{root}: subject {subject!r} not found; available: {dataset.subject_names}")
    cape_subject = dataset.subject(subject)
    body = cape_subject.body_model()
    faces = load_faces(root, body.num_vertices)
    betas = jnp.zeros((body.num_betas,), jnp.float32)
    star = jnp.asarray(star_pose(body.num_joints))
    canonical = forward(body, betas, star)
    out = {}
    for split in splits:
        stacks = [cape_subject.sequence(name).load() for name in _split_sequences(dataset, subject, split)]
        vertices = np.concatenate([s.vertices for s in stacks]).astype(np.float32)
        pose = np.concatenate([s.pose for s in stacks]).astype(np.float32)
        transforms = np.asarray(rectified_bone_transforms(body, betas, jnp.asarray(pose), star), np.float32)
        names = tuple(n for s in stacks for n in s.names)
        out[split] = SubjectFrames(vertices, pose, transforms, names)
    return SubjectData(body, faces, np.asarray(canonical.vertices, np.float32), np.asarray(canonical.joints, np.float32), out)


def load_subject(data: ml_collections.ConfigDict, splits=("train",)) -> SubjectData:
    """Load (generating if configured) the configured subject's frames for `splits`."""
    root = ensure_dataset(data)
    return _load_subject(str(root.resolve()), str(data.subject), tuple(splits))


class PoolDataset:
    """Epoch-aware training items: frame index + points drawn from its labelled pool (see module doc).

    `take(indices, epochs)` returns {"frame" (K,) int32, "epoch" (K,) int32, "points" (K, P, 3),
    "occupancy" (K, P) float32 0/1, "transforms" (K, 24, 4, 4), "pose" (K, 24, 3)}.
    """

    epoch_aware = True

    def __init__(self, pool, frames: SubjectFrames, seed: int, n_surface: int, n_uniform: int):
        self._pool = [np.asarray(a) for a in pool]
        self._frames = frames
        self._seed = int(seed)
        self._n_surface, self._n_uniform = int(n_surface), int(n_uniform)

    def __len__(self) -> int:
        return int(self._frames.vertices.shape[0])

    def _draw(self, frame: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self._seed, int(epoch), int(frame), 0x1D5])
        sp, so, up, uo = self._pool
        i = rng.integers(0, sp.shape[1], self._n_surface)
        j = rng.integers(0, up.shape[1], self._n_uniform)
        return np.concatenate([sp[frame, i], up[frame, j]]), np.concatenate([so[frame, i], uo[frame, j]])

    def take(self, indices: np.ndarray, epochs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        epochs = np.zeros_like(indices) if epochs is None else np.asarray(epochs, np.int64)
        drawn = [self._draw(f, e) for f, e in zip(indices, epochs)]
        return {
            "frame": indices.astype(np.int32),
            "epoch": epochs.astype(np.int32),
            "points": np.stack([d[0] for d in drawn]).astype(np.float32),
            "occupancy": np.stack([d[1] for d in drawn]).astype(np.float32),
            "transforms": self._frames.transforms[indices],
            "pose": self._frames.pose[indices],
        }


def _uniform_box(data: ml_collections.ConfigDict):
    name = str(data.get("uniform_box", "snarf"))
    if name == "snarf":
        return SNARF_UNIFORM_BOX
    if name == "bbox":
        return "bbox"
    raise ValueError(f"data.uniform_box must be 'snarf' or 'bbox', got {name!r}")


def make_train_data(config: ml_collections.ConfigDict) -> PoolDataset:
    data = config.data
    subject = load_subject(data, (str(data.train_split),))
    frames = subject.splits[str(data.train_split)]
    pool = make_training_pool(frames.vertices, subject.faces, seed=int(config.seed), pool_surface=int(data.pool_surface),
                              pool_uniform=int(data.pool_uniform), sigma=float(data.sigma),
                              uniform_box=_uniform_box(data))
    return PoolDataset(pool, frames, int(config.seed), int(data.n_surface), int(data.n_uniform))


def _baseline_inside(subject: SubjectData, kind: str, train: SubjectFrames, test: SubjectFrames, points: np.ndarray) -> np.ndarray:
    """Inside labels (T, N) bool of an LBS baseline's reposed meshes at the eval points (T, N, 3)."""
    baseline = fit_lbs_baseline(kind, jnp.asarray(train.vertices), jnp.asarray(train.transforms),
                                jnp.asarray(subject.body.weights, jnp.float32), subject.faces)
    out = np.zeros(points.shape[:2], bool)
    for t in range(points.shape[0]):
        vertices, faces = reposed_mesh(baseline, jnp.asarray(test.transforms[t]))
        out[t] = label_points(points[t], np.asarray(vertices), np.asarray(faces))
    return out


def _eval_frames(config: ml_collections.ConfigDict, data_dir: str | None, list_file: str | None):
    """(resolved data config, subject, the scored frames, their protocol point sets) of `make_eval_data`."""
    data = config.data.copy_and_resolve_references()
    if data_dir is not None:
        data.root = str(data_dir)
        data.generate = False
    split = str(data.eval_split)
    subject = load_subject(data, (str(data.train_split), split))
    frames = subject.splits[split]
    keep = np.arange(len(frames.names))
    if list_file is not None:
        path = pathlib.Path(list_file)
        if not path.is_file():
            raise FileNotFoundError(f"frame list {path} not found")
        wanted = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        unknown = sorted(set(wanted) - set(frames.names))
        if unknown:
            raise ValueError(f"{path}: frames not in the {split!r} split: {unknown[:5]}")
        keep = np.asarray([frames.names.index(n) for n in wanted])
    if int(data.max_eval_frames) > 0:
        keep = keep[: int(data.max_eval_frames)]
    frames = SubjectFrames(frames.vertices[keep], frames.pose[keep], frames.transforms[keep], tuple(frames.names[i] for i in keep))
    protocol = scoring_protocol(data)
    cache = pathlib.Path(data.root) / "eval_cache" / str(data.subject)
    counts = {} if protocol is ScoringProtocol.CAPE else {"n_bbox": int(data.eval_n_bbox), "n_surface": int(data.eval_n_surface)}
    sets = [cached_eval_points(cache, frames.vertices[t], subject.faces, seed=int(data.eval_seed), frame=t,
                               name=frames.names[t] + ("_cape" if protocol is ScoringProtocol.CAPE else ""), protocol=protocol, **counts)
            for t in range(len(frames.names))]
    return data, subject, frames, sets


def eval_points(config: ml_collections.ConfigDict, data_dir: str | None = None, list_file: str | None = None) -> dict[str, np.ndarray]:
    """The scored frames' evaluation points (T, N, 3) float32, their labels "occupancy" (T, N) bool and
    bone "transforms" (T, J, 4, 4) — `make_eval_data` without the baselines' labels."""
    _, _, frames, sets = _eval_frames(config, data_dir, list_file)
    return {"points": np.stack([s.points for s in sets]).astype(np.float32),
            "occupancy": np.stack([s.occupancy for s in sets]).astype(bool), "transforms": frames.transforms}


def make_eval_data(config: ml_collections.ConfigDict, data_dir: str | None = None, list_file: str | None = None) -> ArrayDataset:
    """Per-frame evaluation items of `data.eval_split` (held-out motions by default); see module doc.

    `data_dir` replaces `data.root` (a CAPE-layout directory); `list_file` (one frame name per line)
    restricts the frames.
    """
    data, subject, frames, sets = _eval_frames(config, data_dir, list_file)
    points = np.stack([s.points for s in sets]).astype(np.float32)
    train = subject.splits[str(data.train_split)]
    items = {
        "points": points,
        "occupancy": np.stack([s.occupancy for s in sets]).astype(bool),
        "transforms": frames.transforms,
        "pose": frames.pose,
        "avg_lbs_inside": _baseline_inside(subject, "avg", train, frames, points),
        "first_lbs_inside": _baseline_inside(subject, "first", train, frames, points),
    }
    k = int(data.get("eval_prefilter_bones", 0))
    if k:
        items["init_bones"] = nearest_bones(subject, frames.transforms, points, k)
    return ArrayDataset(items)


def nearest_bones(subject: SubjectData, transforms: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    """The nearest-bones pre-filter of the evaluation (Fast-SNARF-style): for each point (T, N, 3), the k
    bones (T, N, k) int32 of largest weight at its nearest vertex of the minimal body posed into the
    frame's pose (transforms (T, J, 4, 4)) — the only initial bones its root finding starts from."""
    weights = jnp.asarray(subject.body.weights, jnp.float32)
    canonical = jnp.asarray(subject.canonical_vertices)
    out = np.zeros(points.shape[:2] + (k,), np.int32)
    for t in range(points.shape[0]):
        posed = lbs_points(canonical, weights, jnp.asarray(transforms[t]))
        for start in range(0, points.shape[1], 8192):
            chunk = jnp.asarray(points[t, start:start + 8192])
            out[t, start:start + 8192] = np.asarray(nearest_vertex_bones(chunk, posed, weights, k))
    return out


def scoring_protocol(data: ml_collections.ConfigDict) -> ScoringProtocol:
    """`data.eval_protocol`: "cape" (SNARF's CAPE evaluation set, the paper-comparable one) or "dfaust"
    (eval_n_bbox uniform points in the 1.1x cube + eval_n_surface near-surface points; default)."""
    name = str(data.get("eval_protocol", "dfaust"))
    try:
        return ScoringProtocol(name)
    except ValueError:
        raise ValueError(f"data.eval_protocol must be one of {[p.value for p in ScoringProtocol]}, got {name!r}") from None


def eval_bbox_count(data: ml_collections.ConfigDict) -> int:
    """How many of each frame's evaluation points form the "IoU bbox" column (the rest: "IoU surface")."""
    if scoring_protocol(data) is ScoringProtocol.CAPE:
        return (CAPE_N_VERTICES + CAPE_N_UNIFORM) // 2  # SNARF's split: the first half is "bbox"
    return int(data.eval_n_bbox)


@functools.lru_cache(maxsize=4)
def _warm_start_targets(root: str, subject_name: str, split: str, seed: int) -> WarmStartTargets:
    subject = _load_subject(root, subject_name, (split,))
    return make_warm_start_targets(subject.canonical_vertices, subject.faces, subject.body.weights,
                                   subject.splits[split].pose, seed=seed)


def warm_start_targets(data: ml_collections.ConfigDict) -> WarmStartTargets:
    """The warm-start targets (jaxpose.skinning.warm_start) of the configured subject: its star-pose minimal
    body and its training poses (cached per process)."""
    root = str(ensure_dataset(data).resolve())
    return _warm_start_targets(root, str(data.subject), str(data.train_split), int(data.seed))


def occupancy_ious(predicted_inside: jax.Array, occupancy: jax.Array, is_bbox: jax.Array) -> dict[str, jax.Array]:
    """Per-frame IoU bbox and IoU surface (B,) of predicted inside labels (B, N) bool against the
    labels (B, N) bool, over the points where `is_bbox` (B, N) bool is True / False (docs/skinning.md,
    "Evaluation protocol")."""
    if predicted_inside.shape != occupancy.shape or is_bbox.shape != occupancy.shape:
        raise ValueError(f"predicted occupancy {predicted_inside.shape}, labels {occupancy.shape} and the bbox mask "
                         f"{is_bbox.shape} must have one shape")  # fmt: skip
    return {
        "iou_bbox": occupancy_iou(predicted_inside & is_bbox, occupancy & is_bbox),
        "iou_surface": occupancy_iou(predicted_inside & ~is_bbox, occupancy & ~is_bbox),
    }


def make_occupancy_metrics(n_bbox: int):
    """The task's `eval_metrics(predicted_inside (B, N), batch)`: each frame's first `n_bbox` evaluation
    points are the bbox set (`data.eval_n_bbox`), the rest the near-surface set."""

    def eval_metrics(predicted_inside: jax.Array, batch) -> dict[str, jax.Array]:
        occupancy = batch["occupancy"]
        is_bbox = jnp.broadcast_to(jnp.arange(occupancy.shape[-1]) < n_bbox, occupancy.shape)
        return occupancy_ious(predicted_inside, occupancy, is_bbox)

    return eval_metrics


BASELINES = {
    "avg_lbs": lambda batch: batch["avg_lbs_inside"],
    "first_lbs": lambda batch: batch["first_lbs_inside"],
}


def data_config(*, root: str, subject: str = "synth01", garment: str = "skirt", resolution: str = "low",
                frames_per_motion: int = 8, eval_n: int = 10_000, max_eval_frames: int = 0) -> ml_collections.ConfigDict:
    """The `data` config section shared by the INS/SNARF configs."""
    data = ml_collections.ConfigDict()
    data.root = root
    data.generate = True
    data.resolution = resolution
    data.subjects = {subject: garment}
    data.frames_per_motion = frames_per_motion
    data.seed = 0
    data.subject = subject
    data.train_split = "train"
    data.eval_split = "test"
    data.max_eval_frames = max_eval_frames
    data.pool_surface = 20_000
    data.pool_uniform = 5_000
    data.uniform_box = "snarf"
    data.sigma = 0.01
    data.n_surface = 2000
    data.n_uniform = 250
    data.eval_n_bbox = eval_n
    data.eval_n_surface = eval_n
    data.eval_seed = 0
    data.eval_protocol = "dfaust"
    data.eval_prefilter_bones = 0  # 0: all initial bones; k: the k bones of the nearest posed body vertex
    return data


__all__ = ["BASELINES", "PoolDataset", "SubjectData", "SubjectFrames", "data_config", "ensure_dataset", "eval_bbox_count", "eval_points",
           "load_subject", "make_eval_data", "make_occupancy_metrics", "make_train_data", "nearest_bones",
           "occupancy_ious", "scoring_protocol", "warm_start_targets"]
