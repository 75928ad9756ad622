"""Pose-transfer datasets: one loader for jaxpose's NPT-style directories, NPT's own data and SMAL toys.

A pose-transfer example is a triple (identity mesh, pose mesh, ground truth): the identity mesh is
identity `a` in pose `p1` (itself posed), the pose mesh is identity `b` in pose `p2`, and the ground
truth is identity `a` in pose `p2` (corenet.md §8–9). All meshes of a dataset share one topology.

Directory layouts read by `PoseTransferData.open`:
  * "jaxpose": written by `jaxpose.data.npt` — `meta.json` (splits, betas, pose indices), `cache.npz`
    (all vertices as one (I, P, V, 3) array; used when present), `id{i}_{j}.obj`, `id{i}_rest.obj`,
    `human_test_list`.
  * "npt": NPT's released data — `id{i}_{j}.obj` only; identities and poses are discovered from the
    file names; optional `human_test_list`. Default splits follow 3D-CoreNet (train identities 0–14,
    train poses 200–599, test identities >= 16, test poses >= 600).
  * "smal": 3D-CoreNet's SMAL set — `toy_{i}_{j}.ply`; optional `animal_test_list`. Train toys
    {0–15, 21, 23, 24, 26–31, 34, 35, 38, 39}, train poses 0–399, test = other toys, poses 400–599.

Test lists hold one triple per line, `identity_file pose_file gt_file` (file names with extension),
exactly as 3D-CoreNet's `human_test_list`/`animal_test_list`.

Training pairs are a pure function of (seed, step, batch_size): `sample_train_pairs`. The vertex
shuffling that 3D-CoreNet applies to every sample runs on device: `random_permutation_batch`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from jaxpose.io.mesh import MeshError, load_mesh


# ----------------------------------------------------------------------------------------------
# File naming
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MeshNaming:
    """File naming of one dataset family: `{prefix}{identity}_{pose}{extension}`."""

    prefix: str
    extension: str
    list_name: str  # default test-list file name in the dataset directory

    def file_name(self, identity: int, pose: int) -> str:
        return f"{self.prefix}{int(identity)}_{int(pose)}{self.extension}"

    @property
    def pattern(self) -> re.Pattern:
        return re.compile(rf"^{re.escape(self.prefix)}(\d+)_(\d+){re.escape(self.extension)}$")

    def parse(self, name: str) -> tuple[int, int] | None:
        """(identity, pose) for a matching file name, else None (e.g. `id3_rest.obj`)."""
        match = self.pattern.match(name)
        return (int(match.group(1)), int(match.group(2))) if match else None


NPT_NAMING = MeshNaming(prefix="id", extension=".obj", list_name="human_test_list")
SMAL_NAMING = MeshNaming(prefix="toy_", extension=".ply", list_name="animal_test_list")

# 3D-CoreNet protocol (corenet.md §9). HEAD trains on identities 0–14; NPT and MAPConNet on 0–15.
CORENET_HUMAN_TRAIN_IDENTITIES = tuple(range(15))
CORENET_HUMAN_TRAIN_POSES = range(200, 600)
CORENET_HUMAN_TEST_MIN_IDENTITY = 16
CORENET_HUMAN_TEST_MIN_POSE = 600
CORENET_SMAL_TRAIN_TOYS = tuple(range(16)) + (21, 23, 24, 26, 27, 28, 29, 30, 31, 34, 35, 38, 39)
CORENET_SMAL_TRAIN_POSES = range(0, 400)
CORENET_SMAL_TEST_POSES = range(400, 600)


# ----------------------------------------------------------------------------------------------
# Test lists
# ----------------------------------------------------------------------------------------------


class Triple(NamedTuple):
    """One test example: identity mesh (identity_id, identity_pose), pose mesh (pose_id, pose_pose).

    The ground truth is identity `identity_id` in pose `pose_pose`.
    """

    identity_id: int
    identity_pose: int
    pose_id: int
    pose_pose: int

    @property
    def gt(self) -> tuple[int, int]:
        return (self.identity_id, self.pose_pose)


_LIST_NAME = re.compile(r"^(?:.*/)?(id|toy_)(\d+)_(\d+)(?:\.(obj|ply))?$")


def _parse_list_name(token: str, where: str) -> tuple[int, int]:
    match = _LIST_NAME.match(token)
    if not match:
        raise ValueError(f"{where}: {token!r} is not a mesh name of the form id<I>_<P>.obj or toy_<I>_<P>.ply")
    return int(match.group(2)), int(match.group(3))


def read_test_list(path: str | os.PathLike) -> list[Triple]:
    """Parse a 3D-CoreNet test list (`identity_file pose_file gt_file` per line; blank lines ignored).

    Raises FileNotFoundError for a missing file and ValueError naming the line for a malformed line
    or a ground truth that is not (identity's id, pose file's pose).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"test list {path} does not exist")
    triples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        tokens = line.split()
        if len(tokens) != 3:
            raise ValueError(f"{where}: expected 3 file names `identity pose gt`, got {len(tokens)}: {line!r}")
        (ia, pa), (ib, pb), (ig, pg) = (_parse_list_name(t, where) for t in tokens)
        if (ig, pg) != (ia, pb):
            raise ValueError(
                f"{where}: ground truth {tokens[2]!r} must be the identity's id {ia} in the pose mesh's pose {pb}"
            )
        triples.append(Triple(ia, pa, ib, pb))
    if not triples:
        raise ValueError(f"test list {path} is empty")
    return triples


def format_test_list(triples: Iterable[Triple], naming: MeshNaming = NPT_NAMING) -> str:
    """The text of a test list: `identity_file pose_file gt_file` per line, single spaces."""
    lines = []
    for t in triples:
        names = (naming.file_name(t.identity_id, t.identity_pose), naming.file_name(t.pose_id, t.pose_pose),
                 naming.file_name(*t.gt))
        lines.append(" ".join(names))
    return "\n".join(lines) + "\n"


def make_test_triples(identities: Sequence[int], poses: Sequence[int], num_triples: int = 400, seed: int = 0) -> list[Triple]:
    """A fixed-seed test list equivalent to 3D-CoreNet's: `num_triples` distinct triples.

    Identity mesh (a, p1) and pose mesh (b, p2) are drawn uniformly and independently from
    `identities` x `poses` (a == b and p1 == p2 are allowed, as in the original lists), without
    repeating a triple. If fewer distinct triples exist, all of them are returned (in random order).
    """
    identities = np.asarray(sorted(set(int(i) for i in identities)), np.int64)
    poses = np.asarray(sorted(set(int(p) for p in poses)), np.int64)
    if identities.size == 0 or poses.size == 0:
        raise ValueError(f"need at least one test identity and one test pose, got {identities.size} and {poses.size}")
    if num_triples <= 0:
        raise ValueError(f"num_triples must be positive, got {num_triples}")
    num_i, num_p = identities.size, poses.size
    total = (num_i * num_p) ** 2
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E57]))
    flat = rng.choice(total, size=min(num_triples, total), replace=False)
    a, p1, b, p2 = np.unravel_index(flat, (num_i, num_p, num_i, num_p))
    return [Triple(int(identities[w]), int(poses[x]), int(identities[y]), int(poses[z])) for w, x, y, z in zip(a, p1, b, p2)]


def trivial_pair_counts(triples: Sequence[Triple]) -> dict[str, int]:
    """Counts of trivial triples: same identity (GT = pose mesh) and same pose (GT = identity mesh)."""
    return {
        "triples": len(triples),
        "same_identity": sum(t.identity_id == t.pose_id for t in triples),
        "same_pose": sum(t.identity_pose == t.pose_pose for t in triples),
    }


# ----------------------------------------------------------------------------------------------
# Training pairs
# ----------------------------------------------------------------------------------------------


class PairBatch(NamedTuple):
    """Training pairs (B,) int64 each: identity mesh (identity_ids, identity_poses), pose mesh
    (pose_ids, pose_poses); ground truth = (identity_ids, pose_poses). Values are dataset labels
    (identity numbers and pose numbers as in the file names), not array rows."""

    identity_ids: np.ndarray
    identity_poses: np.ndarray
    pose_ids: np.ndarray
    pose_poses: np.ndarray


def sample_train_pairs(
    seed: int, step: int, batch_size: int, train_identities: Sequence[int], train_poses: Sequence[int]
) -> PairBatch:
    """Pairs for training step `step`: a pure function of (seed, step, batch_size) and the splits.

    Item k of the global stream (k = step * batch_size + b) is drawn from its own counter-based
    generator seeded by (seed, k), so the stream does not depend on how it is cut into batches.
    Identity mesh: uniform train identity in a uniform train pose; pose mesh: an independent uniform
    train identity and train pose (as 3D-CoreNet's training loader).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    ids = np.asarray(train_identities, np.int64)
    poses = np.asarray(train_poses, np.int64)
    if ids.size == 0 or poses.size == 0:
        raise ValueError(f"need at least one train identity and one train pose, got {ids.size} and {poses.size}")
    draws = np.empty((batch_size, 4), np.int64)
    for b in range(batch_size):
        item = int(step) * int(batch_size) + b
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), item, 0x9A1E]))
        draws[b] = rng.integers(0, [ids.size, poses.size, ids.size, poses.size])
    return PairBatch(ids[draws[:, 0]], poses[draws[:, 1]], ids[draws[:, 2]], poses[draws[:, 3]])


def gather_pairs(vertices, identity_rows, identity_cols, pose_rows, pose_cols):
    """Batched gather of (identity, pose, gt) meshes from an (I, P, V, 3) array (NumPy or JAX).

    Rows/cols are (B,) integer positions into the identity and pose axes. Returns three (B, V, 3)
    arrays: identity = vertices[identity_rows, identity_cols], pose = vertices[pose_rows, pose_cols],
    gt = vertices[identity_rows, pose_cols].
    """
    if vertices.ndim != 4 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (I, P, V, 3), got {vertices.shape}")
    return (
        vertices[identity_rows, identity_cols],
        vertices[pose_rows, pose_cols],
        vertices[identity_rows, pose_cols],
    )


# ----------------------------------------------------------------------------------------------
# Device-side vertex shuffling
# ----------------------------------------------------------------------------------------------


class PermutedBatch(NamedTuple):
    """Output of `random_permutation_batch`.

    identity (B, N, 3), gt (B, N, 3) and identity_faces (B, F, 3) in the shuffled identity order;
    pose (B, M, 3) in its own shuffled order; identity_permutation (B, N) and pose_permutation (B, M)
    with shuffled[k] = original[permutation[k]] (so original = shuffled[inverse_permutation(perm)]).
    """

    identity: object
    gt: object
    identity_faces: object
    pose: object
    identity_permutation: object
    pose_permutation: object


def inverse_permutation(permutation):
    """Inverse of permutations along the last axis: inverse[..., permutation[..., k]] = k (JAX)."""
    import jax.numpy as jnp

    return jnp.argsort(permutation, axis=-1)


def random_permutation_batch(key, identity, gt, identity_faces, pose) -> PermutedBatch:
    """Shuffle each sample's identity vertices (GT with the same permutation) and pose vertices.

    identity (B, N, 3), gt (B, N, 3), identity_faces (F, 3) or (B, F, 3) int, pose (B, M, 3).
    Faces are remapped through the inverse permutation with one gather, so every shuffled triangle
    is the same triple of points as before. Jittable; independent permutations per sample.
    """
    import jax
    import jax.numpy as jnp

    if identity.ndim != 3 or identity.shape[-1] != 3:
        raise ValueError(f"identity must have shape (B, N, 3), got {identity.shape}")
    if gt.shape != identity.shape:
        raise ValueError(f"gt must have the identity's shape {identity.shape}, got {gt.shape}")
    if pose.ndim != 3 or pose.shape[-1] != 3 or pose.shape[0] != identity.shape[0]:
        raise ValueError(f"pose must have shape ({identity.shape[0]}, M, 3), got {pose.shape}")
    batch, num_id, num_pose = identity.shape[0], identity.shape[1], pose.shape[1]
    identity_faces = jnp.asarray(identity_faces)
    if identity_faces.ndim == 2:
        identity_faces = jnp.broadcast_to(identity_faces[None], (batch,) + identity_faces.shape)
    if identity_faces.ndim != 3 or identity_faces.shape[0] != batch or identity_faces.shape[-1] != 3:
        raise ValueError(f"identity_faces must have shape (F, 3) or ({batch}, F, 3), got {identity_faces.shape}")
    id_keys, pose_keys = jnp.split(jax.random.split(key, 2 * batch), 2)
    perm_id = jax.vmap(lambda k: jax.random.permutation(k, num_id))(id_keys)
    perm_pose = jax.vmap(lambda k: jax.random.permutation(k, num_pose))(pose_keys)
    take = jax.vmap(lambda x, p: x[p])
    inverse = inverse_permutation(perm_id)
    faces = jax.vmap(lambda inv, f: inv[f])(inverse, identity_faces).astype(identity_faces.dtype)
    return PermutedBatch(
        identity=take(identity, perm_id),
        gt=take(gt, perm_id),
        identity_faces=faces,
        pose=take(pose, perm_pose),
        identity_permutation=perm_id,
        pose_permutation=perm_pose,
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
                with np.load(cache_path) as cache:
                    arrays = {k: cache[k] for k in ("vertices", "rest", "faces", "identities", "pose_indices")}
            except Exception as exc:
                raise ValueError(f"{cache_path}: unreadable cache ({type(exc).__name__}: {exc})") from None
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
                from tqdm.auto import tqdm

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


__all__ = [
    "CORENET_HUMAN_TRAIN_IDENTITIES", "CORENET_SMAL_TRAIN_TOYS", "JAXPOSE_META_FORMAT", "MeshNaming",
    "NPT_NAMING", "PairBatch", "PermutedBatch", "PoseTransferData", "SMAL_NAMING", "Triple", "format_test_list",
    "gather_pairs", "inverse_permutation", "make_test_triples", "random_permutation_batch", "read_test_list",
    "sample_train_pairs", "trivial_pair_counts",
]
