"""What the pose-transfer tasks (3D-CoreNet, NPT) share: data, losses, metrics, baselines, evaluation.

Data (corenet.md §1, §8–9)
--------------------------
Training and test meshes come from one `PoseTransferData` directory (`config.data.root`, made by
`jaxpose data npt`). Every mesh is centred on its own bounding-box centre once, on the host, when the
data are loaded (no scale normalisation; the dataset is metres).

* Training items (`TrainPairs`): an epoch has `config.data.pairs_per_epoch` items (4000 officially =
  500 iterations of 8). Item k of epoch e is a pair drawn from its own counter-based generator seeded
  by (data seed, e, k): identity mesh = uniform train identity in a uniform train pose, pose mesh = an
  independent uniform train identity and train pose, GT = the identity in the pose mesh's pose — as
  3D-CoreNet's loader, whose pairs are fresh every epoch, but reproducible. The whole (I, P, V, 3)
  vertex array stays in host memory (30 × 800 × 13.7k × 3 float32 ≈ 3.9 GB at full resolution) and
  each batch is gathered on the host (3 · B meshes, ≈ 4 MB at B = 8, full resolution); the device
  only ever holds one batch.
* Vertex shuffling runs on device in the loss, from the step's RNG key: identity and GT share one
  permutation per sample, the pose mesh gets its own, and the identity faces are remapped through the
  inverse permutation for the edge loss (`random_permutation_batch`).
* Loss weights come from `config.loss` and travel in the batch (`loss_weights`, (B, 2)), because the
  engine's `loss_fn(model, batch, rng)` sees no config.

Loss (corenet.md §7): `reconstruction_weight · mean((ŷ − y)²) + edge_weight · edge`, the edge term
being NPT's mean over faces of Σ_edges |‖e_ŷ‖/‖e_identity‖ − 1| with the *input identity mesh* as the
reference, averaged over the batch. 3D-CoreNet: 1000 and 0.5; NPT: 1 and 0.0005 (the same ratio).

Evaluation (corenet.md §9–10)
-----------------------------
Test triples come from `--list`, the dataset's own `human_test_list`, or a generated fixed-seed list.
Protocol: the identity mesh (and, equivalently, its GT) and the pose mesh are permuted with a fixed
permutation seed per triple (`permutation_key`); the model runs on the permuted meshes; its output is
un-permuted back to the identity's vertex order (so it can be compared vertex-wise with the GT in
file order: PMD is a mean over vertices, CD and EMD ignore order, so this equals comparing the
permuted output with the equally permuted GT); both meshes are centred on their own bbox; then
PMD, CD and EMD. Columns are printed in the papers' units:

  PMD_1e-4m2 = PMD × 10⁴ (PMD in m²), CD_1e-4m2 = CD × 10⁴ (m²), EMD_1e-3m = EMD × 10³ (m).

EMD is the exact assignment (SciPy, host, through `jax.pure_callback`) unless asked otherwise.
`jaxpose eval corenet|npt` runs `eval_main`: one table with any mix of pose-transfer checkpoints (each
checkpoint's saved config names its task), an extra "raw OT warp" row per 3D-CoreNet checkpoint, and
the baselines, reported as mean ± std over the permutation seeds (each value a mean over triples).

Baselines: "copy_identity" (the identity mesh unchanged) and "deformation_transfer" (Sumner &
Popović, oracle protocol of `jaxpose.models.deformation_transfer`: S0 = the pose mesh's subject in the
identity mesh's pose, taken from the dataset; shared topology, identity triangle correspondence).
Both are independent of the vertex order, so they are run once on the file-order meshes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import pathlib
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose.data.pose_transfer import (
    PoseTransferData,
    Triple,
    random_permutation_batch,
    trivial_pair_counts,
)
from jaxpose.geometry.bbox import center_on_bbox
from jaxpose.geometry.mesh import edge_length_ratio_loss
from jaxpose.metrics.surface import CD_SCALE, EMD_SCALE, PMD_SCALE, chamfer_distance, emd_exact, emd_sinkhorn, pmd
from jaxpose.training.data import ArrayDataset

METRIC_COLUMNS = {"pmd": "PMD_1e-4m2", "cd": "CD_1e-4m2", "emd": "EMD_1e-3m"}
"""Metric name -> column name; the column holds the value in the papers' printed units."""
METRIC_SCALES = {"pmd": PMD_SCALE, "cd": CD_SCALE, "emd": EMD_SCALE}
UNITS_NOTE = (
    "Units as the papers print them: PMD_1e-4m2 = PMD × 10⁴ (PMD in m²), CD_1e-4m2 = CD × 10⁴ (m²), "
    "EMD_1e-3m = EMD × 10³ (m); each mesh centred on its own bounding box."
)
EMD_CHOICES = ("exact", "sinkhorn", "none")
CHAMFER_BLOCK = 1024
_TRAIN_PAIR_TAG = 0x7A1B
_COPY_IDENTITY, _DT = "copy_identity", "deformation_transfer"
# Host callbacks may run concurrently on several device threads (one per shard); SciPy's solvers and
# the factorisation cache are not thread-safe, so each callback body runs under this lock.
_HOST_CALLBACK_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def open_data(root: str | os.PathLike, build_args: str = "") -> PoseTransferData:
    """`PoseTransferData.open(root)`; a missing directory raises FileNotFoundError naming the command."""
    root = pathlib.Path(root)
    if not root.is_dir():
        command = f"jaxpose data npt --out {root}" + (f" {build_args}" if build_args else "")
        raise FileNotFoundError(f"pose-transfer data directory {root} does not exist; build it with `{command}`")
    return PoseTransferData.open(root)


def centred_vertices(data: PoseTransferData) -> np.ndarray:
    """All meshes (I, P, V, 3) float32, each translated so its bounding-box centre is the origin.

    Centres in place, one identity at a time, on the dataset's own (cached) array when it is writable,
    so a full-resolution dataset is not held twice.
    """
    vertices = data.as_arrays()
    if not vertices.flags.writeable or vertices.dtype != np.float32:
        vertices = np.array(vertices, dtype=np.float32)
    if getattr(data, "_jaxpose_centred", None) is vertices:
        return vertices
    for row in range(vertices.shape[0]):
        block = vertices[row]
        block -= 0.5 * (block.max(axis=1, keepdims=True) + block.min(axis=1, keepdims=True))
    data._jaxpose_centred = vertices  # marks the cached array as centred (open_data returns fresh objects)
    return vertices


class TrainPairs:
    """Epoch-aware training set of (identity, pose, GT) pairs; see the module docstring.

    `take(indices, epochs)` returns {"identity" (K, V, 3), "pose" (K, V, 3), "gt" (K, V, 3) float32
    bbox-centred, "identity_faces" (K, F, 3) int32, "loss_weights" (K, 2) float32}.
    """

    epoch_aware = True

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        identity_rows: Sequence[int],
        pose_cols: Sequence[int],
        pairs_per_epoch: int,
        seed: int,
        loss_weights: tuple[float, float],
    ):
        if vertices.ndim != 4 or vertices.shape[-1] != 3:
            raise ValueError(f"vertices must have shape (I, P, V, 3), got {vertices.shape}")
        if pairs_per_epoch <= 0:
            raise ValueError(f"config.data.pairs_per_epoch must be positive, got {pairs_per_epoch}")
        self.identity_rows = np.asarray(identity_rows, np.int64)
        self.pose_cols = np.asarray(pose_cols, np.int64)
        if self.identity_rows.size == 0 or self.pose_cols.size == 0:
            raise ValueError("the dataset has no train identities or no train poses")
        self.vertices = vertices
        self.faces = np.asarray(faces, np.int32)
        self.pairs_per_epoch = int(pairs_per_epoch)
        self.seed = int(seed)
        self.loss_weights = np.asarray(loss_weights, np.float32)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def pair_positions(self, indices: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        """(K, 4) int64 array positions (identity row, identity col, pose row, pose col) of each item."""
        indices = np.asarray(indices, np.int64)
        epochs = np.broadcast_to(np.asarray(epochs, np.int64), indices.shape)
        limits = [self.identity_rows.size, self.pose_cols.size, self.identity_rows.size, self.pose_cols.size]
        draws = np.empty((indices.size, 4), np.int64)
        for k, (epoch, index) in enumerate(zip(epochs, indices)):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), int(index), _TRAIN_PAIR_TAG]))
            draws[k] = rng.integers(0, limits)
        return np.stack(
            [self.identity_rows[draws[:, 0]], self.pose_cols[draws[:, 1]],
             self.identity_rows[draws[:, 2]], self.pose_cols[draws[:, 3]]], axis=1,
        )  # fmt: skip

    def take(self, indices: np.ndarray, epochs: np.ndarray | int = 0) -> dict[str, np.ndarray]:
        positions = self.pair_positions(indices, epochs)
        id_row, id_col, pose_row, pose_col = positions.T
        count = positions.shape[0]
        return {
            "identity": self.vertices[id_row, id_col],
            "pose": self.vertices[pose_row, pose_col],
            "gt": self.vertices[id_row, pose_col],
            "identity_faces": np.broadcast_to(self.faces[None], (count,) + self.faces.shape).copy(),
            "loss_weights": np.broadcast_to(self.loss_weights[None], (count, 2)).copy(),
        }


def make_train_data(config: ml_collections.ConfigDict) -> TrainPairs:
    """The training pairs of `config.data.root` (train identities × train poses of its splits)."""
    data = open_data(config.data.root, config.data.get("build_args", ""))
    vertices = centred_vertices(data)
    return TrainPairs(
        vertices,
        data.faces,
        [data.identity_row(i) for i in data.train_identities],
        [data.pose_col(p) for p in data.train_poses],
        int(config.data.pairs_per_epoch),
        int(config.seed),
        (float(config.loss.reconstruction_weight), float(config.loss.edge_weight)),
    )


def permutation_keys(seed: int, count: int) -> np.ndarray:
    """(count, 2) uint32 raw keys, key i = fold_in(PRNGKey(seed), i): triple i's permutations."""
    base = jax.random.PRNGKey(int(seed))
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(count, dtype=jnp.uint32))
    return np.asarray(keys, np.uint32)


def eval_arrays(data: PoseTransferData, triples: Sequence[Triple], permutation_seed: int = 0) -> dict[str, np.ndarray]:
    """Test arrays for `triples`, all bbox-centred float32 in file vertex order:
    identity (T, N, 3), pose (T, M, 3), gt (T, N, 3), source_reference (T, M, 3) = the pose mesh's
    subject in the identity mesh's pose (deformation transfer's S0), identity_faces (T, F, 3) int32,
    permutation_key (T, 2) uint32."""
    if not triples:
        raise ValueError("no test triples")
    vertices = centred_vertices(data)
    row, col = data.identity_row, data.pose_col
    ia = np.array([row(t.identity_id) for t in triples])
    pa = np.array([col(t.identity_pose) for t in triples])
    ib = np.array([row(t.pose_id) for t in triples])
    pb = np.array([col(t.pose_pose) for t in triples])
    faces = np.broadcast_to(data.faces[None], (len(triples),) + data.faces.shape).copy()
    return {
        "identity": vertices[ia, pa],
        "pose": vertices[ib, pb],
        "gt": vertices[ia, pb],
        "source_reference": vertices[ib, pa],
        "identity_faces": faces,
        "permutation_key": permutation_keys(permutation_seed, len(triples)),
    }


def with_permutation_seed(dataset: ArrayDataset, seed: int) -> ArrayDataset:
    """The same test set with the per-triple permutation keys of `seed`."""
    arrays = dict(dataset.arrays)
    arrays["permutation_key"] = permutation_keys(seed, len(dataset))
    return ArrayDataset(arrays)


def test_triples(config: ml_collections.ConfigDict, data: PoseTransferData, list_file: str | None) -> list[Triple]:
    """`list_file`, else `config.eval.list_file`, else the dataset's list, else a generated one;
    truncated to `config.eval.max_triples` when that is positive."""
    ev = config.eval
    list_file = list_file or (ev.get("list_file", "") or None)
    triples = data.test_triples(list_file, num_triples=int(ev.get("num_triples", 400)), seed=int(ev.get("list_seed", 0)))
    limit = int(ev.get("max_triples", 0))
    return triples[:limit] if limit > 0 else triples


def make_eval_data(config: ml_collections.ConfigDict, data_dir: str | None, list_file: str | None) -> ArrayDataset:
    """Test set of `data_dir` (default `config.data.root`) with the first of `config.eval.permutation_seeds`."""
    data = open_data(data_dir or config.data.root, "" if data_dir else config.data.get("build_args", ""))
    seeds = tuple(config.eval.permutation_seeds)
    return ArrayDataset(eval_arrays(data, test_triples(config, data, list_file), int(seeds[0]) if seeds else 0))


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------


def pose_transfer_loss(
    output: jax.Array,
    gt: jax.Array,
    identity: jax.Array,
    identity_faces: jax.Array,
    reconstruction_weight,
    edge_weight,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, {"reconstruction_mse", "edge"}) in float32.

    output, gt, identity: (B, N, 3) in one (shuffled) vertex order; identity_faces: (B, F, 3) int in
    that order. loss = reconstruction_weight · mean((output − gt)²) over B·N·3 + edge_weight ·
    mean_b edge_length_ratio_loss(output_b, identity_b, faces_b).
    """
    output = output.astype(jnp.float32)
    diff = output - gt.astype(jnp.float32)
    reconstruction = jnp.mean(diff * diff)
    edge = jnp.mean(jax.vmap(edge_length_ratio_loss)(output, identity.astype(jnp.float32), identity_faces))
    loss = jnp.asarray(reconstruction_weight, jnp.float32) * reconstruction + jnp.asarray(edge_weight, jnp.float32) * edge
    return loss, {"reconstruction_mse": reconstruction, "edge": edge}


def loss_fn(model, batch: Mapping[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Engine loss: shuffle vertices on device from `rng`, run `model(identity, pose)`, weighted loss."""
    shuffled = random_permutation_batch(rng, batch["identity"], batch["gt"], batch["identity_faces"], batch["pose"])
    output = model(shuffled.identity, shuffled.pose).output
    weights = jnp.mean(batch["loss_weights"].astype(jnp.float32), axis=0)  # every row holds the same pair
    return pose_transfer_loss(output, shuffled.gt, shuffled.identity, shuffled.identity_faces, weights[0], weights[1])


# ----------------------------------------------------------------------------------------------
# Prediction under the test protocol
# ----------------------------------------------------------------------------------------------


def _take_rows(points: jax.Array, index: jax.Array) -> jax.Array:
    return jax.vmap(lambda x, i: x[i])(points, index)


def permuted_forward(model, batch: Mapping[str, jax.Array]):
    """Run `model` on the identity and pose meshes permuted by each triple's `permutation_key`.

    Returns the model's `PoseTransferOutput` with every field mapped back to the identity's file
    vertex order (B, N, 3).
    """
    keys = batch["permutation_key"]
    identity, pose = batch["identity"], batch["pose"]
    perm_id = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, 0), identity.shape[1]))(keys)
    perm_pose = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, 1), pose.shape[1]))(keys)
    result = model(_take_rows(identity, perm_id), _take_rows(pose, perm_pose))
    inverse = jnp.argsort(perm_id, axis=-1)
    return jax.tree.map(lambda x: _take_rows(x, inverse), result)


def predict(model, batch: Mapping[str, jax.Array]) -> jax.Array:
    """The model's output (B, N, 3) in the identity's vertex order (test protocol, see module doc)."""
    return permuted_forward(model, batch).output


def predict_raw_warp(model, batch: Mapping[str, jax.Array]) -> jax.Array:
    """3D-CoreNet's optimal-transport warp before refinement (B, N, 3), identity vertex order."""
    warped = permuted_forward(model, batch).warped
    if warped is None:
        raise ValueError("this model has no correspondence warp (only 3D-CoreNet has a raw-warp row)")
    return warped


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


class EmdTimer:
    """Accumulates the host time spent in the EMD callback (seconds) and the number of pairs."""

    def __init__(self):
        self.seconds = 0.0
        self.pairs = 0


def _emd_host(method: str, timer: EmdTimer | None, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    with _HOST_CALLBACK_LOCK:
        return _emd_host_locked(method, timer, pred, target)


def _emd_host_locked(method: str, timer: EmdTimer | None, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    start = time.perf_counter()
    if method == "exact":
        values = emd_exact(np.asarray(pred, np.float64), np.asarray(target, np.float64))
    else:
        values = np.asarray(emd_sinkhorn(np.asarray(pred, np.float32), np.asarray(target, np.float32), epsilon=1e-3,
                                         batch_size=CHAMFER_BLOCK), np.float64)  # fmt: skip
    if timer is not None:
        timer.seconds += time.perf_counter() - start
        timer.pairs += int(np.shape(pred)[0])
    return np.asarray(values, np.float32).reshape(np.shape(pred)[0])


def make_eval_metrics(emd: str = "none", timer: EmdTimer | None = None) -> Callable:
    """`eval_metrics(prediction (B, N, 3), batch) -> {column: (B,)}` in the papers' units.

    PMD and CD run on device (float32, difference-based distances); EMD ("exact" | "sinkhorn") on the
    host via `jax.pure_callback` (timed into `timer`); "none" leaves the EMD column out.
    """
    if emd not in EMD_CHOICES:
        raise ValueError(f"emd must be one of {EMD_CHOICES}, got {emd!r}")

    def eval_metrics(prediction: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        pred = center_on_bbox(prediction.astype(jnp.float32))
        target = center_on_bbox(batch["gt"].astype(jnp.float32))
        out = {
            METRIC_COLUMNS["pmd"]: pmd(pred, target) * PMD_SCALE,
            METRIC_COLUMNS["cd"]: chamfer_distance(pred, target, block_size=CHAMFER_BLOCK) * CD_SCALE,
        }
        if emd != "none":
            shape = jax.ShapeDtypeStruct(pred.shape[:1], jnp.float32)
            values = jax.pure_callback(functools.partial(_emd_host, emd, timer), shape, pred, target)
            out[METRIC_COLUMNS["emd"]] = values * EMD_SCALE
        return out

    return eval_metrics


eval_metrics = make_eval_metrics("none")
"""The engine's in-training evaluation metrics: PMD and CD (EMD is left to `jaxpose eval`)."""


# ----------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------


def copy_identity(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Baseline: predict the identity mesh unchanged (its own pose)."""
    return batch["identity"]


@functools.lru_cache(maxsize=1)
def _transfer_engine():
    from jaxpose.models.deformation_transfer import DeformationTransfer

    return DeformationTransfer(cache_size=64)


def _deformation_transfer_host(identity, faces, pose, source_reference) -> np.ndarray:
    with _HOST_CALLBACK_LOCK:
        return _deformation_transfer_host_locked(identity, faces, pose, source_reference)


def _deformation_transfer_host_locked(identity, faces, pose, source_reference) -> np.ndarray:
    engine = _transfer_engine()
    out = np.empty(np.shape(identity), np.float32)
    for b in range(out.shape[0]):
        face_array = np.asarray(faces[b], np.int64)
        out[b] = engine(identity[b], face_array, pose[b], source_reference=source_reference[b], source_faces=face_array)
    return out


def deformation_transfer(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Baseline: Deformation Transfer of S0 → pose mesh onto the identity (oracle S0; host SciPy).

    The pose mesh shares the identity's topology (one dataset), so `identity_faces` are its faces too.
    """
    shape = jax.ShapeDtypeStruct(batch["identity"].shape, jnp.float32)
    return jax.pure_callback(
        _deformation_transfer_host, shape, batch["identity"], batch["identity_faces"], batch["pose"],
        batch["source_reference"],
    )  # fmt: skip


BASELINES: dict[str, Callable] = {_COPY_IDENTITY: copy_identity, _DT: deformation_transfer}
BASELINE_ROW_NAMES = {_COPY_IDENTITY: "copy_identity", _DT: "deformation_transfer (oracle S0)"}


# ----------------------------------------------------------------------------------------------
# Evaluation harness (`jaxpose eval corenet|npt`)
# ----------------------------------------------------------------------------------------------

POSE_TRANSFER_TASKS = ("corenet", "npt")


def parse_seeds(text: str) -> tuple[int, ...]:
    """"0,1,2" -> (0, 1, 2); ValueError on anything else."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--permutation_seeds must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError("--permutation_seeds is empty")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--permutation_seeds has repeated seeds: {text!r}")
    return seeds


def summarize_over_seeds(per_seed_means: Sequence[Mapping[str, float]], count: int):
    """{column: MetricSummary(mean over seeds, sample std over seeds (0 for one seed), count)}."""
    from jaxpose.training.evaluation import MetricSummary

    out = {}
    for name in per_seed_means[0]:
        values = np.asarray([m[name] for m in per_seed_means], np.float64)
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[name] = MetricSummary(float(values.mean()), std, int(count))
    return out


@dataclasses.dataclass
class PoseTransferEvaluation:
    """Result of `evaluate`: rows -> {column: MetricSummary}, plus the protocol facts for the notes."""

    results: dict
    triples: int
    trivial: dict
    seeds: tuple[int, ...]
    emd: str
    row_seconds: dict
    emd_seconds: float
    emd_pairs: int
    num_vertices: int
    data_root: str

    def notes(self) -> str:
        lines = [
            UNITS_NOTE,
            f"Test set: {self.data_root}, {self.triples} triples ({self.num_vertices} vertices per mesh); trivial pairs: "
            f"{self.trivial['same_identity']} with the same identity (GT = pose mesh), {self.trivial['same_pose']} with "
            "the same pose (GT = identity mesh).",
            f"Learned rows: mean ± sample std over permutation seeds {','.join(map(str, self.seeds))} of the per-seed "
            "mean over triples. Baselines do not depend on the vertex order: run once (± 0).",
        ]
        if self.emd == "exact":
            lines.append(f"EMD: exact assignment (SciPy linear_sum_assignment), {self.emd_seconds:.1f} s host time for "
                         f"{self.emd_pairs} pairs.")  # fmt: skip
        elif self.emd == "sinkhorn":
            lines.append(f"EMD: ott-jax Sinkhorn approximation (ε = 1e-3 m), {self.emd_seconds:.1f} s for {self.emd_pairs} pairs.")
        lines.append("Wall time per row (s): " + ", ".join(f"{k}: {v:.1f}" for k, v in self.row_seconds.items()))
        return "\n".join(lines)


def _checkpoint_task(path: str, step: int | None):
    """(task, config) of the checkpoint in `path`, from the config saved with it."""
    from jaxpose.training.checkpoint import Checkpointer, resolve_checkpoint_dir
    from jaxpose.training.registry import get_task

    checkpointer = Checkpointer(resolve_checkpoint_dir(path), create=False)
    try:
        config = checkpointer.read_config(step)
    finally:
        checkpointer.close()
    task_name = config.get("task", None)
    if task_name not in POSE_TRANSFER_TASKS:
        raise ValueError(f"checkpoint {path} is for task {task_name!r}, not a pose-transfer task {POSE_TRANSFER_TASKS}")
    return get_task(task_name), config


def evaluate(
    checkpoints: Sequence[str],
    baselines: Sequence[str],
    *,
    data_root: str,
    list_file: str | None = None,
    config: ml_collections.ConfigDict | None = None,
    permutation_seeds: Sequence[int] = (0, 1, 2),
    emd: str = "exact",
    raw_warp: bool = True,
    batch_size: int = 8,
    step: int | None = None,
    max_triples: int | None = None,
    mesh=None,
) -> PoseTransferEvaluation:
    """Score pose-transfer checkpoints (any mix of corenet / npt) and baselines on one test set.

    Rows: "<task> [<run>@<step>]" per checkpoint, "<task> raw OT warp [<run>@<step>]" per 3D-CoreNet
    checkpoint when `raw_warp`, then "copy_identity" / "deformation_transfer (oracle S0)".
    `config` supplies `eval.*` defaults (list seed, number of generated triples); `max_triples`
    overrides `config.eval.max_triples`. `mesh` defaults to the first device only (see below); pass a
    multi-device mesh only with `emd="none"` and no deformation-transfer baseline.
    """
    from jaxpose.training import evaluation
    from jaxpose.training.sharding import make_mesh
    from jaxpose.training.step import compute_dtype_from_name

    for name in baselines:
        if name not in BASELINES:
            raise KeyError(f"unknown pose-transfer baseline {name!r}; available: {sorted(BASELINES)}")
    if not checkpoints and not baselines:
        raise ValueError("give at least one checkpoint or baseline")
    seeds = tuple(int(s) for s in permutation_seeds)
    if not seeds:
        raise ValueError("need at least one permutation seed")
    if batch_size <= 0:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    # One device by default: the host callbacks (exact EMD, deformation transfer) inside a multi-device
    # SPMD program make every other device wait in a collective, which XLA aborts after 40 s.
    mesh = make_mesh(jax.devices()[:1]) if mesh is None else mesh
    loaded = []
    for path in checkpoints:
        task, ckpt_config = _checkpoint_task(path, step)
        loaded.append((task, evaluation.load_checkpoint(task, path, mesh, step)))
    if config is None:
        config = loaded[0][1].config if loaded else ml_collections.ConfigDict({"eval": {}})
    config = ml_collections.ConfigDict(config.to_dict())
    if max_triples is not None:
        config.eval.max_triples = int(max_triples)
    data = open_data(data_root)
    triples = test_triples(config, data, list_file)
    base = ArrayDataset(eval_arrays(data, triples, seeds[0]))
    datasets = {seed: with_permutation_seed(base, seed) for seed in seeds}

    timer = EmdTimer()
    metrics_fn = make_eval_metrics(emd, timer)
    results, row_seconds = {}, {}

    def unique(name: str) -> str:
        while name in results:
            name += "'"
        return name

    for task, checkpoint in loaded:
        dtype = compute_dtype_from_name(checkpoint.config.get("compute_dtype", "float32"), task)
        variants = [(f"{task.name} [{checkpoint.name}]", predict)]
        if raw_warp and task.name == "corenet":
            variants.append((f"{task.name} raw OT warp [{checkpoint.name}]", predict_raw_warp))
        for row, predict_fn in variants:
            start = time.perf_counter()
            row_task = dataclasses.replace(task, predict=predict_fn, eval_metrics=metrics_fn)
            evaluator = evaluation.ModelEvaluator(row_task, checkpoint.graphdef, mesh, batch_size, dtype)
            per_seed = []
            for seed in seeds:
                per_example = evaluator(checkpoint.state.params, checkpoint.state.model_state, datasets[seed])
                per_seed.append({k: float(np.mean(v)) for k, v in per_example.items()})
            row = unique(row)
            results[row] = summarize_over_seeds(per_seed, len(triples))
            row_seconds[row] = time.perf_counter() - start
    for name in baselines:
        start = time.perf_counter()
        baseline_task = _baseline_task(name, metrics_fn)
        per_example = evaluation.evaluate_baseline(baseline_task, name, base, mesh, batch_size)
        row = unique(BASELINE_ROW_NAMES[name])
        results[row] = summarize_over_seeds([{k: float(np.mean(v)) for k, v in per_example.items()}], len(triples))
        row_seconds[row] = time.perf_counter() - start
    return PoseTransferEvaluation(results, len(triples), trivial_pair_counts(triples), seeds, emd, row_seconds,
                                  timer.seconds, timer.pairs, data.num_vertices, str(data.root))  # fmt: skip


def _baseline_task(name: str, metrics_fn: Callable):
    from jaxpose.training.task import Task

    def unused(*args, **kwargs):
        raise RuntimeError("baseline-only task")

    return Task(name=f"pose_transfer_baseline_{name}", make_model=unused, loss_fn=unused, make_train_data=unused,
                make_eval_data=unused, predict=unused, eval_metrics=metrics_fn, baselines={name: BASELINES[name]})  # fmt: skip


def write_evaluation(evaluation_result: PoseTransferEvaluation, directory: str | os.PathLike) -> tuple[str, str]:
    """`<directory>/results.csv` and `results.md` (table + protocol notes), written atomically."""
    from jaxpose.io.atomic import atomic_write_text
    from jaxpose.training import evaluation

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = directory / "results.csv", directory / "results.md"
    atomic_write_text(csv_path, evaluation.to_csv(evaluation_result.results))
    notes = "".join(f"- {line}\n" for line in evaluation_result.notes().splitlines())
    atomic_write_text(md_path, evaluation.to_markdown(evaluation_result.results) + "\n" + notes)
    return str(csv_path), str(md_path)


def build_eval_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Score pose-transfer checkpoints (3D-CoreNet and/or NPT: each checkpoint's saved config names "
        "its task) and baselines on one test list, with the 3D-CoreNet test protocol (fixed vertex permutations, "
        "bbox centring). " + UNITS_NOTE,
    )
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR",
                        help="training workdir or its checkpoints/ (repeatable; corenet and npt may be mixed)")
    parser.add_argument("--step", type=int, help="checkpoint step to load (default: latest)")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME",
                        help=f"repeatable: {', '.join(sorted(BASELINES))}")
    parser.add_argument("--data", metavar="DIR", help="dataset directory (default: the first checkpoint's config.data.root)")
    parser.add_argument("--list", metavar="FILE", help="test list (default: the dataset's human_test_list, else generated)")
    parser.add_argument("--config", metavar="FILE", help="config file for defaults when no checkpoint is given")
    parser.add_argument("--permutation_seeds", default=None, metavar="S,S,...",
                        help="vertex-permutation seeds (default: config.eval.permutation_seeds, else 0,1,2)")
    parser.add_argument("--emd", choices=EMD_CHOICES, default="exact", help="EMD method (default exact)")
    parser.add_argument("--no_raw_warp", action="store_true", help="omit the 3D-CoreNet raw OT warp rows")
    parser.add_argument("--max_triples", type=int, help="use only the first N triples of the list")
    parser.add_argument("--batch_size", type=int, help="evaluation batch size (default: config.eval_batch_size)")
    parser.add_argument("--output", default="eval_results", metavar="DIR", help="where results.csv/.md go")
    return parser


def eval_main(argv: list[str], prog: str = "jaxpose eval corenet") -> int:
    """The `jaxpose eval corenet|npt` command (see `build_eval_parser`)."""
    from jaxpose.training.checkpoint import CheckpointError
    from jaxpose.training.config import apply_overrides, load_config, split_config_args

    parser = build_eval_parser(prog)
    try:
        config_path, overrides, rest = split_config_args(argv)
    except ValueError as error:
        parser.error(str(error))
    args = parser.parse_args(rest)
    if not args.checkpoint and not args.baseline:
        parser.error("give at least one --checkpoint or --baseline")
    try:
        config = None
        if config_path:
            config = apply_overrides(load_config(config_path), overrides)
        elif args.checkpoint:
            _, config = _checkpoint_task(args.checkpoint[0], args.step)
        data_root = args.data or (config.data.root if config is not None else None)
        if data_root is None:
            raise ValueError("give --data DIR (or a --checkpoint / --config whose data.root names the dataset)")
        if args.permutation_seeds is not None:
            seeds = parse_seeds(args.permutation_seeds)
        elif config is not None and "permutation_seeds" in config.get("eval", {}):
            seeds = tuple(int(s) for s in config.eval.permutation_seeds)
        else:
            seeds = (0, 1, 2)
        batch_size = args.batch_size or (int(config.eval_batch_size) if config is not None else 8)
        result = evaluate(
            args.checkpoint, args.baseline, data_root=data_root, list_file=args.list, config=config,
            permutation_seeds=seeds, emd=args.emd, raw_warp=not args.no_raw_warp, batch_size=batch_size,
            step=args.step, max_triples=args.max_triples,
        )  # fmt: skip
        csv_path, md_path = write_evaluation(result, args.output)
    except (ValueError, KeyError, TypeError, FileNotFoundError, CheckpointError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    from jaxpose.training.evaluation import format_table

    print(format_table(result.results))
    print(result.notes())
    print(f"wrote {csv_path} and {md_path}")
    return 0


__all__ = [
    "BASELINES", "EMD_CHOICES", "METRIC_COLUMNS", "POSE_TRANSFER_TASKS", "PoseTransferEvaluation", "TrainPairs",
    "centred_vertices", "copy_identity", "deformation_transfer", "eval_arrays", "eval_main", "eval_metrics", "make_task",
    "evaluate", "loss_fn", "make_eval_data", "make_eval_metrics", "make_train_data", "open_data",
    "permutation_keys", "permuted_forward", "pose_transfer_loss", "predict", "predict_raw_warp",
    "summarize_over_seeds", "test_triples", "with_permutation_seed", "write_evaluation",
]


def make_task(name: str, make_model, description: str):
    """The engine `Task` of a pose-transfer model: everything but the model is shared."""
    from jaxpose.training.task import Task

    return Task(
        name=name,
        make_model=make_model,
        loss_fn=loss_fn,
        make_train_data=make_train_data,
        make_eval_data=make_eval_data,
        predict=predict,
        eval_metrics=eval_metrics,
        baselines=BASELINES,
        eval_main=functools.partial(_eval_main_as, f"jaxpose eval {name}"),
        description=description,
    )


def _eval_main_as(default_prog: str, argv: list[str], prog: str | None = None) -> int:
    return eval_main(argv, prog or default_prog)
