"""File inputs and outputs of `jaxpose refine` and `jaxpose fit`: cameras, images, keypoints, paths, figures.

Camera JSON (`load_camera_json` / `save_camera_json`), one perspective camera, exactly these keys:

    {"fx": 500.0, "fy": 500.0,            focal lengths, pixels (> 0)
     "cx": 128.0, "cy": 128.0,            principal point, pixels (jaxpose convention, below)
     "width": 256, "height": 256,         image size, pixels (positive integers)
     "rotation": [[1, 0, 0], [0, -1, 0], [0, 0, -1]],   3×3 world → camera rotation (OpenCV axes:
                                                         x right, y down, z forward), orthonormal, det +1
     "translation": [0.0, 1.0, 3.0]}      world → camera translation t, metres: x_cam = R x_world + t

A world point projects to u = fx·x/z + cx, v = fy·y/z + cy. Pixel convention: the centre of pixel
(row, col) is at (col + 0.5, row + 0.5), so the image centre is (W/2, H/2); OpenCV's (centres at
integers) cx, cy become cx + 0.5, cy + 0.5. The same convention holds for keypoints.

Keypoints JSON (`load_keypoints_json` / `save_keypoints_json`):

    {"keypoints": [[x, y, confidence], ...]}   K rows: pixels (as above) and a confidence in [0, 1]
                                                (0 = not detected); other keys are ignored

with K = 17 in COCO order (nose, left/right eye, left/right ear, left/right shoulder, left/right
elbow, left/right wrist, left/right hip, left/right knee, left/right ankle) for a body with a COCO
regressor, or K = the body's skeleton joints otherwise.

Every problem with an input raises `InputError` (a ValueError) naming the file and the problem.
Outputs go to a directory that must be empty (or absent) unless `overwrite`; files are written
atomically (`jaxpose.io.atomic`), never over an input.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import sys
from collections.abc import Sequence

import jax
import numpy as np
from skimage import io as skimage_io

from jaxpose.bodies import BodyModel, default_body, load_body
from jaxpose.bodies.default import RESOLUTIONS
from jaxpose.fitting.params import pose_body
from jaxpose.fitting.smplify import MIN_ROOT_DEPTH, root_depth
from jaxpose.io.atomic import atomic_write_bytes, atomic_write_text
from jaxpose.render.camera import Camera, make_camera

CAMERA_KEYS = ("fx", "fy", "cx", "cy", "width", "height", "rotation", "translation")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_ROTATION_TOLERANCE = 1e-3


class InputError(ValueError):
    """An input file is missing, malformed or inconsistent with the others (the message says which)."""


# ---------------------------------------------------------------------------------------------
# Cameras
# ---------------------------------------------------------------------------------------------


def camera_to_dict(camera: Camera) -> dict:
    """The camera-JSON dict of a perspective `Camera` (module docstring)."""
    if camera.orthographic:
        raise ValueError("the camera JSON format holds perspective cameras only")
    return {
        "fx": float(camera.fx), "fy": float(camera.fy), "cx": float(camera.cx), "cy": float(camera.cy),
        "width": int(camera.width), "height": int(camera.height),
        "rotation": np.asarray(camera.rotation, np.float64).tolist(),
        "translation": np.asarray(camera.translation, np.float64).tolist(),
    }  # fmt: skip


def _finite_array(value, shape: tuple[int, ...], name: str, source: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{source}: {name} must be numbers of shape {shape}, got {value!r}") from None
    if array.shape != shape:
        label = "×".join(map(str, shape)) + (" matrix" if len(shape) == 2 else " numbers")
        raise InputError(f"{source}: {name} must be a {label}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{source}: {name} contains NaN or infinite values")
    return array


def camera_from_dict(data, source: str = "camera") -> Camera:
    """A `Camera` from a camera-JSON dict; `InputError` naming `source` and the field otherwise."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a camera must be a JSON object with keys {list(CAMERA_KEYS)}")
    missing = [key for key in CAMERA_KEYS if key not in data]
    unknown = sorted(set(data) - set(CAMERA_KEYS))
    if missing or unknown:
        raise InputError(f"{source}: camera keys must be exactly {list(CAMERA_KEYS)} (missing {missing}, unknown {unknown})")
    scalars = {key: float(_finite_array(data[key], (), key, source)) for key in ("fx", "fy", "cx", "cy")}
    for key in ("fx", "fy"):
        if scalars[key] <= 0:
            raise InputError(f"{source}: {key} must be positive (pixels), got {scalars[key]}")
    size = {}
    for key in ("width", "height"):
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or int(value) < 1:
            raise InputError(f"{source}: {key} must be a positive integer (pixels), got {value!r}")
        size[key] = int(value)
    rotation = _finite_array(data["rotation"], (3, 3), "rotation", source)
    error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    if error > _ROTATION_TOLERANCE or np.linalg.det(rotation) < 0:
        raise InputError(f"{source}: rotation must be a proper rotation (orthonormal, det +1); |RᵀR − I| = {error:.3g}, "
                         f"det = {np.linalg.det(rotation):.3g}")  # fmt: skip
    translation = _finite_array(data["translation"], (3,), "translation", source)
    return make_camera(rotation.astype(np.float32), translation.astype(np.float32), **scalars, **size)


def save_camera_json(path: str | os.PathLike, camera: Camera) -> None:
    """Write `camera` to a camera-JSON file atomically (`load_camera_json` reads it back)."""
    data = camera_to_dict(camera)
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items()]  # one row per key
    atomic_write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


def load_camera_json(path: str | os.PathLike) -> Camera:
    """The `Camera` of a camera-JSON file (module docstring); `InputError` naming the file otherwise."""
    path = check_input_file(path, "camera", (".json",))
    return camera_from_dict(_read_json(path, "camera"), f"camera {path}")


# ---------------------------------------------------------------------------------------------
# Images, keypoints, textures, bodies
# ---------------------------------------------------------------------------------------------


def check_input_file(path: str | os.PathLike, role: str, extensions: tuple[str, ...]) -> pathlib.Path:
    """`path` as a Path if it is an existing regular file with one of `extensions`; `InputError` otherwise."""
    path = pathlib.Path(path)
    if not path.exists():
        raise InputError(f"{role} {path}: file does not exist")
    if not path.is_file():
        raise InputError(f"{role} {path}: not a regular file")
    if path.suffix.lower() not in extensions:
        raise InputError(f"{role} {path}: unsupported extension {path.suffix!r} (supported: {', '.join(extensions)})")
    return path


def _read_json(path: pathlib.Path, role: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{role} {path}: not readable JSON ({error})") from None


def load_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] from a PNG/JPEG (grey is repeated, an alpha channel dropped)."""
    path = check_input_file(path, "image", IMAGE_EXTENSIONS)
    try:
        array = np.asarray(skimage_io.imread(path))
    except Exception as error:  # image decoders raise many types; name the file instead
        raise InputError(f"image {path}: cannot be decoded ({type(error).__name__}: {error})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or min(array.shape[:2]) < 1:
        raise InputError(f"image {path}: expected a single (H, W[, 1–4]) picture, got shape {array.shape}")
    array = np.repeat(array[..., :1], 3, axis=-1) if array.shape[-1] < 3 else array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == bool or np.issubdtype(array.dtype, np.floating):
        return np.clip(np.nan_to_num(array.astype(np.float32)), 0.0, 1.0)
    raise InputError(f"image {path}: unsupported pixel type {array.dtype}")


def check_image_size(image: np.ndarray, camera: Camera, what: str) -> None:
    """`InputError` unless the (H, W, 3) image has the camera's height and width."""
    if image.shape[:2] != (camera.height, camera.width):
        raise InputError(f"{what}: image size {image.shape[1]}×{image.shape[0]} (W×H) differs from the camera's "
                         f"{camera.width}×{camera.height}")  # fmt: skip


def load_keypoints_json(path: str | os.PathLike, num_keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints (K, 2) pixels, confidence (K,) in [0, 1]) float32 from a keypoints-JSON file."""
    path = check_input_file(path, "keypoints", (".json",))
    data = _read_json(path, "keypoints")
    rows = data.get("keypoints") if isinstance(data, dict) else None
    if rows is None:
        raise InputError(f"keypoints {path}: needs a JSON object with a 'keypoints' list of [x, y, confidence] rows")
    try:
        shape = np.asarray(rows, dtype=np.float64).shape
    except (TypeError, ValueError):
        shape = "ragged or non-numeric rows"
    if shape != (num_keypoints, 3):
        raise InputError(f"keypoints {path}: expected {num_keypoints} [x, y, confidence] rows for this body, got {shape}")
    array = _finite_array(rows, (num_keypoints, 3), "keypoints", f"keypoints {path}")
    confidence = array[:, 2]
    if np.any((confidence < 0) | (confidence > 1)):
        raise InputError(f"keypoints {path}: confidences must be in [0, 1], got {confidence.min():.3g}…{confidence.max():.3g}")
    if not np.any(confidence > 0):
        raise InputError(f"keypoints {path}: no keypoint has a confidence > 0")
    return array[:, :2].astype(np.float32), confidence.astype(np.float32)


def save_keypoints_json(path: str | os.PathLike, keypoints, confidence) -> None:
    """Write keypoints (K, 2) pixels and confidences (K,) as a keypoints-JSON file, atomically."""
    rows = np.concatenate([np.asarray(keypoints, np.float64), np.asarray(confidence, np.float64)[:, None]], axis=1)
    atomic_write_text(path, json.dumps({"keypoints": rows.tolist()}) + "\n")


def load_texture_npz(path: str | os.PathLike, num_vertices: int) -> np.ndarray:
    """(V, 3) float32 per-vertex colours in [0, 1] from an npz's "colors" (float in [0, 1] or uint8)."""
    from jaxpose.io.arrays import load_npz  # local: keeps this module's import light for the parsers

    path = check_input_file(path, "texture", (".npz",))
    colors = load_npz(path, "texture", keys=("colors",))["colors"]
    if colors.shape != (num_vertices, 3):
        raise InputError(f"texture {path}: 'colors' must have shape ({num_vertices}, 3) for this body, got {colors.shape}")
    if colors.dtype == np.uint8:
        return colors.astype(np.float32) / 255.0
    colors = colors.astype(np.float32)
    if not np.all(np.isfinite(colors)) or colors.min() < 0 or colors.max() > 1:
        raise InputError(f"texture {path}: 'colors' must be finite and in [0, 1]")
    return colors


def resolve_body(spec: str) -> BodyModel:
    """`spec` "low" | "mid" | "full" (the shipped body) or the path of a body file (`jaxpose.bodies.load_body`)."""
    if spec in RESOLUTIONS:
        return default_body(spec)
    path = pathlib.Path(spec)
    if not path.is_file():
        raise InputError(f"body {spec!r}: neither one of {list(RESOLUTIONS)} nor an existing body file")
    return load_body(path)


_posed = jax.jit(pose_body)


def posed(body: BodyModel, params):
    """`pose_body` compiled: BodyOutput with vertices (V, 3) and joints (J, 3), metres."""
    return _posed(body, params)


def check_in_front(body: BodyModel, camera: Camera, params, what: str) -> None:
    """`InputError` if the root joint is behind (or within 5 cm of) the camera, as the fitter requires."""
    depth = float(root_depth(body, camera, params))
    if depth <= MIN_ROOT_DEPTH:
        raise InputError(f"{what}: the body is behind (or within {MIN_ROOT_DEPTH * 100:.0f} cm of) the camera "
                         f"(root depth {depth:.3f} m); check its translation and the camera pose")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Batches of files and the output directory
# ---------------------------------------------------------------------------------------------


def files_by_stem(directory: str | os.PathLike, role: str, extensions: tuple[str, ...]) -> dict[str, pathlib.Path]:
    """{stem: path} of the files of `directory` with one of `extensions`; `InputError` on none or a duplicate stem."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise InputError(f"{role} directory {directory}: does not exist or is not a directory")
    found: dict[str, pathlib.Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in found:
                raise InputError(f"{role} directory {directory}: two files with the stem {path.stem!r} ({found[path.stem].name}, {path.name})")
            found[path.stem] = path
    if not found:
        raise InputError(f"{role} directory {directory}: no {'/'.join(extensions)} files")
    return found


def partners(stems: Sequence[str], directory, role: str, extensions: tuple[str, ...]) -> dict[str, pathlib.Path]:
    """{stem: path} in `directory` for every stem; `InputError` listing the stems that have no file there."""
    found = files_by_stem(directory, role, extensions)
    missing = [stem for stem in stems if stem not in found]
    if missing:
        raise InputError(f"{role} directory {directory}: no {role} for {missing[:10]}{' …' if len(missing) > 10 else ''} "
                         f"(files are paired by stem)")  # fmt: skip
    return {stem: found[stem] for stem in stems}


def check_output_dir(out: str | os.PathLike, outputs: Sequence[pathlib.Path], inputs: Sequence[pathlib.Path], *,
                     overwrite: bool) -> pathlib.Path:  # fmt: skip
    """`out` as a Path if the `outputs` (paths under it) can be written without destroying anything.

    Refuses: `out` being a file; a non-empty `out` without `overwrite`; an output that is an input
    (even with `overwrite`); an unwritable nearest existing ancestor. Creates nothing.
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out}: is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"output {out}: directory is not empty; pass --overwrite to write into it")
    for target in outputs:
        if target.exists():
            if target.is_dir():
                raise InputError(f"output {target}: is a directory")
            for source in inputs:
                if source.exists() and os.path.samefile(target, source):
                    raise InputError(f"output {target}: is the input {source}; refusing to overwrite an input")
    existing = next((p for p in (out, *out.absolute().parents) if p.exists()), pathlib.Path.cwd())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"output {out}: {existing} is not a writable directory")
    return out


def write_json(path: str | os.PathLike, data) -> None:
    """Atomically write `data` as indented JSON (NumPy scalars and arrays become numbers and lists)."""

    def plain(value):
        if isinstance(value, np.ndarray | jax.Array):
            return np.asarray(value).tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, pathlib.Path):
            return str(value)
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    atomic_write_text(path, json.dumps(data, indent=2, default=plain) + "\n")


def status(prog: str, message: str) -> None:
    """One progress/status line on stderr."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Overlay figures
# ---------------------------------------------------------------------------------------------

OVERLAY_COLOR = (0.45, 0.7, 1.0)  # albedo of the bodies drawn over the image


@dataclasses.dataclass(frozen=True)
class Panel:
    """One panel of an overlay: a title, an (H, W, 3) picture in [0, 1] and optional point sets
    ((K, 2) pixels, matplotlib marker, colour, label)."""

    title: str
    picture: np.ndarray
    points: tuple[tuple[np.ndarray, str, str, str], ...] = ()


def blend(image: np.ndarray, render: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3): `render` blended over `image` with opacity `alpha` where `mask`, the image elsewhere."""
    mask = np.asarray(mask, bool)[..., None]
    return np.where(mask, (1 - alpha) * image + alpha * np.asarray(render, np.float32), image)


def save_overlay_png(path: str | os.PathLike, panels: Sequence[Panel], panel_inches: float = 3.2, dpi: int = 100) -> None:
    """Write the panels side by side, titled, to a PNG atomically (pixel (r, c) spans [c, c+1] × [r, r+1])."""
    import matplotlib  # local: only the figures need matplotlib, and it must get the Agg backend first

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    height, width = panels[0].picture.shape[:2]
    aspect = width / height
    figure = Figure(figsize=(len(panels) * panel_inches * aspect, panel_inches + 0.4), dpi=dpi, layout="constrained")
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        axes.imshow(np.clip(panel.picture, 0, 1), interpolation="nearest", extent=(0, width, height, 0))
        for points, marker, color, label in panel.points:
            axes.scatter(points[:, 0], points[:, 1], s=14, marker=marker, c=color, label=label, linewidths=1.2)
        if panel.points:
            axes.legend(loc="lower right", fontsize=6, framealpha=0.6)
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(panel.title, fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    atomic_write_bytes(path, buffer.getvalue())


def parse_steps(text: str | None) -> tuple[int, int] | None:
    """"N1,N2" → (N1, N2) solver steps of the two stages (both ≥ 1); None → None (the solver's defaults)."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        steps = tuple(int(part) for part in parts)
    except ValueError:
        steps = ()
    if len(steps) != 2 or min(steps) < 1:
        raise InputError(f"--steps must be two positive integers N1,N2 (stage 1, stage 2), got {text!r}")
    return steps


def finite_or_none(value) -> float | None:
    """A float for JSON (None for NaN/Inf)."""
    value = float(value)
    return value if math.isfinite(value) else None


__all__ = [
    "CAMERA_KEYS", "IMAGE_EXTENSIONS", "InputError", "OVERLAY_COLOR", "Panel", "blend", "camera_from_dict",
    "camera_to_dict", "check_image_size", "check_in_front", "check_input_file", "check_output_dir", "files_by_stem",
    "finite_or_none", "load_camera_json", "load_image", "load_keypoints_json", "load_texture_npz", "parse_steps",
    "partners", "posed", "resolve_body", "save_camera_json", "save_keypoints_json", "save_overlay_png", "status",
    "write_json",
]
