"""Reading and writing body models as SMPL-style `.npz` files; dispatch for user-owned files.

The npz layout (float32 unless noted) is SMPL's, plus exact joints:
  v_template (V,3), shapedirs (V,3,K), posedirs (V,3,P), weights (V,J), f (F,3) int32,
  kintree_table (2,J) int64 (root parent -1 or 2**32-1) and/or parents (J,) int32,
  J_template (J,3) + J_shapedirs (J,3,K) (exact joints) and/or J_regressor (J,V),
  optional joint_names (J,) str, meta (0-d str JSON), and extra numeric arrays
  (coco_regressor, part_ids, vt, ft, ...) that are kept in `BodyModel.extras`.
Files are read with `allow_pickle=False` (`jaxpose.io.arrays.open_npz`): only the arrays listed above
are ever touched, so SMPL-X npz files (which carry a few object arrays) load without executing pickled
code. A file that is not an npz, or a corrupt or pickled member, raises `ArrayFileError` (a ValueError)
naming the file and the member.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from jaxpose.bodies.model import BodyModel
from jaxpose.bodies.smpl_files import load_smpl_pickle
from jaxpose.io.arrays import ArrayFileError, NpzArrays, open_npz
from jaxpose.io.atomic import atomic_save_npz

_CORE_KEYS = {
    "v_template", "shapedirs", "posedirs", "weights", "f", "kintree_table", "parents",
    "J_template", "J_shapedirs", "J_regressor", "joint_names", "meta",
}
_KNOWN_EXTRAS = ("coco_regressor", "part_ids", "vt", "ft")


def load_body(path: str | os.PathLike, num_betas: int | None = None) -> BodyModel:
    """Load a body model file: `.npz` (jaxpose/ANNY, SMPL, SMPL-X layouts) or `.pkl` (SMPL, SMAL).

    Raises FileNotFoundError for a missing file and ValueError naming the problem for a corrupt or
    malformed one.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"body model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_body_npz(path, num_betas=num_betas)
    if suffix == ".pkl":
        return load_smpl_pickle(path, num_betas=num_betas)
    raise ValueError(f"unsupported body model file type {suffix!r} (expected .npz or .pkl): {path}")


def load_body_npz(path: str | os.PathLike, num_betas: int | None = None) -> BodyModel:
    """Load an SMPL-style npz (see module docstring) into a validated `BodyModel`."""
    path = pathlib.Path(path)
    source = f"body model {path}"
    try:
        archive = open_npz(path, what="body file")
    except FileNotFoundError:
        raise FileNotFoundError(f"body model file not found: {path}") from None
    with archive:
        try:
            return _body_from_archive(archive, source, num_betas)
        except ValueError as exc:
            if isinstance(exc, ArrayFileError) or str(exc).startswith(source):
                raise
            raise ValueError(f"{source}: {exc}") from exc


def _body_from_archive(archive: NpzArrays, source: str, num_betas: int | None) -> BodyModel:
    """A validated `BodyModel` from the arrays of an open body npz (module docstring for the keys)."""
    keys = set(archive.files)
    missing = [k for k in ("v_template", "shapedirs", "weights", "f") if k not in keys]
    if missing:
        raise ValueError(f"{source}: missing required arrays {missing}")
    if "parents" in keys:
        parents = archive["parents"]
    elif "kintree_table" in keys:
        parents = archive["kintree_table"][0].astype(np.int64)
    else:
        raise ValueError(f"{source}: needs 'parents' or 'kintree_table'")
    get = lambda k: archive[k] if k in keys else None  # noqa: E731
    if get("J_template") is None and get("J_regressor") is None:
        raise ValueError(f"{source}: needs exact joints (J_template, J_shapedirs) or a J_regressor")
    meta = get("meta")
    names = get("joint_names")
    extras = {k: archive[k] for k in _KNOWN_EXTRAS if k in keys}
    return BodyModel.from_arrays(
        v_template=archive["v_template"],
        shapedirs=archive["shapedirs"],
        posedirs=get("posedirs"),
        weights=archive["weights"],
        faces=archive["f"],
        parents=np.where(parents > np.iinfo(np.int32).max, -1, parents),
        j_template=get("J_template"),
        j_shapedirs=get("J_shapedirs"),
        j_regressor=get("J_regressor"),
        joint_names=None if names is None else [str(n) for n in names],
        extras=extras,
        meta="" if meta is None else str(meta),
        num_betas=num_betas,
        source=source,
    )


def save_body_npz(body: BodyModel, path: str | os.PathLike, compressed: bool = True) -> None:
    """Write `body` as an SMPL-style npz (atomically); `load_body_npz` reads it back exactly."""
    num_joints = body.num_joints
    parents = np.asarray(body.parents, np.int64)
    arrays = {
        "v_template": np.asarray(body.v_template),
        "shapedirs": np.asarray(body.shapedirs),
        "posedirs": np.asarray(body.posedirs),
        "weights": np.asarray(body.weights),
        "f": np.asarray(body.faces, np.int32),
        "kintree_table": np.stack([parents, np.arange(num_joints)]),
        "parents": parents.astype(np.int32),
        "J_template": np.asarray(body.j_template),
        "J_shapedirs": np.asarray(body.j_shapedirs),
        "joint_names": np.asarray(body.joint_names, dtype=str),
        "meta": np.asarray(body.meta, dtype=str),
    }
    if body.j_regressor is not None:
        arrays["J_regressor"] = np.asarray(body.j_regressor)
    for key, value in body.extras.items():
        if key in _CORE_KEYS:
            raise ValueError(f"extra array name {key!r} collides with a core body-model key")
        arrays[key] = np.asarray(value)
    atomic_save_npz(path, compressed=compressed, **arrays)
