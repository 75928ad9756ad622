"""The 3D-CoreNet test protocol: test arrays, permuted prediction, metrics and baselines.

See docs/pose_transfer.md, "Evaluation protocol". Test triples come from `--list`, the dataset's own
`human_test_list`, or a generated fixed-seed list. The identity mesh (and, equivalently, its GT) and the
pose mesh are permuted with a fixed permutation seed per triple (`permutation_keys`); the model runs
on the permuted meshes; its output is un-permuted back to the identity's vertex order (PMD is a mean
over vertices, CD and EMD ignore order, so this equals comparing the permuted output with the equally
permuted GT); both meshes are centred on their own bbox; then PMD, CD and EMD, in the papers' units
(`jaxpose.pose_transfer.units`).

Baselines: "copy_identity" (the identity mesh unchanged) and "deformation_transfer" (Sumner & Popović
under the oracle protocol of `jaxpose.pose_transfer.deformation_transfer`: S0 = the pose mesh's subject
in the identity mesh's pose, taken from the dataset; shared topology). Both are independent of the
vertex order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose.geometry.bbox import center_on_bbox
from jaxpose.metrics.surface import chamfer_distance, pmd
from jaxpose.pose_transfer import host_callbacks
from jaxpose.pose_transfer.dataset import PoseTransferData
from jaxpose.pose_transfer.host_callbacks import EMD_CHOICES, EmdTimer
from jaxpose.pose_transfer.pairs import centred_vertices
from jaxpose.pose_transfer.test_lists import Triple
from jaxpose.pose_transfer.units import METRIC_COLUMNS, METRIC_SCALES
from jaxpose.training.data import ArrayDataset

CHAMFER_BLOCK = 1024


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


test_triples.__test__ = False  # not a pytest test, despite its name


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


def make_eval_metrics(emd: str = "none", timer: EmdTimer | None = None) -> Callable:
    """`eval_metrics(prediction (B, N, 3), batch) -> {column: (B,)}` in the papers' units.

    PMD and CD run on device (float32, difference-based distances); EMD ("exact" | "sinkhorn") on the
    host (`host_callbacks.emd_on_host`, timed into `timer`); "none" leaves the EMD column out.
    """
    if emd not in EMD_CHOICES:
        raise ValueError(f"emd must be one of {EMD_CHOICES}, got {emd!r}")

    def eval_metrics(prediction: jax.Array, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        pred = center_on_bbox(prediction.astype(jnp.float32))
        target = center_on_bbox(batch["gt"].astype(jnp.float32))
        out = {
            METRIC_COLUMNS["pmd"]: pmd(pred, target) * METRIC_SCALES["pmd"],
            METRIC_COLUMNS["cd"]: chamfer_distance(pred, target, block_size=CHAMFER_BLOCK) * METRIC_SCALES["cd"],
        }
        if emd != "none":
            out[METRIC_COLUMNS["emd"]] = host_callbacks.emd_on_host(pred, target, emd, timer) * METRIC_SCALES["emd"]
        return out

    return eval_metrics


eval_metrics = make_eval_metrics("none")
"""The engine's in-training evaluation metrics: PMD and CD (EMD is left to `jaxpose eval`)."""


def copy_identity(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Baseline: predict the identity mesh unchanged (its own pose)."""
    return batch["identity"]


def copy_pose(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Diagnostic bound: the pose mesh itself, read in the identity's vertex order — what a perfect
    correspondence warp gives before any shape transfer (the pose subject's shape in the target pose).
    Needs a dataset whose meshes share one topology (as deformation transfer's oracle does)."""
    if batch["pose"].shape != batch["identity"].shape:
        raise ValueError(f"copy_pose needs pose and identity meshes of one topology; got {batch['pose'].shape[1]} "
                         f"and {batch['identity'].shape[1]} vertices")  # fmt: skip
    return batch["pose"]


BASELINES: dict[str, Callable] = {
    "copy_identity": copy_identity,
    "copy_pose": copy_pose,
    "deformation_transfer": host_callbacks.deformation_transfer,
}
BASELINE_ROW_NAMES = {"copy_identity": "copy_identity", "copy_pose": "copy_pose (oracle correspondence)",
                      "deformation_transfer": "deformation_transfer (oracle S0)"}
