"""`jaxpose fit`: keypoint-only SMPLify fit of a body to 2D keypoints seen by a known camera.

    jaxpose fit --keypoints KP.json --camera CAM.json --out DIR [--init INIT.npz] [--image IMG.png]
        [--body low|mid|full|PATH] [--solver adam|lbfgs] [--steps N1,N2] [--overwrite]
    jaxpose fit --keypoints-dir DIR --camera CAM.json --out DIR [--init-dir DIR] [--image-dir DIR] [...]

The model keypoints are the body's COCO-17 regressor applied to its vertices
(`body.extras["coco_regressor"][:17]`; KP.json then holds the 17 COCO keypoints), or its skeleton
joints when the body has no regressor (KP.json then holds one row per joint, in skeleton order).
The energy is `jaxpose.fitting.smplify.fit_energy` with `KEYPOINT_WEIGHTS` (GMoF keypoint term,
pose prior, shape and anchor terms) over SMPLify's two stages (`default_stages(solver, steps)`).

Start: the parameters of --init, or, without it, the zero pose and mean shape with the translation
of `camera_init.estimate_translation` (torso keypoints: shoulders and hips, ≥ 2 with confidence > 0)
and, as a second start, the same body turned by 180° about the vertical (`flipped_orientation`,
SMPLify-X's trick); both are fitted in one batch and the start with the lower final energy is kept.

Outputs in --out (batch mode: one subfolder per stem, plus summary.json over all people):
fitted.npz (parameters, `save_params_npz`), fitted.obj, overlay.png when an image is given (image |
start | fit, detected keypoints as dots, the model's as crosses) and summary.json (energies, the
mean 2D keypoint error of the start and of the fit in pixels, the start kept, seconds). Everything is
checked before anything is written; errors: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.bodies import SMPL_JOINT_NAMES
from jaxpose.fitting.camera_init import COCO_TORSO, estimate_translation, flipped_orientation
from jaxpose.fitting.inputs import (
    IMAGE_EXTENSIONS, OVERLAY_COLOR, InputError, Panel, blend, check_image_size, check_in_front, check_input_file,
    check_output_dir, files_by_stem, finite_or_none, load_camera_json, load_image, load_keypoints_json, parse_steps, partners, posed,
    resolve_body, save_overlay_png, status, write_json,
)  # fmt: skip
from jaxpose.fitting.observations import keypoint_observations
from jaxpose.fitting.params import load_params_npz, save_params_npz, zero_params
from jaxpose.fitting.renders import render_modalities
from jaxpose.fitting.smplify import KEYPOINT_WEIGHTS, FitConfig, default_stages, fit_batch, model_keypoints
from jaxpose.io.mesh import MeshError, save_mesh
from jaxpose.render.camera import Camera, project

NUM_COCO = 17
SMPL_TORSO = tuple(SMPL_JOINT_NAMES.index(name) for name in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
OUTPUT_FILES = ("fitted.npz", "fitted.obj", "summary.json")
ERRORS = (InputError, ValueError, KeyError, FileNotFoundError, MeshError)

EPILOG = """\
KP.json: {"keypoints": [[x, y, confidence], ...]}: 17 rows in COCO order (nose, left/right eye,
  left/right ear, left/right shoulder, left/right elbow, left/right wrist, left/right hip,
  left/right knee, left/right ankle) for a body with a COCO regressor (the default bodies), else one
  row per skeleton joint; pixels with the centre of pixel (row, col) at (col + 0.5, row + 0.5) (add
  0.5 to OpenPose/COCO coordinates); confidence in [0, 1], 0 = not detected.
camera JSON (same convention):
  {"fx": 500.0, "fy": 500.0, "cx": 128.0, "cy": 128.0, "width": 256, "height": 256,
   "rotation": [[1, 0, 0], [0, -1, 0], [0, 0, -1]], "translation": [0.0, 1.0, 3.0]}
  rotation/translation: world -> camera (x_cam = R x_world + t, metres), OpenCV axes.
INIT.npz: "global_orient" (3,), "body_pose" (J-1, 3), "betas" (K,), "transl" (3,), or "pose" (J, 3) +
  "betas" + "transl".
outputs: fitted.npz (parameters, same keys as INIT.npz), fitted.obj, overlay.png (with an image),
  summary.json; batch mode pairs KP-DIR/<stem>.json with INIT-DIR/<stem>.npz and
  IMAGE-DIR/<stem>.png|jpg and writes OUT/<stem>/ per person plus OUT/summary.json.
"""


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The `jaxpose fit` argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[0].split(": ", 1)[-1],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--keypoints", metavar="KP.json", help="2D keypoints (format below)")
    parser.add_argument("--keypoints-dir", "--keypoints_dir", dest="keypoints_dir", metavar="DIR", help="batch mode: KP.json files")
    parser.add_argument("--camera", required=True, metavar="CAM.json", help="the camera (format below)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (empty or new unless --overwrite)")
    parser.add_argument("--init", metavar="INIT.npz", help="start parameters (default: zero pose, estimated translation)")
    parser.add_argument("--init-dir", "--init_dir", dest="init_dir", metavar="DIR", help="batch mode: INIT npz files by stem")
    parser.add_argument("--image", metavar="IMG", help="image for overlay.png (camera's size)")
    parser.add_argument("--image-dir", "--image_dir", dest="image_dir", metavar="DIR", help="batch mode: images by stem")
    parser.add_argument("--body", default="low", metavar="low|mid|full|PATH", help="body model (default low)")
    parser.add_argument("--solver", choices=("adam", "lbfgs"), default="adam", help="fitting solver (default adam)")
    parser.add_argument("--steps", metavar="N1,N2", help="solver steps of the two stages (default: the solver's)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (never over an input)")
    return parser


@dataclasses.dataclass(frozen=True)
class Job:
    """One person: keypoints, optional start parameters and image, output directory."""

    stem: str
    keypoints: pathlib.Path
    init: pathlib.Path | None
    image: pathlib.Path | None
    out: pathlib.Path


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """The people to fit, with their input files checked to exist (no file is read)."""
    out = pathlib.Path(args.out)
    if args.keypoints_dir is None:
        keypoints = check_input_file(args.keypoints, "keypoints", (".json",))
        init = None if args.init is None else check_input_file(args.init, "init", (".npz",))
        image = None if args.image is None else check_input_file(args.image, "image", IMAGE_EXTENSIONS)
        return [Job(keypoints.stem, keypoints, init, image, out)]
    found = files_by_stem(args.keypoints_dir, "keypoints", (".json",))
    stems = list(found)
    inits = partners(stems, args.init_dir, "init", (".npz",)) if args.init_dir else {}
    images = partners(stems, args.image_dir, "image", IMAGE_EXTENSIONS) if args.image_dir else {}
    return [Job(stem, found[stem], inits.get(stem), images.get(stem), out / stem) for stem in stems]


@dataclasses.dataclass
class Fitter:
    """The body, its keypoint layout, the camera and the fit configuration shared by every person."""

    body: object
    camera: Camera
    config: FitConfig

    def __post_init__(self):
        regressor = self.body.extras.get("coco_regressor")
        if regressor is not None:
            self.regressor, self.num_keypoints, self.torso = jnp.asarray(np.asarray(regressor)[:NUM_COCO]), NUM_COCO, COCO_TORSO
        else:  # the skeleton joints; SMPL's torso joints when the skeleton is SMPL's, else all joints
            self.regressor, self.num_keypoints = None, self.body.num_joints
            self.torso = SMPL_TORSO if self.body.num_joints == len(SMPL_JOINT_NAMES) else tuple(range(self.body.num_joints))

    def keypoints_of(self, params) -> jax.Array:
        """(K, 2) projected model keypoints, pixels."""
        output = posed(self.body, params)
        return project(model_keypoints(output.vertices, output.joints, self.regressor), self.camera)[0]

    def starts(self, keypoints, confidence, init) -> tuple[dict, tuple[str, ...]]:
        """Batched start parameters and their names: the --init parameters, or front + flipped."""
        if init is not None:
            return jax.tree.map(lambda x: jnp.asarray(x)[None], dict(init)), ("init",)
        zero = zero_params(self.body)
        starts = []
        for orient in (zero["global_orient"], flipped_orientation(zero["global_orient"])):
            params = {**zero, "global_orient": orient}
            output = posed(self.body, params)
            model = model_keypoints(output.vertices, output.joints, self.regressor)
            params["transl"] = estimate_translation(model, jnp.asarray(keypoints), jnp.asarray(confidence), self.camera, self.torso)
            starts.append(params)
        return jax.tree.map(lambda *x: jnp.stack(x), *starts), ("front", "flipped")

    def error(self, params, keypoints, confidence) -> float:
        """Mean 2D distance (px) between the model's keypoints and the detected ones (confidence > 0)."""
        distance = np.linalg.norm(np.asarray(self.keypoints_of(params)) - keypoints, axis=-1)
        return float(distance[confidence > 0].mean())

    def fit(self, keypoints, confidence, init) -> dict:
        """Fit one person from every start; the lowest final energy wins."""
        starts, names = self.starts(keypoints, confidence, init)
        observations = keypoint_observations(jnp.asarray(keypoints), jnp.asarray(confidence), self.body.num_vertices)
        observations = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(names),) + x.shape), observations)
        result = fit_batch(self.body, self.camera, starts, observations, keypoint_regressor=self.regressor, config=self.config)
        final = np.nan_to_num(np.asarray(result.energies[:, -1], np.float64), nan=np.inf)
        best = int(np.argmin(final))
        take = lambda tree: jax.tree.map(lambda x: x[best], tree)  # noqa: E731
        start, params = take(starts), take(result.params)
        stages = [stage.name for stage in self.config.stages]
        return {
            "start": start, "params": params, "vertices": result.vertices[best], "start_name": names[best],
            "start_energies": {name: finite_or_none(e) for name, e in zip(names, np.asarray(result.energies[:, -1]))},
            "energies": dict(zip(stages, map(finite_or_none, np.asarray(result.energies[best])))),
            "iterations": dict(zip(stages, map(int, np.asarray(result.iterations[best])))),
            "start_keypoint_error_px": self.error(start, keypoints, confidence),
            "keypoint_error_px": self.error(params, keypoints, confidence),
        }

    def overlay(self, path: pathlib.Path, image: np.ndarray, keypoints, confidence, fitted: dict) -> None:
        """overlay.png: image | start | fit, with the detected (dots) and model (crosses) keypoints."""
        faces = jnp.asarray(self.body.faces, jnp.int32)
        flat = jnp.broadcast_to(jnp.asarray(OVERLAY_COLOR, jnp.float32), (self.body.num_vertices, 3))
        detected = (np.asarray(keypoints)[confidence > 0], "o", "lime", "detected")
        panels = [Panel("image", image, (detected,))]
        for title, params in ((f"start ({fitted['start_name']})", fitted["start"]), ("fitted", fitted["params"])):
            render = render_modalities(posed(self.body, params).vertices, faces, self.camera, flat, code_colors=flat)
            model = (np.asarray(self.keypoints_of(params))[confidence > 0], "x", "red", "model")
            panels.append(Panel(title, blend(image, np.asarray(render["rgb"]), np.asarray(render["mask"])), (detected, model)))
        save_overlay_png(path, panels)


def load_person(fitter: Fitter, job: Job):
    """Read and check one person's keypoints, start parameters and image."""
    keypoints, confidence = load_keypoints_json(job.keypoints, fitter.num_keypoints)
    init = None
    if job.init is not None:
        init = load_params_npz(job.init, fitter.body)
        check_in_front(fitter.body, fitter.camera, init, f"init {job.init}")
    elif np.count_nonzero(confidence[list(fitter.torso)] > 0) < 2:
        raise InputError(f"keypoints {job.keypoints}: fewer than 2 torso keypoints (shoulders, hips) have a confidence "
                         f"> 0, so the body cannot be placed; give --init")  # fmt: skip
    image = None
    if job.image is not None:
        image = load_image(job.image)
        check_image_size(image, fitter.camera, f"image {job.image}")
    return keypoints, confidence, init, image


def run(args: argparse.Namespace, prog: str) -> list[dict]:
    """Check everything, then fit and write every person; returns their summaries."""
    jobs = plan_jobs(args)
    camera_path = check_input_file(args.camera, "camera", (".json",))
    inputs = [camera_path, *(p for job in jobs for p in (job.keypoints, job.init, job.image) if p is not None)]
    outputs = [job.out / name for job in jobs for name in (*OUTPUT_FILES, "overlay.png")]
    batch_summary = pathlib.Path(args.out) / "summary.json"
    check_output_dir(args.out, outputs + ([batch_summary] if args.keypoints_dir else []), inputs, overwrite=args.overwrite)
    steps = parse_steps(args.steps)
    camera = load_camera_json(camera_path)
    fitter = Fitter(resolve_body(args.body), camera, FitConfig(stages=default_stages(args.solver, steps), weights=dict(KEYPOINT_WEIGHTS)))
    for job in jobs:  # every input is checked before the first output is written
        load_person(fitter, job)
    summaries = []
    for number, job in enumerate(jobs, 1):
        started = time.perf_counter()
        keypoints, confidence, init, image = load_person(fitter, job)
        fitted = fitter.fit(keypoints, confidence, init)
        seconds = time.perf_counter() - started
        summary = {
            "keypoints": str(job.keypoints), "init": None if job.init is None else str(job.init),
            "image": None if job.image is None else str(job.image), "camera": str(camera_path), "body": args.body,
            "solver": args.solver, "steps": [int(stage.solver.num_steps) for stage in fitter.config.stages],
            "keypoint_model": "coco_regressor[:17]" if fitter.regressor is not None else "skeleton joints",
            "start": fitted["start_name"], "start_energies": fitted["start_energies"], "energies": fitted["energies"],
            "iterations": fitted["iterations"], "start_keypoint_error_px": fitted["start_keypoint_error_px"],
            "keypoint_error_px": fitted["keypoint_error_px"], "keypoints_used": int(np.count_nonzero(confidence > 0)),
            "seconds": seconds, "seconds_note": "wall time of this person; the first includes compilation",
        }  # fmt: skip
        save_params_npz(job.out / "fitted.npz", fitted["params"])
        save_mesh(job.out / "fitted.obj", np.asarray(fitted["vertices"]), np.asarray(fitter.body.faces))
        if image is not None:
            fitter.overlay(job.out / "overlay.png", image, keypoints, confidence, fitted)
        write_json(job.out / "summary.json", summary)
        summaries.append(summary)
        status(prog, f"[{number}/{len(jobs)}] {job.stem}: start {fitted['start_name']}, keypoint error "
                     f"{fitted['start_keypoint_error_px']:.2f} -> {fitted['keypoint_error_px']:.2f} px, {seconds:.1f} s -> {job.out}")  # fmt: skip
    if args.keypoints_dir:
        write_json(batch_summary, {"people": {job.stem: s for job, s in zip(jobs, summaries)}})
    return summaries


def main(argv: list[str] | None = None, prog: str = "jaxpose fit") -> int:
    """Run the command; 0 on success, 2 on an expected error (one line on stderr, nothing written)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.keypoints is None) == (args.keypoints_dir is None):
        parser.error("give --keypoints (one person) or --keypoints-dir (batch mode)")
    if args.keypoints is not None and (args.init_dir or args.image_dir):
        parser.error("--init-dir and --image-dir go with --keypoints-dir; use --init and --image for one person")
    if args.keypoints_dir is not None and (args.init or args.image):
        parser.error("--init and --image go with --keypoints; use --init-dir and --image-dir in batch mode")
    started = time.perf_counter()
    try:
        summaries = run(args, prog)
    except ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    print(f"fitted {len(summaries)} {'person' if len(summaries) == 1 else 'people'} in "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")  # fmt: skip
    return 0


__all__ = ["EPILOG", "Fitter", "Job", "build_parser", "main", "plan_jobs"]

if __name__ == "__main__":
    sys.exit(main())
