"""Reader and writer of DensePose-COCO-style annotation JSON (dense (I, U, V) labels of people).

Format (COCO with DensePose's extra fields, as in DensePose-COCO): a JSON object with "images" and
"annotations" lists (and "categories"); every annotation with dense labels has
  "bbox" [x, y, w, h] pixels; "dp_x", "dp_y" point positions in [0, 255] relative to the box
  (pixel x = bbox_x + dp_x / 255 · w, as DensePose's own visualisation code); "dp_I" part index 1..24;
  "dp_U", "dp_V" chart coordinates in [0, 1]; optionally "image_id", "id", "category_id" and
  "keypoints" (COCO's flat [x, y, visibility, ...] list; K keypoints, any K).
Annotations without any "dp_*" key (DensePose-COCO has people without dense labels) are skipped;
an annotation with only some of them is an error.

Note: real DensePose-COCO (I, U, V) live on SMPL's part charts (DensePose's UV_Processed.mat). With
another body (jaxpose's default) the labels must be in *that* body's charts (`charts.part_charts`),
e.g. the synthetic labels of `synthetic.make_dataset`, which `dataset_annotations` converts; a file of
real DensePose-COCO labels cannot be used with a non-SMPL body.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from jaxpose.io.atomic import atomic_write_text

DP_SCALE = 255.0  # dp_x / dp_y span [0, DP_SCALE] across the box
NUM_DENSEPOSE_PARTS = 24
_DP_KEYS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")


class DensePoseFormatError(ValueError):
    """A DensePose JSON file that does not follow the format (the message names the file and entry)."""


@dataclasses.dataclass(frozen=True)
class DensePoseAnnotation:
    """Dense labels of one person.

    image_id: int; bbox (4,) float64 [x, y, w, h] pixels; points (P, 2) float64 pixel (x, y) (x right,
    y down, pixel centres at integer + 0.5 as everywhere in jaxpose); parts (P,) int32 0-based (DensePose
    I − 1); uv (P, 2) float64 (U, V) ∈ [0, 1]; keypoints (K, 3) float64 (x, y, visibility) or None;
    annotation_id: int or None.
    """

    image_id: int
    bbox: np.ndarray
    points: np.ndarray
    parts: np.ndarray
    uv: np.ndarray
    keypoints: np.ndarray | None = None
    annotation_id: int | None = None


def _fail(source, where: str, problem: str) -> DensePoseFormatError:
    return DensePoseFormatError(f"{source}: {where}: {problem}")


def _numbers(value, source, where: str, key: str) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise _fail(source, where, f"{key!r} must be a list of numbers")
    array = np.asarray(value, np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise _fail(source, where, f"{key!r} contains NaN or infinite values")
    return array


def _parse_annotation(entry, source, where: str, num_parts: int) -> DensePoseAnnotation | None:
    if not isinstance(entry, dict):
        raise _fail(source, where, f"must be a JSON object, got {type(entry).__name__}")
    present = [key for key in _DP_KEYS if key in entry]
    if not present:
        return None
    missing = [key for key in _DP_KEYS + ("bbox",) if key not in entry]
    if missing:
        raise _fail(source, where, f"missing key(s) {missing}")
    bbox = _numbers(entry["bbox"], source, where, "bbox")
    if bbox.shape != (4,) or bbox[2] <= 0 or bbox[3] <= 0:
        raise _fail(source, where, f"'bbox' must be [x, y, w, h] with w, h > 0, got {entry['bbox']}")
    values = {key: _numbers(entry[key], source, where, key) for key in _DP_KEYS}
    lengths = {key: len(v) for key, v in values.items()}
    if len(set(lengths.values())) != 1:
        raise _fail(source, where, f"dp_* lists have different lengths {lengths}")
    for key in ("dp_x", "dp_y"):
        if np.any((values[key] < 0) | (values[key] > DP_SCALE)):
            raise _fail(source, where, f"{key!r} must lie in [0, {DP_SCALE:g}] (relative to the bbox)")
    for key in ("dp_U", "dp_V"):
        if np.any((values[key] < 0) | (values[key] > 1)):
            raise _fail(source, where, f"{key!r} must lie in [0, 1]")
    part = values["dp_I"]
    if np.any(part != np.round(part)) or np.any((part < 1) | (part > num_parts)):
        raise _fail(source, where, f"'dp_I' must be integers in 1..{num_parts}, got values in [{part.min() if part.size else 0:g}, {part.max() if part.size else 0:g}]")
    keypoints = None
    if "keypoints" in entry and entry["keypoints"] is not None:
        flat = _numbers(entry["keypoints"], source, where, "keypoints")
        if flat.size % 3:
            raise _fail(source, where, f"'keypoints' length {flat.size} is not a multiple of 3 (x, y, visibility)")
        keypoints = flat.reshape(-1, 3)
    image_id, annotation_id = entry.get("image_id", -1), entry.get("id")
    for key, value in (("image_id", image_id), ("id", annotation_id)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise _fail(source, where, f"{key!r} must be an integer, got {value!r}")
    x0, y0, w, h = bbox
    points = np.stack([x0 + values["dp_x"] / DP_SCALE * w, y0 + values["dp_y"] / DP_SCALE * h], axis=-1)
    return DensePoseAnnotation(
        image_id=int(image_id), bbox=bbox, points=points.reshape(-1, 2), parts=(part - 1).astype(np.int32),
        uv=np.stack([values["dp_U"], values["dp_V"]], axis=-1).reshape(-1, 2), keypoints=keypoints,
        annotation_id=None if annotation_id is None else int(annotation_id),
    )


def read_densepose_json(path: str | os.PathLike, *, num_parts: int = NUM_DENSEPOSE_PARTS) -> list[DensePoseAnnotation]:
    """Read the dense annotations of a DensePose-COCO-style JSON file (in file order).

    Raises `DensePoseFormatError` (a ValueError) naming the file and the annotation index when the file
    is not JSON, lacks an "annotations" list, or an annotation has a missing key, dp_* lists of different
    lengths, a part outside 1..`num_parts`, U/V outside [0, 1], dp_x/dp_y outside [0, 255], a bad bbox
    or NaN/infinite numbers.
    """
    path = pathlib.Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DensePoseFormatError(f"{path}: not a valid JSON file ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise DensePoseFormatError(f"{path}: expected a JSON object with an 'annotations' list")
    result = []
    for index, entry in enumerate(document["annotations"]):
        annotation = _parse_annotation(entry, path, f"annotations[{index}]", num_parts)
        if annotation is not None:
            result.append(annotation)
    return result


def write_densepose_json(path: str | os.PathLike, annotations, images, *, num_parts: int = NUM_DENSEPOSE_PARTS) -> None:
    """Write annotations as a DensePose-COCO-style JSON file (atomically).

    Args:
      path: output file.
      annotations: iterable of `DensePoseAnnotation` (points must lie inside their bbox).
      images: list of COCO image dicts (e.g. {"id", "file_name", "width", "height"}), written as given.
      num_parts: parts are checked to lie in 0..num_parts − 1.
    Annotation ids are kept where given, else numbered from 1; category_id is 1 ("person").
    """
    entries = []
    for index, annotation in enumerate(annotations):
        where = f"annotation {index}"
        bbox = np.asarray(annotation.bbox, np.float64)
        points = np.asarray(annotation.points, np.float64).reshape(-1, 2)
        parts = np.asarray(annotation.parts).reshape(-1)
        uv = np.asarray(annotation.uv, np.float64).reshape(-1, 2)
        if bbox.shape != (4,) or not np.all(np.isfinite(bbox)) or bbox[2] <= 0 or bbox[3] <= 0:
            raise ValueError(f"{where}: bbox must be finite [x, y, w, h] with w, h > 0, got {bbox}")
        if not (len(points) == len(parts) == len(uv)):
            raise ValueError(f"{where}: points, parts and uv have different lengths {len(points)}, {len(parts)}, {len(uv)}")
        if not (np.all(np.isfinite(points)) and np.all(np.isfinite(uv))):
            raise ValueError(f"{where}: points or uv contain NaN or infinite values")
        if np.any((parts < 0) | (parts >= num_parts)):
            raise ValueError(f"{where}: parts must lie in 0..{num_parts - 1}")
        if np.any((uv < 0) | (uv > 1)):
            raise ValueError(f"{where}: uv must lie in [0, 1]")
        relative = (points - bbox[None, :2]) / bbox[None, 2:] * DP_SCALE
        if np.any((relative < -1e-6) | (relative > DP_SCALE + 1e-6)):
            raise ValueError(f"{where}: points must lie inside the bbox {bbox.tolist()}")
        relative = np.clip(relative, 0.0, DP_SCALE)
        entry = {
            "id": int(annotation.annotation_id) if annotation.annotation_id is not None else index + 1,
            "image_id": int(annotation.image_id), "category_id": 1, "iscrowd": 0,
            "bbox": [float(x) for x in bbox], "area": float(bbox[2] * bbox[3]),
            "dp_x": [float(x) for x in relative[:, 0]], "dp_y": [float(y) for y in relative[:, 1]],
            "dp_I": [int(p) + 1 for p in parts], "dp_U": [float(u) for u in uv[:, 0]], "dp_V": [float(v) for v in uv[:, 1]],
        }
        if annotation.keypoints is not None:
            keypoints = np.asarray(annotation.keypoints, np.float64).reshape(-1, 3)
            if not np.all(np.isfinite(keypoints)):
                raise ValueError(f"{where}: keypoints contain NaN or infinite values")
            entry["keypoints"] = [float(x) for x in keypoints.reshape(-1)]
            entry["num_keypoints"] = int(np.sum(keypoints[:, 2] > 0))
        entries.append(entry)
    document = {"images": list(images), "annotations": entries, "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    atomic_write_text(path, json.dumps(document, allow_nan=False))


def dataset_annotations(data, *, first_image_id: int = 0) -> tuple[list[DensePoseAnnotation], list[dict]]:
    """Convert a `synthetic.make_dataset` dict to (annotations, COCO image dicts) for `write_densepose_json`.

    Per image: the valid dense points (normalised → pixel coordinates), their parts and (U, V) in the
    body's own charts, the bbox of the mask (whole pixels), and the 24 body joints as keypoints
    (visibility 2 inside the image, 0 outside) — the body's joints, not COCO's 17 keypoints.
    Image ids are `first_image_id + index`; file names "synthetic_<id>.png" (images are not written).
    """
    masks = np.asarray(data["mask"])
    size = masks.shape[1]
    annotations, images = [], []
    for index in range(masks.shape[0]):
        image_id = first_image_id + index
        rows, cols = np.nonzero(masks[index])
        if rows.size == 0:
            continue
        bbox = np.asarray([cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()], np.float64)
        valid = np.asarray(data["dense_valid"][index])
        points = (np.asarray(data["dense_xy"][index], np.float64)[valid] + 1.0) * (size / 2.0)
        keypoints_px = (np.asarray(data["keypoints"][index], np.float64) + 1.0) * (size / 2.0)
        visibility = np.where(np.asarray(data["keypoint_valid"][index]), 2.0, 0.0)
        annotations.append(DensePoseAnnotation(
            image_id=image_id, bbox=bbox, points=points, parts=np.asarray(data["dense_part"][index])[valid].astype(np.int32),
            uv=np.clip(np.asarray(data["dense_uv"][index], np.float64)[valid], 0.0, 1.0),
            keypoints=np.concatenate([keypoints_px, visibility[:, None]], axis=1), annotation_id=index + 1,
        ))
        images.append({"id": image_id, "file_name": f"synthetic_{image_id}.png", "width": size, "height": size})
    return annotations, images
