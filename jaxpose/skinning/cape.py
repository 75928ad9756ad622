"""Reader for the CAPE release layout; jaxpose's synthetic clothed data uses it too.

See docs/skinning.md, "CAPE data layout".

Layout under a root directory (CAPE's `cape_release/`):

    sequences/<subject>/<clothing>_<motion>/<clothing>_<motion>.<frame>.npz
        v_posed (V, 3)  clothed, posed and translated mesh (SMPL topology for CAPE), metres
        v_cano  (V, 3)  clothed mesh in the zero pose, with the pose-dependent cloth of that frame
        pose    (72,)   axis-angle, 24 SMPL joints x 3, radians (joint 0 = global orientation)
        transl  (3,)    global translation, metres
    minimal_body_shape/<subject>/<subject>_minimal.npy   (V, 3) minimally clothed template (replaces betas)
    misc/smpl_tris.npy                                    (F, 3) faces
    misc/subj_genders.pkl                                 optional {subject: gender}

Frames are ordered by file name. As SNARF does, the per-frame `vertices` this loader returns are
`v_posed - transl` (the body at the origin, global orientation kept). jaxpose-generated data adds
`minimal_body_shape/<subject>/<subject>_body.npz` (a full `BodyModel` whose rest mesh is the minimal
template, for LBS baselines) and a `meta.json` at the root; real CAPE has neither and needs the
user's SMPL model (`subject_body_model`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import NamedTuple

import numpy as np

from jaxpose.bodies.chumpy_pickle import load_chumpy_safe
from jaxpose.bodies.files import load_body_npz
from jaxpose.io.arrays import ArrayFileError, load_npy, open_npz

NUM_JOINTS = 24
FRAME_KEYS = ("v_posed", "v_cano", "pose", "transl")


class CapeFormatError(ValueError):
    """A CAPE-layout file is missing a key, has the wrong shape, or holds non-finite values."""


class CapeFrame(NamedTuple):
    """One frame. vertices = v_posed - transl.

    vertices (V, 3), v_posed (V, 3), v_cano (V, 3) metres; pose (24, 3) axis-angle radians; transl (3,) metres.
    """

    vertices: np.ndarray
    v_posed: np.ndarray
    v_cano: np.ndarray
    pose: np.ndarray
    transl: np.ndarray


class CapeFrames(NamedTuple):
    """A stack of T frames: vertices/v_posed/v_cano (T, V, 3), pose (T, 24, 3), transl (T, 3), names (T,)."""

    vertices: np.ndarray
    v_posed: np.ndarray
    v_cano: np.ndarray
    pose: np.ndarray
    transl: np.ndarray
    names: tuple[str, ...]


def _require_file(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.is_file():
        raise FileNotFoundError(f"CAPE {what} not found: {path}")
    return path


def _load_npy(path: pathlib.Path, what: str) -> np.ndarray:
    _require_file(path, what)
    try:
        return load_npy(path, what=f"CAPE {what}")
    except ArrayFileError as exc:
        raise CapeFormatError(str(exc)) from None


def _check_finite(array: np.ndarray, name: str, source: pathlib.Path) -> None:
    if not np.issubdtype(array.dtype, np.number):
        raise CapeFormatError(f"{source}: {name} must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise CapeFormatError(f"{source}: {name} contains NaN or inf")


def read_frame(path: str | os.PathLike, num_vertices: int | None = None) -> CapeFrame:
    """Read and validate one CAPE frame npz (see the module docstring for its keys).

    `num_vertices`, if given, is the V every mesh must have. Raises FileNotFoundError or
    CapeFormatError naming the file and the problem.
    """
    path = _require_file(pathlib.Path(path), "frame file")
    try:
        with open_npz(path, what="CAPE frame file") as data:
            missing = [key for key in FRAME_KEYS if key not in data.files]
            if missing:
                raise CapeFormatError(f"{path}: missing key(s) {missing}; found {sorted(data.files)}")
            arrays = {key: np.asarray(data[key]) for key in FRAME_KEYS}
    except ArrayFileError as exc:
        raise CapeFormatError(str(exc)) from None
    for key, value in arrays.items():
        _check_finite(value, key, path)
    for key in ("v_posed", "v_cano"):
        shape = arrays[key].shape
        if len(shape) != 2 or shape[1] != 3 or (num_vertices is not None and shape[0] != num_vertices):
            expected = f"({num_vertices if num_vertices is not None else 'V'}, 3)"
            raise CapeFormatError(f"{path}: {key} must have shape {expected}, got {shape}")
    if arrays["v_posed"].shape != arrays["v_cano"].shape:
        raise CapeFormatError(f"{path}: v_posed {arrays['v_posed'].shape} and v_cano {arrays['v_cano'].shape} differ")
    if arrays["pose"].size != NUM_JOINTS * 3:
        raise CapeFormatError(f"{path}: pose must have {NUM_JOINTS * 3} values (axis-angle), got shape {arrays['pose'].shape}")
    if arrays["transl"].size != 3:
        raise CapeFormatError(f"{path}: transl must have shape (3,), got {arrays['transl'].shape}")
    pose = arrays["pose"].reshape(NUM_JOINTS, 3).astype(np.float32)
    transl = arrays["transl"].reshape(3).astype(np.float32)
    v_posed = arrays["v_posed"].astype(np.float32)
    return CapeFrame(vertices=v_posed - transl[None, :], v_posed=v_posed, v_cano=arrays["v_cano"].astype(np.float32), pose=pose, transl=transl)


def _stack(frames: list[CapeFrame], names: list[str]) -> CapeFrames:
    if not frames:
        raise ValueError("no frames selected")
    return CapeFrames(*(np.stack([getattr(f, k) for f in frames]) for k in CapeFrame._fields), names=tuple(names))


@dataclasses.dataclass(frozen=True)
class CapeSequence:
    """One `<clothing>_<motion>` sequence of one subject. Frames are read lazily from disk."""

    subject: "CapeSubject"
    name: str

    @property
    def directory(self) -> pathlib.Path:
        return self.subject.directory / self.name

    @property
    def clothing(self) -> str:
        """The part before the first underscore (CAPE's clothing type, e.g. `longshort`)."""
        return self.name.split("_", 1)[0]

    @property
    def motion(self) -> str:
        """The part after the first underscore (e.g. `ATUsquat`); empty if the name has none."""
        parts = self.name.split("_", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def frame_paths(self) -> tuple[pathlib.Path, ...]:
        paths = tuple(sorted(self.directory.glob("*.npz")))
        if not paths:
            raise FileNotFoundError(f"CAPE sequence {self.subject.subject}/{self.name} has no .npz frames in {self.directory}")
        return paths

    def __len__(self) -> int:
        return len(self.frame_paths)

    def frame(self, index: int) -> CapeFrame:
        """Frame `index` (in file-name order), validated against the subject's template size."""
        paths = self.frame_paths
        if not -len(paths) <= index < len(paths):
            raise IndexError(f"frame index {index} out of range for {len(paths)} frames in {self.directory}")
        return read_frame(paths[index], num_vertices=self.subject.num_vertices)

    def load(self, frames=None) -> CapeFrames:
        """Stack the selected frames (indices, a slice, or None = all) into arrays (see `CapeFrames`)."""
        paths = self.frame_paths
        if frames is None:
            selected = list(paths)
        elif isinstance(frames, slice):
            selected = list(paths[frames])
        else:
            indices = [int(i) for i in np.atleast_1d(np.asarray(frames))]
            for i in indices:
                if not -len(paths) <= i < len(paths):
                    raise IndexError(f"frame index {i} out of range for {len(paths)} frames in {self.directory}")
            selected = [paths[i] for i in indices]
        num_vertices = self.subject.num_vertices
        loaded = [read_frame(p, num_vertices=num_vertices) for p in selected]
        return _stack(loaded, [p.stem for p in selected])


@dataclasses.dataclass(frozen=True)
class CapeSubject:
    """One subject of a CAPE-layout root: its minimal template, the shared faces, its sequences."""

    root: pathlib.Path
    subject: str

    def __post_init__(self):
        object.__setattr__(self, "root", pathlib.Path(self.root))
        if not self.directory.is_dir():
            available = sorted(p.name for p in (self.root / "sequences").glob("*") if p.is_dir())
            raise FileNotFoundError(f"CAPE subject {self.subject!r} has no directory {self.directory}; available: {available}")

    @property
    def directory(self) -> pathlib.Path:
        return self.root / "sequences" / self.subject

    @property
    def minimal_template(self) -> np.ndarray:
        """(V, 3) float32 minimally clothed template, metres (zero pose)."""
        path = self.root / "minimal_body_shape" / self.subject / f"{self.subject}_minimal.npy"
        template = _load_npy(path, "minimal body shape")
        if template.ndim != 2 or template.shape[1] != 3:
            raise CapeFormatError(f"{path}: minimal template must have shape (V, 3), got {template.shape}")
        _check_finite(template, "minimal template", path)
        return template.astype(np.float32)

    @property
    def num_vertices(self) -> int:
        return self.minimal_template.shape[0]

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int32 faces shared by every mesh (misc/smpl_tris.npy), validated against V."""
        return load_faces(self.root, self.num_vertices)

    @property
    def sequence_names(self) -> tuple[str, ...]:
        return tuple(sorted(p.name for p in self.directory.iterdir() if p.is_dir()))

    @property
    def clothing_types(self) -> tuple[str, ...]:
        return tuple(sorted({name.split("_", 1)[0] for name in self.sequence_names}))

    def sequence(self, name: str) -> CapeSequence:
        if not (self.directory / name).is_dir():
            raise FileNotFoundError(f"CAPE subject {self.subject!r} has no sequence {name!r}; available: {list(self.sequence_names)}")
        return CapeSequence(self, name)

    def sequences(self, clothing: str | None = None) -> tuple[CapeSequence, ...]:
        """All sequences, or those of one clothing type."""
        return tuple(CapeSequence(self, n) for n in self.sequence_names if clothing is None or n.split("_", 1)[0] == clothing)

    @property
    def body_path(self) -> pathlib.Path:
        return self.root / "minimal_body_shape" / self.subject / f"{self.subject}_body.npz"

    def body_model(self, smpl_body=None):
        """A `BodyModel` posing this subject's minimal template with betas = 0.

        jaxpose-generated data ships `<subject>_body.npz` (read when `smpl_body` is None). For real CAPE
        pass the user's SMPL `BodyModel` of the subject's gender (see `subject_body_model`).
        """
        if smpl_body is not None:
            return subject_body_model(smpl_body, self.minimal_template)
        if not self.body_path.is_file():
            raise FileNotFoundError(
                f"{self.body_path} not found: real CAPE ships no skinning model; pass smpl_body= (the user's SMPL model)"
            )
        body = load_body_npz(self.body_path)
        if body.num_vertices != self.num_vertices:
            raise CapeFormatError(f"{self.body_path}: body has {body.num_vertices} vertices, template has {self.num_vertices}")
        return body

    @property
    def gender(self) -> str | None:
        """From misc/subj_genders.pkl if present (read with jaxpose's restricted unpickler), else None."""
        path = self.root / "misc" / "subj_genders.pkl"
        if not path.is_file():
            return None
        genders = load_chumpy_safe(path)
        if not isinstance(genders, dict):
            raise CapeFormatError(f"{path}: expected a dict subject -> gender, got {type(genders).__name__}")
        return genders.get(self.subject)


def load_faces(root: str | os.PathLike, num_vertices: int | None = None) -> np.ndarray:
    """misc/smpl_tris.npy as (F, 3) int32, checked to index [0, num_vertices)."""
    path = pathlib.Path(root) / "misc" / "smpl_tris.npy"
    faces = _load_npy(path, "faces file")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise CapeFormatError(f"{path}: faces must be an integer array of shape (F, 3), got {faces.dtype} {faces.shape}")
    if faces.size and (faces.min() < 0 or (num_vertices is not None and faces.max() >= num_vertices)):
        raise CapeFormatError(f"{path}: face indices must lie in [0, {num_vertices}), got [{faces.min()}, {faces.max()}]")
    return faces.astype(np.int32)


def subject_body_model(smpl_body, minimal_template: np.ndarray):
    """The SMPL body with v_template replaced by a CAPE minimal template (betas then stay 0).

    Joints follow SNARF: regressed from the new template with the body's `j_regressor` when it has
    one; otherwise the template must equal the body's own (nothing to regress with).
    """
    template = np.asarray(minimal_template, np.float32)
    if template.shape != tuple(smpl_body.v_template.shape):
        raise ValueError(f"minimal template {template.shape} does not match the body's v_template {tuple(smpl_body.v_template.shape)}")
    if smpl_body.j_regressor is None:
        raise ValueError("the body model has no j_regressor; cannot place joints for a new template")
    joints = np.asarray(smpl_body.j_regressor, np.float32) @ template
    return dataclasses.replace(
        smpl_body,
        v_template=template,
        j_template=joints,
        shapedirs=np.zeros_like(np.asarray(smpl_body.shapedirs)),
        j_shapedirs=np.zeros_like(np.asarray(smpl_body.j_shapedirs)),
    )


@dataclasses.dataclass(frozen=True)
class CapeDataset:
    """A CAPE-layout root directory (real CAPE or jaxpose's synthetic clothed data)."""

    root: pathlib.Path

    def __post_init__(self):
        object.__setattr__(self, "root", pathlib.Path(self.root))
        if not (self.root / "sequences").is_dir():
            raise FileNotFoundError(f"{self.root} is not a CAPE-layout root: {self.root / 'sequences'} is missing")

    @property
    def subject_names(self) -> tuple[str, ...]:
        return tuple(sorted(p.name for p in (self.root / "sequences").iterdir() if p.is_dir()))

    def subject(self, name: str) -> CapeSubject:
        return CapeSubject(self.root, name)

    def meta(self) -> dict | None:
        """meta.json (jaxpose-generated data only) or None."""
        path = self.root / "meta.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CapeFormatError(f"{path}: corrupt JSON ({exc})") from exc


__all__ = [
    "CapeDataset",
    "CapeFormatError",
    "CapeFrame",
    "CapeFrames",
    "CapeSequence",
    "CapeSubject",
    "load_faces",
    "read_frame",
    "subject_body_model",
]
