"""Loading user-owned SMPL-family `.pkl` model files (SMPL, SMPL+H/MANO-style, SMAL) into a `BodyModel`.

These files are licensed by their owners and are never shipped or downloaded by jaxpose; pass the
path of a copy you own. They are read with the allow-list unpickler of
`jaxpose.bodies.chumpy_pickle` (no chumpy install, no code execution), then normalised:

  * root parent 4294967295 (uint32 -1) -> -1; the tree must be topologically ordered;
  * `f` -> int32 and checked against V; `weights` rows must sum to 1;
  * `shapedirs` (a chumpy array in the official files) sliced to `num_betas`;
  * `posedirs` (V, 3, 9 (J-1)) kept as SMPL's pose correctives;
  * the sparse `J_regressor` is densified and the exact joints J_template = R v_template,
    J_shapedirs = R shapedirs are precomputed (so posing needs no regressor afterwards).

The result is the same `BodyModel` as the shipped ANNY npz; SMPL-X (`.npz`) files load through
`jaxpose.bodies.files.load_body_npz`. Axes are whatever the file uses (SMAL is z-up).
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from jaxpose.bodies.chumpy_pickle import load_chumpy_safe
from jaxpose.bodies.model import BodyModel
from jaxpose.bodies.skeleton import SMPL_JOINT_NAMES

_REQUIRED_KEYS = ("v_template", "f", "weights", "shapedirs", "J_regressor", "kintree_table")
# Extra per-vertex data worth keeping when present (numeric only).
_KEPT_EXTRAS = ("vert_sym_idxs",)


def load_smpl_pickle(path: str | os.PathLike, num_betas: int | None = None) -> BodyModel:
    """Load an SMPL-style `.pkl` (SMPL v1.0/v1.1, SMAL, ...) as a validated `BodyModel`.

    Args:
      path: the pickle file.
      num_betas: keep only the first `num_betas` shape components (all if None).

    Returns a `BodyModel` whose arrays keep the file's float dtype (float64 for the official files;
    use `.astype(np.float32)` for float32 work). Joint names are SMPL's for 24-joint files and
    `joint_<j>` otherwise.

    Raises FileNotFoundError for a missing file, `UnsafePickleError` (a ValueError) if the pickle
    references anything outside the allow-list, `MalformedPickleError` (a ValueError) naming the file
    if it is truncated, corrupt or asks to build oversized objects, and ValueError naming the file and the array for
    missing keys, wrong shapes, non-finite values, face indices >= V, skinning weights that do not
    sum to 1 and joint trees that are not topologically ordered.
    """
    path = pathlib.Path(path)
    source = f"body model {path}"
    data = load_chumpy_safe(path)
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a pickled dict of arrays, got {type(data).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"{source}: missing required keys {missing} (found {sorted(map(str, data))})")

    kintree = np.asarray(data["kintree_table"])
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise ValueError(f"{source}: kintree_table must have shape (2, J), got {kintree.shape}")
    if not np.issubdtype(kintree.dtype, np.integer):
        raise ValueError(f"{source}: kintree_table must be integer, got dtype {kintree.dtype}")
    num_joints = kintree.shape[1]
    if not np.array_equal(kintree[1].astype(np.int64), np.arange(num_joints)):
        raise ValueError(f"{source}: kintree_table row 1 must list the joints 0..J-1 in order")
    parents = kintree[0].astype(np.int64)
    if parents[0] not in (-1, 2**32 - 1):
        raise ValueError(f"{source}: the root's parent must be -1 or 4294967295, got {parents[0]}")
    parents[0] = -1

    extras = {}
    for key in _KEPT_EXTRAS:
        if key in data:
            value = np.asarray(data[key])
            if np.issubdtype(value.dtype, np.number):
                extras[key] = value

    joint_names = SMPL_JOINT_NAMES if num_joints == len(SMPL_JOINT_NAMES) else None
    meta = json.dumps({
        "source": path.name,
        "format": "smpl-family pickle",
        "num_joints": num_joints,
        "bs_style": str(data.get("bs_style", "")),
        "bs_type": str(data.get("bs_type", "")),
    })
    return BodyModel.from_arrays(
        v_template=data["v_template"],
        shapedirs=data["shapedirs"],
        posedirs=data.get("posedirs"),
        weights=data["weights"],
        faces=data["f"],
        parents=parents,
        j_regressor=data["J_regressor"],
        joint_names=joint_names,
        extras=extras,
        meta=meta,
        num_betas=num_betas,
        source=source,
    )
