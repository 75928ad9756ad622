"""NPT-style pose-transfer data generated from jaxpose's default body (docs/pose_transfer.md, "Data").

`I` identities x `P` poses of one body model, zero translation. Pose j is the same for every identity
(NPT's sampler, `jaxpose.bodies.poses.npt_pose(pose_index)`), which is what makes ground-truth triples
exist. Identity i has betas that depend only on (seed, i).

**Pose-index mapping.** Files are named with NPT's pose index, `id{i}_{pose_index}.obj`, so a file
name always means the same pose. NPT's 800 indices form blocks: 0–199 and 200–399 use the "wide"
sampler, 400–799 the "straight" one; 3D-CoreNet trains on 200–599 and tests on 600–799. For P poses
(`pose_index_plan`):
  * P <= 600: n_test = max(1, P // 3) test poses (0 if P < 2) taken from 600, 601, ...; the
    remaining P - n_test train poses are split half/half (wide gets the extra one) between
    200, 201, ... (wide) and 400, 401, ... (straight). P = 8 gives 200–202, 400–402, 600–601;
    P = 600 gives exactly 3D-CoreNet's 200–599 / 600–799 split.
  * 600 < P <= 800: 200–599 train, 600–799 test, plus 0 … P−601 (wide, in no split; NPT's unused
    block). P = 800 is NPT's full set 0–799.
**Identity split.** The last n_test = I // 2 identities are test identities (at least one when
I >= 2), the rest train — 3D-CoreNet holds out ids 16–29 of 0–29.
**Betas.** `beta_mode="normal"`: betas ~ N(0, I), each component truncated to ±2.5 by resampling.
The shipped ANNY betas are PCA coefficients whitened over adult shapes, so this is the plausible-
adult distribution. `beta_mode="npt_uniform"`: NPT's U[−4, 4] per component (warns: implausible sizes).

Output directory: `id{i}_{j}.obj`, `id{i}_rest.obj`, `cache.npz` (vertices (I, P, V, 3) float32,
rest (I, V, 3), faces (F, 3) int32, betas (I, K), poses (P, 24, 3) axis-angle radians, pose_indices
(P,), identities (I,)), `human_test_list` (3D-CoreNet format) and `meta.json` (written last: its
presence marks a complete dataset). Every file is written atomically; abandoned temporary files of a
killed run are removed when the next run starts (`jaxpose.io.atomic.remove_stale_temp_files`).

**Before anything is allocated or written** the config is validated (a non-empty test split needs
I >= 2 and P >= 2), the memory and disk use are estimated and compared with what is available
(`jaxpose.pose_transfer.npt_resources`), and the output directory is created and checked writable.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import re
import time
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxpose.bodies import default_body
from jaxpose.bodies.model import forward
from jaxpose.bodies.poses import npt_pose
from jaxpose.io.atomic import atomic_open, atomic_save_npz, atomic_write_text, remove_stale_temp_files
from jaxpose.io.mesh import format_obj, validate_mesh
from jaxpose.pose_transfer.dataset import JAXPOSE_META_FORMAT
from jaxpose.pose_transfer.npt_resources import npt_estimate, prepare_generation
from jaxpose.pose_transfer.test_lists import NPT_NAMING, format_test_list, make_test_triples, trivial_pair_counts

BETA_MODES = ("normal", "npt_uniform")
NORMAL_BETA_LIMIT = 2.5
NPT_UNIFORM_BETA_LIMIT = 4.0
MAX_POSES = 800
MAX_PRECISION = 12  # as jaxpose.io.mesh.save_mesh
_WIDE_TRAIN_START, _STRAIGHT_TRAIN_START, _TEST_START = 200, 400, 600
_OWN_FILE = re.compile(r"^(id\d+_(\d+|rest)\.obj|cache\.npz|meta\.json|human_test_list)$")


@dataclasses.dataclass(frozen=True)
class NptConfig:
    """What defines a generated dataset (stored in meta.json; equal configs give identical files).

    identities: I; poses: P (<= 800); resolution: default-body resolution ("low", "mid", "full");
    seed: identity betas and the test list; beta_mode: "normal" or "npt_uniform";
    num_test_triples: length of the generated test list (capped by the number of distinct triples);
    precision: decimals of OBJ coordinates (metres), in [0, 12].
    Errors name the `jaxpose data npt` flag of the field.
    """

    identities: int = 8
    poses: int = 24
    resolution: str = "low"
    seed: int = 0
    beta_mode: str = "normal"
    num_test_triples: int = 400
    precision: int = 6

    def __post_init__(self):
        if self.identities < 1:
            raise ValueError(f"identities must be >= 1 (--identities), got {self.identities}")
        if not 1 <= self.poses <= MAX_POSES:
            raise ValueError(f"poses must be in [1, {MAX_POSES}] (--poses; NPT's pose-index layout), got {self.poses}")
        if self.identities < 2 or self.poses < 2:
            raise ValueError(
                f"identities={self.identities} x poses={self.poses} leaves the test split empty: the last I // 2 "
                "identities and P // 3 poses are held out, so a non-empty test list needs --identities >= 2 "
                "and --poses >= 2"
            )
        if self.beta_mode not in BETA_MODES:
            raise ValueError(f"beta_mode must be one of {BETA_MODES} (--beta-mode), got {self.beta_mode!r}")
        if self.num_test_triples < 1:
            raise ValueError(f"num_test_triples must be >= 1 (--test-triples), got {self.num_test_triples}")
        if not 0 <= self.precision <= MAX_PRECISION:
            raise ValueError(f"precision must be in [0, {MAX_PRECISION}] decimals (--precision), got {self.precision}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative (--seed), got {self.seed}")


class PosePlan(NamedTuple):
    """NPT pose indices (P,) in generation order, and the train/test subsets (no "unused" poses)."""

    indices: tuple[int, ...]
    train: tuple[int, ...]
    test: tuple[int, ...]


def pose_index_plan(num_poses: int) -> PosePlan:
    """NPT pose indices for a P-pose dataset and its train/test pose split (module docstring)."""
    if not 1 <= num_poses <= MAX_POSES:
        raise ValueError(f"num_poses must be in [1, {MAX_POSES}], got {num_poses}")
    if num_poses <= 600:
        num_test = max(1, num_poses // 3) if num_poses >= 2 else 0
        num_train = num_poses - num_test
        num_wide = (num_train + 1) // 2
        wide = tuple(range(_WIDE_TRAIN_START, _WIDE_TRAIN_START + num_wide))
        straight = tuple(range(_STRAIGHT_TRAIN_START, _STRAIGHT_TRAIN_START + num_train - num_wide))
        test = tuple(range(_TEST_START, _TEST_START + num_test))
        return PosePlan(wide + straight + test, wide + straight, test)
    unused = tuple(range(num_poses - 600))
    train = tuple(range(_WIDE_TRAIN_START, _TEST_START))
    test = tuple(range(_TEST_START, 800))
    return PosePlan(unused + train + test, train, test)


def identity_split(num_identities: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(train ids, test ids) for identities 0..I-1: the last I // 2 are held out (>= 1 when I >= 2)."""
    if num_identities < 1:
        raise ValueError(f"num_identities must be >= 1, got {num_identities}")
    num_test = max(1, num_identities // 2) if num_identities >= 2 else 0
    cut = num_identities - num_test
    return tuple(range(cut)), tuple(range(cut, num_identities))


def sample_betas(seed: int, identity: int, num_betas: int, mode: str = "normal") -> np.ndarray:
    """Betas (num_betas,) float32 of `identity`: deterministic per (seed, identity).

    "normal": N(0, 1) per component, resampled until |beta| <= 2.5; "npt_uniform": U[-4, 4].
    """
    if mode not in BETA_MODES:
        raise ValueError(f"beta mode must be one of {BETA_MODES}, got {mode!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(identity), 0xBE7A]))
    if mode == "npt_uniform":
        return rng.uniform(-NPT_UNIFORM_BETA_LIMIT, NPT_UNIFORM_BETA_LIMIT, num_betas).astype(np.float32)
    betas = rng.standard_normal(num_betas)
    outside = np.abs(betas) > NORMAL_BETA_LIMIT
    while outside.any():
        betas[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(betas) > NORMAL_BETA_LIMIT
    return betas.astype(np.float32)


def npt_poses(pose_indices: Sequence[int]) -> np.ndarray:
    """Stack NPT poses: (P, 24, 3) float32 axis-angle radians from `jaxpose.bodies.poses.npt_pose`."""
    poses = np.stack([np.asarray(npt_pose(int(j)), np.float32) for j in pose_indices]) if len(pose_indices) else np.zeros((0, 24, 3), np.float32)
    if poses.shape[1:] != (24, 3):
        raise ValueError(f"npt_pose must return (24, 3) axis-angle arrays, got {poses.shape[1:]}")
    if not np.all(np.isfinite(poses)):
        raise ValueError("npt_pose returned non-finite angles")
    return poses


@functools.lru_cache(maxsize=1)
def _forward_chunk_fn():
    @jax.jit
    def pose_chunk(body, betas, poses):
        """(C, V, 3) vertices of one identity (betas (K,)) in C poses (C, J, 3); zero translation."""
        return forward(body, betas[None], poses).vertices

    return pose_chunk


def pose_identities(body, betas: np.ndarray, poses: np.ndarray, chunk_size: int = 64, progress=None,
                    on_identity=None):
    """Vertices (I, P, V, 3) float32 and rest meshes (I, V, 3) of every identity in every pose.

    One jitted body forward per (identity, chunk of poses); the last chunk is padded with rest poses
    so every call has the same shape and nothing recompiles. After each identity i:
    `on_identity(i, posed (P, V, 3), rest (V, 3))` (e.g. write its files), then `progress(P + 1)`.
    Raises FloatingPointError naming the identity if the forward gives NaN/Inf.
    """
    betas = np.asarray(betas, np.float32)
    poses = np.asarray(poses, np.float32)
    num_identities, num_poses = betas.shape[0], poses.shape[0]
    rest_pose = np.zeros((1,) + poses.shape[1:], np.float32)
    all_poses = np.concatenate([poses, rest_pose])  # the last "pose" gives the rest mesh
    chunk = min(chunk_size, len(all_poses))
    num_chunks = -(-len(all_poses) // chunk)
    padded = np.concatenate([all_poses, np.zeros((num_chunks * chunk - len(all_poses),) + poses.shape[1:], np.float32)])
    pose_chunk = _forward_chunk_fn()
    device_body = jax.device_put(body.astype(np.float32))
    out = np.empty((num_identities, num_poses, body.num_vertices, 3), np.float32)
    rest = np.empty((num_identities, body.num_vertices, 3), np.float32)
    for i in range(num_identities):
        parts = [np.asarray(pose_chunk(device_body, betas[i], padded[c * chunk:(c + 1) * chunk])) for c in range(num_chunks)]
        meshes = np.concatenate(parts)[: num_poses + 1]
        if not np.all(np.isfinite(meshes)):
            raise FloatingPointError(f"the body forward produced non-finite vertices for identity {i} "
                                     "(check the body file and poses)")  # fmt: skip
        out[i] = meshes[:num_poses]
        rest[i] = meshes[num_poses]
        if on_identity is not None:
            on_identity(i, out[i], rest[i])
        if progress is not None:
            progress(num_poses + 1)
    return out, rest


def _sha256(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def _body_description(body, resolution: str | None) -> dict:
    return {
        "resolution": resolution,
        "num_vertices": int(body.num_vertices),
        "num_faces": int(body.faces.shape[0]),
        "num_betas": int(body.num_betas),
        "sha256": _sha256(np.asarray(body.v_template, np.float32), np.asarray(body.faces, np.int32),
                          np.asarray(body.shapedirs, np.float32), np.asarray(body.weights, np.float32)),
    }


def expected_meta_key(config: NptConfig, body=None) -> dict:
    """What must match for an existing directory to count as this dataset (config, body, poses)."""
    if body is None:
        body = default_body(config.resolution)
    plan = pose_index_plan(config.poses)
    return {
        "config": dataclasses.asdict(config),
        "body": _body_description(body, config.resolution),
        "poses_sha256": _sha256(npt_poses(plan.indices)),
    }


def existing_dataset_matches(out_dir: str | os.PathLike, config: NptConfig, body=None) -> bool:
    """True if `out_dir/meta.json` describes exactly this dataset and its cache.npz exists."""
    out_dir = pathlib.Path(out_dir)
    meta_path = out_dir / "meta.json"
    if not meta_path.is_file() or not (out_dir / "cache.npz").is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    if meta.get("format") != JAXPOSE_META_FORMAT:
        return False
    key = expected_meta_key(config, body)
    return all(meta.get(k) == v for k, v in key.items())


class GenerationReport(NamedTuple):
    out_dir: pathlib.Path
    meta: dict
    seconds: float
    skipped: bool


def _previous_files(out_dir: pathlib.Path) -> list[os.DirEntry]:
    """The files of a previous dataset in `out_dir` (the names this module writes)."""
    if not out_dir.is_dir():
        return []
    return [entry for entry in os.scandir(out_dir) if entry.is_file() and _OWN_FILE.match(entry.name)]


def _clear_previous(out_dir: pathlib.Path) -> None:
    for entry in _previous_files(out_dir):
        os.unlink(entry.path)


def generate_npt_dataset(
    out_dir: str | os.PathLike,
    config: NptConfig = NptConfig(),
    *,
    body=None,
    overwrite: bool = False,
    skip_if_identical: bool = False,
    progress: bool = True,
    chunk_size: int = 64,
) -> GenerationReport:
    """Generate the dataset described by `config` into `out_dir` (module docstring for the layout).

    `body`: a `BodyModel` to use instead of `default_body(config.resolution)` (tests). If `out_dir`
    already holds a jaxpose dataset: with `skip_if_identical` an identical one is kept as is;
    otherwise a different one raises FileExistsError unless `overwrite` (which deletes the previous
    dataset's files first; other files are never touched). Before allocating or writing anything:
    NptResourceError if the estimated memory or disk use exceeds what is available,
    OutputDirectoryError if `out_dir` cannot be created or written. The progress bar counts each
    written mesh (I x (P + 1) OBJ files) once.
    """
    start = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    if body is None:
        body = default_body(config.resolution)
    if body.num_joints != 24:
        raise ValueError(f"NPT poses need a 24-joint SMPL-style body, got {body.num_joints} joints")
    if config.beta_mode == "npt_uniform":
        warnings.warn(
            "beta_mode='npt_uniform' draws betas from U[-4, 4]: on the whitened ANNY PCA basis (beta_1 is "
            "mostly overall size) this gives implausible heights and proportions",
            stacklevel=2,
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    if (out_dir / "meta.json").is_file():
        if skip_if_identical and existing_dataset_matches(out_dir, config, body):
            meta = json.loads((out_dir / "meta.json").read_text())
            return GenerationReport(out_dir, meta, time.perf_counter() - start, True)
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds a dataset (meta.json); pass overwrite=True (--overwrite) to replace it")
    reclaimable = sum(entry.stat().st_size for entry in _previous_files(out_dir)) if overwrite else 0
    prepare_generation(out_dir, config, body, reclaimable_bytes=reclaimable, chunk_size=chunk_size)
    remove_stale_temp_files(out_dir)  # left by a killed run (kill -9 between write and rename)
    if overwrite:
        _clear_previous(out_dir)

    plan = pose_index_plan(config.poses)
    train_ids, test_ids = identity_split(config.identities)
    identities = tuple(range(config.identities))
    betas = np.stack([sample_betas(config.seed, i, body.num_betas, config.beta_mode) for i in identities])
    poses = npt_poses(plan.indices)
    faces = validate_mesh(np.asarray(body.v_template), np.asarray(body.faces), source="body").faces

    def write_identity(row: int, posed: np.ndarray, rest_mesh: np.ndarray) -> None:
        for col, j in enumerate(plan.indices):
            _write_obj(out_dir / NPT_NAMING.file_name(identities[row], j), posed[col], faces, config.precision)
        _write_obj(out_dir / f"id{identities[row]}_rest.obj", rest_mesh, faces, config.precision)

    bar = tqdm(total=config.identities * (config.poses + 1), desc="npt data", unit="mesh") if progress else None
    try:
        vertices, rest = pose_identities(body, betas, poses, chunk_size, progress=bar.update if bar else None,
                                         on_identity=write_identity)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()

    atomic_save_npz(
        out_dir / "cache.npz", compressed=False, vertices=vertices, rest=rest, faces=faces, betas=betas,
        poses=poses, pose_indices=np.asarray(plan.indices, np.int64), identities=np.asarray(identities, np.int64),
    )
    triples = make_test_triples(test_ids, plan.test, config.num_test_triples, config.seed) if test_ids and plan.test else []
    if triples:
        atomic_write_text(out_dir / NPT_NAMING.list_name, format_test_list(triples, NPT_NAMING))
    meta = {
        "format": JAXPOSE_META_FORMAT,
        **expected_meta_key(config, body),
        "identities": list(identities),
        "pose_indices": list(plan.indices),
        "splits": {
            "train_identities": list(train_ids),
            "test_identities": list(test_ids),
            "train_poses": list(plan.train),
            "test_poses": list(plan.test),
        },
        "betas": betas.tolist(),
        "beta_mode": config.beta_mode,
        "pose_sampler": "jaxpose.bodies.poses.npt_pose (NPT's sampler: wide for index < 400, straight from 400)",
        "files": {
            "posed": "id{identity}_{pose_index}.obj",
            "rest": "id{identity}_rest.obj",
            "cache": "cache.npz",
            "test_list": NPT_NAMING.list_name if triples else None,
        },
        "test_list": trivial_pair_counts(triples),
        "units": "metres, y-up, zero translation",
        "generation_seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=1) + "\n")
    return GenerationReport(out_dir, meta, time.perf_counter() - start, False)


def _write_obj(path: pathlib.Path, vertices: np.ndarray, faces: np.ndarray, precision: int) -> None:
    with atomic_open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.write(format_obj(vertices, faces, precision))


__all__ = [
    "BETA_MODES", "GenerationReport", "NptConfig", "PosePlan", "existing_dataset_matches", "expected_meta_key",
    "generate_npt_dataset", "identity_split", "npt_estimate", "npt_poses", "pose_identities", "pose_index_plan",
    "sample_betas",
]
