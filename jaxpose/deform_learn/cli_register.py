"""`jaxpose register --image IMG --labels LABELS.json --out DIR`: fit the segment-scale body to one image.

Reads the image and its DensePose-COCO-style labels (`densepose_json`; every annotation of the file that
belongs to the image is one person), turns each labelled pixel (part, U, V) into a correspondence with
the nearest vertex of that part's chart (the paper's pixel → vertex search, `charts`), and runs the
registration (`registration.register`) from the T-pose. Keypoints are used when the annotation has
them: 24 points are the body's own joints (what `jaxpose.deform_learn` writes), 17 are COCO keypoints,
of which the 12 limb joints (shoulders, elbows, wrists, hips, knees, ankles) are matched to the body's
joints of the same name (an approximation: COCO marks surface landmarks, the body its joint centres).
No lifter depths are used (the depth term is off). Labels must be in the *body's* charts: real
DensePose-COCO (I, U, V) live on SMPL's charts and need an SMPL-family body with those charts.

Outputs per person k (files written atomically): ``person_k/params.npz`` (θ), ``person_k/mesh.obj``
(the registered body R·X in the camera-axes frame, metres up to the weak-perspective scale),
``person_k/summary.json`` (energies, dense residual in px) and one ``overlay.png`` for the image.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax.numpy as jnp
import numpy as np

from jaxpose.bodies import BodyModel
from jaxpose.deform_learn.camera import normalised_to_pixels, pixels_to_normalised
from jaxpose.deform_learn.charts import nearest_chart_vertex, part_charts
from jaxpose.deform_learn.densepose_json import DensePoseAnnotation, DensePoseFormatError, read_densepose_json
from jaxpose.deform_learn.params import INITIAL_ROTATION, predict_points, save_params_npz
from jaxpose.deform_learn.registration import RegistrationConfig, first_iteration_weights, register, registration_energies
from jaxpose.fitting.inputs import (
    InputError, Panel, blend, check_input_file, check_output_dir, load_image, resolve_body, status, write_json,
)  # fmt: skip
from jaxpose.fitting.renders import body_code_colors, render_modalities
from jaxpose.io.mesh import save_mesh
from jaxpose.render.camera import make_camera

# COCO-17 keypoint index -> SMPL-named joint of the body (the 12 limb joints that both skeletons have).
COCO_TO_BODY_JOINT = {
    5: "left_shoulder", 6: "right_shoulder", 7: "left_elbow", 8: "right_elbow", 9: "left_wrist", 10: "right_wrist",
    11: "left_hip", 12: "right_hip", 13: "left_knee", 14: "right_knee", 15: "left_ankle", 16: "right_ankle",
}  # fmt: skip
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

EPILOG = """\
Labels: DensePose-COCO-style JSON (annotations with bbox, dp_x, dp_y, dp_I, dp_U, dp_V; optional keypoints),
in the charts of --body (jaxpose.deform_learn.charts). `jaxpose.deform_learn.densepose_json.write_densepose_json`
writes such files from the synthetic data. Without --image_id, the annotations of the file's only image are used.
"""


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Register the segment-scale body to one image's dense labels.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--image", required=True, help="the image (PNG/JPEG)")
    parser.add_argument("--labels", required=True, help="DensePose-COCO-style JSON with the image's dense labels")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--image_id", type=int, help="which image of the JSON (default: its only one)")
    parser.add_argument("--body", default="low", help="default-body resolution (low, mid, full) or a body .npz/.pkl")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps (default 300)")
    parser.add_argument("--learning_rate", type=float, default=0.1, help="Adam learning rate (default 0.1, the paper's)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty output directory")
    return parser


def keypoints_for_body(annotation: DensePoseAnnotation, body: BodyModel, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The annotation's keypoints as the body's joints: ((J, 2) normalised, (J,) valid)."""
    num_joints = body.num_joints
    keypoints = np.zeros((num_joints, 2), np.float32)
    valid = np.zeros(num_joints, bool)
    if annotation.keypoints is None:
        return keypoints, valid
    points = np.asarray(annotation.keypoints, np.float64)
    if points.shape[0] == num_joints:
        chosen = {j: j for j in range(num_joints)}
    elif points.shape[0] == 17:
        names = list(body.joint_names)
        chosen = {coco: names.index(name) for coco, name in COCO_TO_BODY_JOINT.items() if name in names}
    else:
        raise InputError(f"annotation {annotation.annotation_id}: {points.shape[0]} keypoints; expected {num_joints} "
                         "(the body's joints) or 17 (COCO)")  # fmt: skip
    normalised = np.asarray(pixels_to_normalised(jnp.asarray(points[:, :2]), height, width))
    for source, joint in chosen.items():
        if points[source, 2] > 0:
            keypoints[joint], valid[joint] = normalised[source], True
    return keypoints, valid


def initial_from_dense(body: BodyModel, points: np.ndarray, vertex_ids: np.ndarray) -> dict[str, np.ndarray]:
    """T-pose θ whose camera puts the matched template vertices' box onto the labelled points' box.

    Reconstruction (as `params.initial_params`, but from the dense points, which every annotation has):
    the rest vertices are projected by R0 = diag(1, −1, −1); scale = max of the box width and height ratios.
    """
    rest = np.asarray(body.v_template, np.float64)[vertex_ids] * np.asarray([1.0, -1.0, 1.0])
    lo_p, hi_p = points.min(0), points.max(0)
    lo_v, hi_v = rest[:, :2].min(0), rest[:, :2].max(0)
    scale = float(np.max((hi_p - lo_p) / np.maximum(hi_v - lo_v, 1e-6)))
    trans = (lo_p + hi_p) / 2 - scale * (lo_v + hi_v) / 2
    num_joints = body.num_joints
    return {
        "pose": np.zeros((num_joints - 1, 3), np.float32), "scales": np.ones(num_joints, np.float32),
        "rotation": np.asarray(INITIAL_ROTATION, np.float32), "cam_scale": np.asarray(scale, np.float32),
        "cam_trans": trans.astype(np.float32),
    }  # fmt: skip


def select_annotations(annotations: list[DensePoseAnnotation], image_id: int | None, source) -> list[DensePoseAnnotation]:
    ids = sorted({a.image_id for a in annotations})
    if not ids:
        raise InputError(f"labels {source}: no annotation has dense labels (dp_x, dp_y, dp_I, dp_U, dp_V)")
    if image_id is None:
        if len(ids) > 1:
            raise InputError(f"labels {source}: annotations of {len(ids)} images ({ids[:8]}…); choose one with --image_id")
        image_id = ids[0]
    chosen = [a for a in annotations if a.image_id == image_id]
    if not chosen:
        raise InputError(f"labels {source}: no annotation of image id {image_id}; the file has {ids[:8]}")
    return chosen


def observations(body: BodyModel, annotations: list[DensePoseAnnotation], height: int, width: int):
    """The registration data batch (one row per person) and the T-pose initial θ."""
    charts = part_charts(body)
    size = max(len(a.points) for a in annotations)
    rows, inits = [], []
    for annotation in annotations:
        count = len(annotation.points)
        points = np.asarray(pixels_to_normalised(jnp.asarray(annotation.points), height, width), np.float32)
        vertex_ids = np.asarray(nearest_chart_vertex(charts, jnp.asarray(annotation.parts), jnp.asarray(annotation.uv, jnp.float32)))
        keypoints, keypoint_valid = keypoints_for_body(annotation, body, height, width)
        pad = size - count
        rows.append({
            "dense_xy": np.pad(points, ((0, pad), (0, 0))), "dense_vertex": np.pad(vertex_ids.astype(np.int32), (0, pad)),
            "dense_valid": np.arange(size) < count, "keypoints": keypoints, "keypoint_valid": keypoint_valid,
            "depths": np.zeros(body.num_joints, np.float32), "depth_valid": np.asarray(False),
        })  # fmt: skip
        inits.append(initial_from_dense(body, points, vertex_ids))
    stack = lambda items: {key: np.stack([item[key] for item in items]) for key in items[0]}  # noqa: E731
    return stack(rows), stack(inits)


def overlay_panels(body: BodyModel, image: np.ndarray, params: dict, data: dict) -> list[Panel]:
    """Image | registered body blended over it | labelled points (×) and their matched vertices (·)."""
    height, width = image.shape[:2]
    half = max(height, width) / 2.0
    panels = [Panel("image", image)]
    overlay = image.copy()
    points_panels = []
    codes = body_code_colors(body)
    for person in range(len(params["cam_scale"])):
        theta = {key: jnp.asarray(value[person]) for key, value in params.items()}
        predicted = predict_points(body, theta)
        # The weak-perspective projection as an orthographic camera: u = (s·x + t_x)·half + W/2.
        scale, trans = float(theta["cam_scale"]), np.asarray(theta["cam_trans"], np.float64)
        camera = make_camera(np.eye(3), np.asarray([0.0, 0.0, 10.0]), fx=scale * half, cx=width / 2 + trans[0] * half,
                             cy=height / 2 + trans[1] * half, height=height, width=width, orthographic=True)  # fmt: skip
        rendered = render_modalities(predicted["vertices_cam"], body.faces, camera, codes, code_colors=codes)
        overlay = blend(overlay, np.asarray(rendered["rgb"]), np.asarray(rendered["mask"]))
        valid = np.asarray(data["dense_valid"][person])
        labelled = np.asarray(normalised_to_pixels(jnp.asarray(data["dense_xy"][person][valid]), height, width))
        matched = np.asarray(normalised_to_pixels(predicted["vertices_xy"][np.asarray(data["dense_vertex"][person][valid])], height, width))
        points_panels += [(labelled, "x", "yellow", "labelled pixels" if person == 0 else ""),
                          (matched, ".", "red", "their matched vertices" if person == 0 else "")]  # fmt: skip
    panels.append(Panel("registered body", overlay))
    panels.append(Panel("dense correspondences", image, tuple(points_panels)))
    return panels


def main(argv: list[str], prog: str = "jaxpose register") -> int:
    from jaxpose.fitting.inputs import save_overlay_png  # noqa: PLC0415 (imports matplotlib)

    args = build_parser(prog).parse_args(argv)
    try:
        if args.steps < 1 or args.learning_rate <= 0:
            raise InputError(f"--steps must be ≥ 1 and --learning_rate > 0, got {args.steps} and {args.learning_rate}")
        image_path = check_input_file(args.image, "image", IMAGE_EXTENSIONS)
        labels_path = check_input_file(args.labels, "labels", (".json",))
        out = pathlib.Path(args.out)
        check_output_dir(out, [out / "overlay.png"], [image_path, labels_path], overwrite=args.overwrite)
        image = load_image(image_path)
        height, width = image.shape[:2]
        annotations = select_annotations(read_densepose_json(labels_path), args.image_id, labels_path)
        body = resolve_body(args.body)
        data, init = observations(body, annotations, height, width)
        status(prog, f"registering {len(annotations)} person(s) with {data['dense_valid'].sum()} labelled pixels, "
                     f"{args.steps} Adam steps (compiling first)…")  # fmt: skip
        config = RegistrationConfig(num_steps=args.steps, learning_rate=args.learning_rate, batch_size=len(annotations),
                                    weights=first_iteration_weights())  # fmt: skip
        params, energy = register(body, data, init, config, progress=False)
        initial_energy = registration_energies(body, data, init, config.weights)
        out.mkdir(parents=True, exist_ok=True)
        half = max(height, width) / 2.0
        for person, annotation in enumerate(annotations):
            theta = {key: value[person] for key, value in params.items()}
            predicted = predict_points(body, {key: jnp.asarray(value) for key, value in theta.items()})
            directory = out / f"person_{person}"
            directory.mkdir(exist_ok=True)
            save_params_npz(directory / "params.npz", theta)
            save_mesh(directory / "mesh.obj", np.asarray(predicted["vertices_cam"]), np.asarray(body.faces))
            valid = data["dense_valid"][person]
            residual = np.linalg.norm(np.asarray(predicted["vertices_xy"])[data["dense_vertex"][person][valid]]
                                      - data["dense_xy"][person][valid], axis=-1) * half  # fmt: skip
            write_json(directory / "summary.json", {
                "annotation_id": annotation.annotation_id, "image_id": annotation.image_id,
                "labelled_pixels": int(valid.sum()), "keypoints_used": int(data["keypoint_valid"][person].sum()),
                "initial_energy": float(initial_energy[person]), "final_energy": float(energy[person]),
                "dense_residual_px_mean": float(residual.mean()), "dense_residual_px_median": float(np.median(residual)),
            })  # fmt: skip
            status(prog, f"person {person}: energy {float(initial_energy[person]):.4g} → {float(energy[person]):.4g}, "
                         f"dense residual {residual.mean():.2f} px (mean)")  # fmt: skip
        save_overlay_png(out / "overlay.png", overlay_panels(body, image, params, data))
    except (InputError, DensePoseFormatError, ValueError, FileNotFoundError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    status(prog, f"wrote {out / 'overlay.png'} and person_*/ (params.npz, mesh.obj, summary.json)")
    return 0


__all__ = ["COCO_TO_BODY_JOINT", "build_parser", "initial_from_dense", "keypoints_for_body", "main", "observations"]
