"""Pose-transfer datasets: one loader for jaxpose's NPT-style directories, NPT's own data and SMAL toys.

A pose-transfer example is a triple (identity mesh, pose mesh, ground truth): the identity mesh is
identity `a` in pose `p1` (itself posed), the pose mesh is identity `b` in pose `p2`, and the ground
truth is identity `a` in pose `p2` (docs/pose_transfer.md, "Data" and "Splits and test lists").
All meshes of a dataset share one topology.

Directory layouts read by `PoseTransferData.open`:
  * "jaxpose": written by `jaxpose.pose_transfer.npt_data` — `meta.json` (splits, betas, pose indices), `cache.npz`
    (all vertices as one (I, P, V, 3) array; used when present), `id{i}_{j}.obj`, `id{i}_rest.obj`,
    `human_test_list`.
  * "npt": NPT's released data — `id{i}_{j}.obj` only; identities and poses are discovered from the
    file names; optional `human_test_list`. Default splits follow 3D-CoreNet (train identities 0–14,
    train poses 200–599, test identities >= 16, test poses >= 600).
  * "smal": 3D-CoreNet's SMAL set — `toy_{i}_{j}.ply`; optional `animal_test_list`. Train toys
    {0–15, 21, 23, 24, 26–31, 34, 35, 38, 39}, train poses 0–399, test = other toys, poses 400–599.

File naming and test lists: `jaxpose.pose_transfer.test_lists`; training-pair sampling and vertex
shuffling: `jaxpose.pose_transfer.sampling`.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from jaxpose.io.arrays import ArrayFileError, load_npz
from jaxpose.io.mesh import MeshError, load_mesh
from jaxpose.pose_transfer.sampling import PairBatch, gather_pairs, sample_train_pairs
from jaxpose.pose_transfer.test_lists import (
    CORENET_HUMAN_TEST_MIN_IDENTITY,
    CORENET_HUMAN_TEST_MIN_POSE,
    CORENET_HUMAN_TRAIN_IDENTITIES,
    CORENET_HUMAN_TRAIN_POSES,
    CORENET_SMAL_TEST_POSES,
    CORENET_SMAL_TRAIN_POSES,
    CORENET_SMAL_TRAIN_TOYS,
    NPT_NAMING,
    SMAL_NAMING,
    MeshNaming,
    Triple,
    make_test_triples,
    read_test_list,
)


# ----------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------


JAXPOSE_META_FORMAT = "jaxpose-npt/1"


def _discover(root: pathlib.Path, naming: MeshNaming) -> dict[tuple[int, int], pathlib.Path]:
    found = {}
    for entry in os.scandir(root):
        key = naming.parse(entry.name)
        if key is not None and entry.is_file():
            found[key] = root / entry.name
    return found


class PoseTransferData:
    """Meshes of one topology indexed by (identity, pose), with splits and test lists.

    Attributes: root, kind ("jaxpose" | "npt" | "smal"), naming, faces (F, 3) int32, identities and
    poses (sorted tuples of labels), train/test identities and poses (tuples), meta (dict; the
    jaxpose meta.json, else {}). Vertices are float32 in file units (metres for human data).
    Construct with `PoseTransferData.open(path)`.
    """

    def __init__(
        self,
        root: pathlib.Path,
        kind: str,
        naming: MeshNaming,
        faces: np.ndarray,
        identities: Sequence[int],
        poses: Sequence[int],
        splits: dict[str, Sequence[int]],
        files: dict[tuple[int, int], pathlib.Path] | None = None,
        vertices: np.ndarray | None = None,
        rest: np.ndarray | None = None,
        meta: dict | None = None,
        num_vertices: int | None = None,
    ):
        self.root = root
        self.kind = kind
        self.naming = naming
        self.faces = np.asarray(faces, np.int32)
        self.identities = tuple(int(i) for i in identities)
        self.poses = tuple(int(p) for p in poses)
        self._identity_row = {i: r for r, i in enumerate(self.identities)}
        self._pose_col = {p: c for c, p in enumerate(self.poses)}
        self.train_identities = tuple(int(i) for i in splits["train_identities"])
        self.train_poses = tuple(int(p) for p in splits["train_poses"])
        self.test_identities = tuple(int(i) for i in splits["test_identities"])
        self.test_poses = tuple(int(p) for p in splits["test_poses"])
        for name, values, known in (
            ("train identities", self.train_identities, self._identity_row),
            ("test identities", self.test_identities, self._identity_row),
            ("train poses", self.train_poses, self._pose_col),
            ("test poses", self.test_poses, self._pose_col),
        ):
            missing = [v for v in values if v not in known]
            if missing:
                raise ValueError(f"{root}: {name} {missing[:10]} are not in the dataset")
        self._files = dict(files or {})
        self._vertices = vertices
        self._rest = rest
        self.meta = dict(meta or {})
        if num_vertices is None:
            if vertices is None:
                raise ValueError("num_vertices is required when no vertex array is given")
            num_vertices = vertices.shape[2]
        self.num_vertices = int(num_vertices)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: str | os.PathLike,
        *,
        kind: str = "auto",
        train_identities: Sequence[int] | None = None,
        train_poses: Sequence[int] | None = None,
        test_identities: Sequence[int] | None = None,
        test_poses: Sequence[int] | None = None,
        use_cache: bool = True,
    ) -> "PoseTransferData":
        """Open a dataset directory. `kind="auto"` picks "jaxpose" if meta.json says so, else "npt"
        if `id*_*.obj` files exist, else "smal" if `toy_*_*.ply` files exist.

        Split arguments override the defaults (meta.json splits for jaxpose data, the 3D-CoreNet
        protocol otherwise). With `use_cache=False` a jaxpose directory is read from its OBJ files.
        Raises FileNotFoundError for a missing directory or one without meshes, ValueError for an
        unknown kind or inconsistent files, MeshError for a bad mesh or mismatching faces.
        """
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset directory {root} does not exist")
        if kind == "auto":
            kind = cls._detect_kind(root)
        if kind == "jaxpose":
            data = cls._open_jaxpose(root, use_cache)
        elif kind in ("npt", "smal"):
            data = cls._open_discovered(root, kind)
        else:
            raise ValueError(f"kind must be 'auto', 'jaxpose', 'npt' or 'smal', got {kind!r}")
        overrides = {
            "train_identities": train_identities, "train_poses": train_poses,
            "test_identities": test_identities, "test_poses": test_poses,
        }
        if any(v is not None for v in overrides.values()):
            splits = {k: (v if v is not None else getattr(data, k)) for k, v in overrides.items()}
            data = cls(data.root, data.kind, data.naming, data.faces, data.identities, data.poses, splits,
                       data._files, data._vertices, data._rest, data.meta, data.num_vertices)
        return data

    @staticmethod
    def _detect_kind(root: pathlib.Path) -> str:
        meta_path = root / "meta.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{meta_path}: corrupt JSON ({exc})") from None
            if meta.get("format") == JAXPOSE_META_FORMAT:
                return "jaxpose"
        names = os.listdir(root)
        if any(NPT_NAMING.parse(n) for n in names):
            return "npt"
        if any(SMAL_NAMING.parse(n) for n in names):
            return "smal"
        raise FileNotFoundError(
            f"{root}: no pose-transfer meshes found (expected meta.json from `jaxpose data npt`, "
            "id<I>_<P>.obj or toy_<I>_<P>.ply files)"
        )

    @classmethod
    def _open_jaxpose(cls, root: pathlib.Path, use_cache: bool) -> "PoseTransferData":
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{root}: meta.json is missing (not a `jaxpose data npt` directory)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != JAXPOSE_META_FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r} is not {JAXPOSE_META_FORMAT!r}")
        identities = [int(i) for i in meta["identities"]]
        poses = [int(p) for p in meta["pose_indices"]]
        splits = meta["splits"]
        cache_path = root / "cache.npz"
        if use_cache and cache_path.is_file():
            try:
                arrays = load_npz(cache_path, "dataset cache", keys=("vertices", "rest", "faces", "identities", "pose_indices"))
            except ArrayFileError as exc:
                raise ValueError(f"unreadable cache: {exc}; delete it or regenerate the dataset") from None
            expected = (len(identities), len(poses))
            if (arrays["vertices"].shape[:2] != expected or list(arrays["identities"]) != identities
                    or list(arrays["pose_indices"]) != poses):
                raise ValueError(
                    f"{cache_path}: does not match meta.json (vertices {arrays['vertices'].shape[:2]} vs "
                    f"{expected} identities x poses); delete it or regenerate the dataset"
                )
            return cls(root, "jaxpose", NPT_NAMING, arrays["faces"], identities, poses, splits,
                       vertices=arrays["vertices"].astype(np.float32), rest=arrays["rest"].astype(np.float32), meta=meta)
        files = {(i, p): root / NPT_NAMING.file_name(i, p) for i in identities for p in poses}
        missing = [str(path) for path in files.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"{root}: {len(missing)} meshes listed in meta.json are missing, e.g. {missing[0]}")
        first = load_mesh(files[(identities[0], poses[0])])
        return cls(root, "jaxpose", NPT_NAMING, first.faces, identities, poses, splits, files=files, meta=meta,
                   num_vertices=len(first.vertices))

    @classmethod
    def _open_discovered(cls, root: pathlib.Path, kind: str) -> "PoseTransferData":
        naming = NPT_NAMING if kind == "npt" else SMAL_NAMING
        files = _discover(root, naming)
        if not files:
            raise FileNotFoundError(f"{root}: no {naming.prefix}<I>_<P>{naming.extension} files")
        identities = sorted({i for i, _ in files})
        poses = sorted({p for _, p in files})
        first_key = min(files)
        first = load_mesh(files[first_key])
        if kind == "npt":
            splits = {
                "train_identities": [i for i in identities if i in CORENET_HUMAN_TRAIN_IDENTITIES],
                "train_poses": [p for p in poses if p in CORENET_HUMAN_TRAIN_POSES],
                "test_identities": [i for i in identities if i >= CORENET_HUMAN_TEST_MIN_IDENTITY],
                "test_poses": [p for p in poses if p >= CORENET_HUMAN_TEST_MIN_POSE],
            }
        else:
            splits = {
                "train_identities": [i for i in identities if i in CORENET_SMAL_TRAIN_TOYS],
                "train_poses": [p for p in poses if p in CORENET_SMAL_TRAIN_POSES],
                "test_identities": [i for i in identities if i not in CORENET_SMAL_TRAIN_TOYS],
                "test_poses": [p for p in poses if p in CORENET_SMAL_TEST_POSES],
            }
        return cls(root, kind, naming, first.faces, identities, poses, splits, files=files, num_vertices=len(first.vertices))

    # -- access ---------------------------------------------------------------------------------

    def identity_row(self, identity: int) -> int:
        """Position of identity label `identity` on the identity axis of `as_arrays()`."""
        try:
            return self._identity_row[int(identity)]
        except KeyError:
            raise KeyError(f"{self.root}: identity {identity} is not in the dataset (have {self.identities[:10]}...)") from None

    def pose_col(self, pose: int) -> int:
        """Position of pose label `pose` on the pose axis of `as_arrays()`."""
        try:
            return self._pose_col[int(pose)]
        except KeyError:
            raise KeyError(f"{self.root}: pose {pose} is not in the dataset") from None

    def _load_checked(self, path: pathlib.Path) -> np.ndarray:
        mesh = load_mesh(path)
        if len(mesh.vertices) != self.num_vertices:
            raise MeshError(f"{path}: {len(mesh.vertices)} vertices, but the dataset's meshes have {self.num_vertices}")
        if mesh.faces.shape != self.faces.shape or not np.array_equal(mesh.faces, self.faces):
            raise MeshError(
                f"{path}: faces differ from the dataset's shared faces (from {self.naming.file_name(self.identities[0], self.poses[0])}"
                f" and the other meshes): {mesh.faces.shape} vs {self.faces.shape}"
            )
        return mesh.vertices

    def vertices(self, identity: int, pose: int) -> np.ndarray:
        """Vertices (V, 3) float32 of identity `identity` in pose `pose` (labels as in file names)."""
        row, col = self.identity_row(identity), self.pose_col(pose)
        if self._vertices is not None:
            return self._vertices[row, col]
        key = (int(identity), int(pose))
        if key not in self._files:
            raise FileNotFoundError(f"{self.root}: no mesh {self.naming.file_name(*key)}")
        return self._load_checked(self._files[key])

    def rest(self, identity: int) -> np.ndarray:
        """Rest-pose vertices (V, 3) of `identity` (jaxpose data only: cache or `id{i}_rest.obj`)."""
        row = self.identity_row(identity)
        if self._rest is not None:
            return self._rest[row]
        path = self.root / f"{self.naming.prefix}{int(identity)}_rest{self.naming.extension}"
        if not path.is_file():
            raise FileNotFoundError(f"{self.root}: no rest mesh for identity {identity} ({path.name} is missing)")
        return self._load_checked(path)

    def as_arrays(self, progress: bool = False) -> np.ndarray:
        """All vertices as one (I, P, V, 3) float32 array, loading every file once (then kept).

        Raises FileNotFoundError naming the missing meshes if the identity x pose grid is incomplete,
        MeshError naming the first file (in sorted order) whose faces differ.
        """
        if self._vertices is None:
            missing = [(i, p) for i in self.identities for p in self.poses if (i, p) not in self._files]
            if missing:
                names = ", ".join(self.naming.file_name(*k) for k in missing[:5])
                raise FileNotFoundError(
                    f"{self.root}: the identity x pose grid is incomplete: {len(missing)} meshes missing ({names}, ...)"
                )
            keys = [(i, p) for i in self.identities for p in self.poses]
            if progress:
                keys = tqdm(keys, desc=f"reading {self.root.name}", unit="mesh")
            out = None
            for i, p in keys:
                verts = self._load_checked(self._files[(i, p)])
                if out is None:
                    out = np.empty((len(self.identities), len(self.poses)) + verts.shape, np.float32)
                out[self._identity_row[i], self._pose_col[p]] = verts
            self._vertices = out
        return self._vertices

    def gather(self, pairs: PairBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(identity, pose, gt), each (B, V, 3) float32, for a batch of labelled pairs."""
        rows = lambda labels: np.fromiter((self.identity_row(i) for i in labels), np.int64, len(labels))  # noqa: E731
        cols = lambda labels: np.fromiter((self.pose_col(p) for p in labels), np.int64, len(labels))  # noqa: E731
        return gather_pairs(self.as_arrays(), rows(pairs.identity_ids), cols(pairs.identity_poses),
                            rows(pairs.pose_ids), cols(pairs.pose_poses))

    def sample_train_pairs(self, seed: int, step: int, batch_size: int) -> PairBatch:
        """`sample_train_pairs` over this dataset's train identities and poses."""
        return sample_train_pairs(seed, step, batch_size, self.train_identities, self.train_poses)

    def test_triples(self, list_path: str | os.PathLike | None = None, *, num_triples: int = 400, seed: int = 0) -> list[Triple]:
        """The test triples: from `list_path`, else the dataset's own list file (`human_test_list` /
        `animal_test_list`) if present, else `make_test_triples(test identities, test poses,
        num_triples, seed)`. Raises ValueError if a listed mesh is not in the dataset."""
        if list_path is None and (self.root / self.naming.list_name).is_file():
            list_path = self.root / self.naming.list_name
        if list_path is None:
            return make_test_triples(self.test_identities, self.test_poses, num_triples, seed)
        triples = read_test_list(list_path)
        for number, t in enumerate(triples, start=1):
            for identity, pose in ((t.identity_id, t.identity_pose), (t.pose_id, t.pose_pose), t.gt):
                if identity not in self._identity_row or pose not in self._pose_col:
                    raise ValueError(f"{list_path}: triple {number} names {self.naming.file_name(identity, pose)}, which is not in {self.root}")
        return triples

    def summary(self) -> dict:
        """Counts for printing: identities, poses, vertices, faces, split sizes."""
        return {
            "kind": self.kind,
            "identities": len(self.identities),
            "poses": len(self.poses),
            "vertices": self.num_vertices,
            "faces": int(self.faces.shape[0]),
            "train_identities": len(self.train_identities),
            "train_poses": len(self.train_poses),
            "test_identities": len(self.test_identities),
            "test_poses": len(self.test_poses),
        }


__all__ = ["JAXPOSE_META_FORMAT", "PoseTransferData"]
