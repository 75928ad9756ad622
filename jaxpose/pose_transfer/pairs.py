"""Training pairs of the pose-transfer tasks (3D-CoreNet, NPT), and opening their dataset.

Training and test meshes come from one `PoseTransferData` directory (`config.data.root`, made by
`jaxpose data npt` with the settings of `config.data.build`). Every mesh is centred on its own
bounding-box centre once, on the host, when the data are loaded (no scale normalisation; the dataset
is metres). See docs/pose_transfer.md, "Data".

Training items (`TrainPairs`): an epoch has `config.data.pairs_per_epoch` items (4000 officially =
500 iterations of 8). Item k of epoch e is a pair drawn from its own counter-based generator seeded by
(data seed, e, k): identity mesh = uniform train identity in a uniform train pose, pose mesh = an
independent uniform train identity and train pose, GT = the identity in the pose mesh's pose — as
3D-CoreNet's loader, whose pairs are fresh every epoch, but reproducible. The whole (I, P, V, 3) vertex
array stays in host memory (30 × 800 × 13.7k × 3 float32 ≈ 3.9 GB at full resolution) and each batch
is gathered on the host (3 · B meshes, ≈ 4 MB at B = 8, full resolution); the device only ever holds
one batch. Vertex shuffling happens on device, in the loss (`jaxpose.pose_transfer.loss`).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from jaxpose.pose_transfer.dataset import PoseTransferData
from jaxpose.pose_transfer.npt_data import NptConfig

_TRAIN_PAIR_TAG = 0x7A1B


def npt_config(build: ml_collections.ConfigDict) -> NptConfig:
    """The dataset definition of a config's `data.build` section (the `jaxpose data npt` settings)."""
    fields = {name: build[name] for name in ("identities", "poses", "resolution", "seed", "beta_mode",
                                             "num_test_triples", "precision") if name in build}  # fmt: skip
    unknown = sorted(set(build.keys()) - set(fields))
    if unknown:
        raise ValueError(f"config data.build has unknown keys {unknown}")
    return NptConfig(**fields)


def build_command(root: str | os.PathLike, build: NptConfig | None) -> str:
    """The `jaxpose data npt` command line that builds `build` into `root`."""
    command = f"jaxpose data npt --out {root}"
    if build is not None:
        command += (f" --identities {build.identities} --poses {build.poses} --resolution {build.resolution}"
                    f" --seed {build.seed} --beta-mode {build.beta_mode} --test-triples {build.num_test_triples}"
                    f" --precision {build.precision}")  # fmt: skip
    return command


def open_data(root: str | os.PathLike, build: NptConfig | None = None) -> PoseTransferData:
    """`PoseTransferData.open(root)`; a missing directory raises FileNotFoundError naming the command."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"pose-transfer data directory {root} does not exist; build it with "
                                f"`{build_command(root, build)}`")  # fmt: skip
    return PoseTransferData.open(root)


def check_data_config(config: ml_collections.ConfigDict) -> None:
    """ValueError naming the key unless the `data` section's sizes are valid.

    `data.pairs_per_epoch` must be a positive integer and `data.build` (if present) a valid
    `NptConfig` (identities, poses, num_test_triples, precision, ...). (The pose-transfer data section
    has no `num_points`, unlike configs/tiny.py: every mesh keeps all the body's vertices, and
    `--config.data.num_points=...` is refused as an unknown key by the override parser.)
    """
    data = config.get("data", None)
    if data is None or "root" not in data or "pairs_per_epoch" not in data:
        raise ValueError("the pose-transfer config needs a data section with root and pairs_per_epoch")
    pairs = data.pairs_per_epoch
    if isinstance(pairs, bool) or not isinstance(pairs, (int, np.integer)) or pairs <= 0:
        raise ValueError(f"config.data.pairs_per_epoch must be a positive integer, got {pairs!r}")
    build = data.get("build", None)
    if build is not None:
        try:
            npt_config(build)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"config.data.build: {exc}") from None


def open_config_data(config: ml_collections.ConfigDict, data_dir: str | None = None) -> PoseTransferData:
    """The dataset of `data_dir`, else of `config.data.root` (its `data.build` names the command)."""
    if data_dir:
        return open_data(data_dir)
    build = config.data.get("build", None)
    return open_data(config.data.root, npt_config(build) if build is not None else None)


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
    bbox-centred, "identity_faces" (K, F, 3) int32}.
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
        }


def make_train_pairs(config: ml_collections.ConfigDict) -> TrainPairs:
    """The training pairs of `config.data.root` (train identities × train poses of its splits)."""
    check_data_config(config)
    data = open_config_data(config)
    return TrainPairs(
        centred_vertices(data),
        data.faces,
        [data.identity_row(i) for i in data.train_identities],
        [data.pose_col(p) for p in data.train_poses],
        int(config.data.pairs_per_epoch),
        int(config.seed),
    )
