"""`jaxpose refine`: refine a body estimate with the displacement CNN and dense SMPLify.

    jaxpose refine --image IMG.png --init INIT.npz --camera CAM.json --checkpoint DIR --out DIR
        [--body low|mid|full|PATH] [--solver adam|lbfgs] [--steps N1,N2] [--texture TEX.npz] [--overwrite]
    jaxpose refine --image-dir DIR --init-dir DIR --camera CAM.json --checkpoint DIR --out DIR [...]

Per person (the personalised-refinement method; `jaxpose.fitting`):
  1. pose the initial body parameters (INIT.npz: `jaxpose.fitting.params.load_params_npz`);
  2. texture it: per-vertex colours from --texture ("colors" (V, 3)) or, by default, back-projected
     from the image itself onto the vertices the initial body shows (`back_project_texture`, one frame);
  3. render it as the CNN's training data was rendered (`render_modalities`: textured RGB, depth,
     normals, vertex code, mask; default light, the training render's ambient, black background);
  4. predict the per-pixel displacement (px) and confidence (sigmoid of the logit) with the trained
     refinement checkpoint, from the network inputs assembled as in training (`training_arrays`);
  5. scatter them onto the vertices (`vertex_targets`, anchored at the projected initial vertices);
  6. fit (`fit`: dense observations, `DEFAULT_WEIGHTS`, `default_stages(solver, steps)`).

Outputs in --out (batch mode: one subfolder per stem, plus summary.json over all people):
refined.npz (parameters, `save_params_npz`), refined.obj, initial.obj, overlay.png (image | initial
body over it | refined body over it) and summary.json (energies per stage, visible vertices, mean
predicted displacement, texture source, seconds). The CNN works at the image size it was trained at
(the checkpoint's data.synthetic.image_size); the image and camera must have that size.

Everything is checked before anything is written (paths, camera, images, parameters, checkpoint,
that each initial body is in front of the camera and covers some pixel). Errors: one line on stderr,
exit code 2. Batch mode compiles once for all people (same camera and shapes).
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

from jaxpose.fitting.inputs import (
    OVERLAY_COLOR, InputError, Panel, blend, check_image_size, check_in_front, check_input_file, check_output_dir,
    files_by_stem, finite_or_none, load_camera_json, load_image, load_texture_npz, parse_steps, partners, posed, resolve_body,
    save_overlay_png, status, write_json,
)  # fmt: skip
from jaxpose.fitting.observations import dense_observations
from jaxpose.fitting.params import load_params_npz, save_params_npz
from jaxpose.fitting.renders import back_project_texture, body_code_colors, render_modalities
from jaxpose.fitting.smplify import DEFAULT_WEIGHTS, FitConfig, default_stages, fit
from jaxpose.fitting.targets import TargetAnchor, vertex_targets
from jaxpose.fitting.task import TARGET_KEYS, input_channels, synthetic_config, training_arrays
from jaxpose.fitting.unet import split_output
from jaxpose.io.mesh import MeshError, save_mesh
from jaxpose.render.camera import Camera, project
from jaxpose.render.shade import DEFAULT_LIGHT_DIRECTION
from jaxpose.training.checkpoint import Checkpointer, CheckpointError, resolve_checkpoint_dir
from jaxpose.training.evaluation import load_checkpoint
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model
from jaxpose.training.step import cast_floating, compute_dtype_from_name

VISIBILITY_THRESHOLD = 0.5  # accumulated pixel weight for a vertex to get a target (`vertex_targets`)
OUTPUT_FILES = ("refined.npz", "refined.obj", "initial.obj", "overlay.png", "summary.json")
ERRORS = (InputError, ValueError, KeyError, FileNotFoundError, CheckpointError, MeshError)

EPILOG = """\
camera JSON (one perspective camera; pixel (row, col) has its centre at (col + 0.5, row + 0.5)):
  {"fx": 500.0, "fy": 500.0, "cx": 128.0, "cy": 128.0, "width": 256, "height": 256,
   "rotation": [[1, 0, 0], [0, -1, 0], [0, 0, -1]], "translation": [0.0, 1.0, 3.0]}
  rotation/translation: world -> camera (x_cam = R x_world + t, metres), OpenCV axes (x right,
  y down, z forward); u = fx x/z + cx, v = fy y/z + cy.
INIT.npz: "global_orient" (3,), "body_pose" (J-1, 3), "betas" (K,), "transl" (3,) (axis-angle rad,
  metres), or "pose" (J, 3) + "betas" + "transl". TEX.npz: "colors" (V, 3) in [0, 1] (or uint8).
outputs: refined.npz (parameters, same keys as INIT.npz), refined.obj, initial.obj, overlay.png,
  summary.json; batch mode pairs IMAGE-DIR/<stem>.png|jpg with INIT-DIR/<stem>.npz and writes
  OUT/<stem>/ per person plus OUT/summary.json.
"""


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The `jaxpose refine` argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[0].split(": ", 1)[-1],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--image", metavar="IMG", help="the photograph (.png/.jpg), RGB")
    parser.add_argument("--init", metavar="INIT.npz", help="initial body parameters")
    parser.add_argument("--image-dir", "--image_dir", dest="image_dir", metavar="DIR", help="batch mode: images")
    parser.add_argument("--init-dir", "--init_dir", dest="init_dir", metavar="DIR", help="batch mode: INIT npz files by stem")
    parser.add_argument("--camera", required=True, metavar="CAM.json", help="the camera (format below)")
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="refinement training workdir or checkpoint dir")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (empty or new unless --overwrite)")
    parser.add_argument("--body", metavar="low|mid|full|PATH", help="body model (default: the checkpoint's training body)")
    parser.add_argument("--solver", choices=("adam", "lbfgs"), default="adam", help="fitting solver (default adam)")
    parser.add_argument("--steps", metavar="N1,N2", help="solver steps of the two stages (default: the solver's)")
    parser.add_argument("--texture", metavar="TEX.npz", help="per-vertex colours (default: back-projected from the image)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (never over an input)")
    return parser


@dataclasses.dataclass(frozen=True)
class Job:
    """One person: its image, initial parameters and output directory; `stem` names it in messages."""

    stem: str
    image: pathlib.Path
    init: pathlib.Path
    out: pathlib.Path


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """The people to refine, with their input files checked to exist (no file is read)."""
    out = pathlib.Path(args.out)
    if args.image_dir is None:
        image = check_input_file(args.image, "image", (".png", ".jpg", ".jpeg"))
        return [Job(image.stem, image, check_input_file(args.init, "init", (".npz",)), out)]
    images = files_by_stem(args.image_dir, "image", (".png", ".jpg", ".jpeg"))
    inits = partners(list(images), args.init_dir, "init", (".npz",))
    return [Job(stem, images[stem], inits[stem], out / stem) for stem in images]


def read_refinement_config(path: str):
    """The config saved with a refinement checkpoint (read without restoring any array)."""
    directory = resolve_checkpoint_dir(path)
    checkpointer = Checkpointer(directory, create=False)
    try:
        config = checkpointer.read_config()
    finally:
        checkpointer.close()
    task = str(config.get("task", "?"))
    if task != "refinement":
        raise InputError(f"checkpoint {path}: is a {task!r} checkpoint, not a refinement checkpoint")
    return config


@dataclasses.dataclass
class Refiner:
    """Everything shared by the people of one run: body, camera, CNN and fit configuration."""

    body: object
    camera: Camera
    render_ambient: float
    texture: np.ndarray | None
    fit_config: FitConfig
    channels: object = None
    predict: object = None

    def __post_init__(self):
        self.faces = jnp.asarray(self.body.faces, jnp.int32)
        self.code = jnp.asarray(body_code_colors(self.body))
        self.flat = jnp.broadcast_to(jnp.asarray(OVERLAY_COLOR, jnp.float32), (self.body.num_vertices, 3))

    def render(self, vertices, colors) -> dict:
        """`render_modalities` as the training data rendered the initial estimate (default light, black bg)."""
        return render_modalities(vertices, self.faces, self.camera, colors, code_colors=self.code,
                                 light_direction=DEFAULT_LIGHT_DIRECTION, ambient=self.render_ambient)  # fmt: skip

    def load_model(self, checkpoint: str) -> None:
        """Restore the checkpoint and compile-on-first-use its prediction: batch -> (displacement (H, W, 2) px,
        confidence (H, W))."""
        loaded = load_checkpoint(checkpoint, make_mesh())
        self.channels = input_channels(loaded.config.model)
        dtype = compute_dtype_from_name(str(loaded.config.get("compute_dtype", "float32")), loaded.task)
        graphdef, task, state = loaded.graphdef, loaded.task, loaded.state

        @jax.jit
        def predict(params, model_state, batch):
            model = merge_model(graphdef, cast_floating(params, dtype), cast_floating(model_state, dtype))
            model.eval(update_stats=False)
            displacement, logit = split_output(task.predict(model, batch).astype(jnp.float32))
            return displacement[0], jax.nn.sigmoid(logit[0])

        self.predict = lambda batch: predict(state.params, state.model_state, batch)

    def network_batch(self, image: np.ndarray, render: dict) -> dict:
        """The CNN's batch of one person, in the training data's storage (`training_arrays`)."""
        data = {key: np.asarray(render[name])[None] for key, name in (
            ("render_rgb", "rgb"), ("render_rgb_untextured", "rgb_untextured"), ("render_depth", "depth"),
            ("render_normals", "normals"), ("render_code", "code"), ("render_mask", "mask"))}  # fmt: skip
        data["image"] = image[None]
        height, width = image.shape[:2]
        data["displacement"] = np.zeros((1, height, width, 2), np.float32)  # targets: unused at inference
        data["displacement_valid"] = np.zeros((1, height, width), bool)
        arrays = training_arrays(data, self.channels)
        return {key: value for key, value in arrays.items() if key not in TARGET_KEYS}

    def refine(self, image: np.ndarray, params) -> dict:
        """Refine one person: image (H, W, 3) in [0, 1], initial params -> arrays and summary numbers."""
        initial = posed(self.body, params)
        if self.texture is None:
            colors, seen = back_project_texture(image[None], initial.vertices[None], self.faces, self.camera)
            texture = f"back-projected from the image ({int(seen.sum())}/{self.body.num_vertices} vertices seen)"
        else:
            colors, texture = jnp.asarray(self.texture), "from --texture"
        render = self.render(initial.vertices, colors)
        displacement, confidence = self.predict(self.network_batch(image, render))
        projected, _ = project(initial.vertices, self.camera)
        targets = vertex_targets(render["face_id"], render["barycentric"], render["mask"], displacement, confidence,
                                 self.faces, self.body.num_vertices, VISIBILITY_THRESHOLD,
                                 projected_vertices=projected, anchor=TargetAnchor.VERTEX)  # fmt: skip
        result = fit(self.body, self.camera, params, dense_observations(targets, self.body.num_joints), config=self.fit_config)
        mask = np.asarray(render["mask"])
        length = np.linalg.norm(np.asarray(displacement), axis=-1)[mask]
        conf = np.asarray(confidence)[mask]
        return {
            "params": result.params, "initial_vertices": initial.vertices, "vertices": result.vertices,
            "texture": texture,
            "energies": {stage.name: finite_or_none(e) for stage, e in zip(self.fit_config.stages, np.asarray(result.energies))},
            "iterations": {stage.name: int(i) for stage, i in zip(self.fit_config.stages, np.asarray(result.iterations))},
            "visible_vertices": int(np.asarray(targets.visible).sum()),
            "rendered_pixels": int(mask.sum()),
            "mean_predicted_displacement_px": float(length.mean()),
            "confidence_weighted_displacement_px": float((length * conf).sum() / max(conf.sum(), 1e-8)),
            "mean_confidence": float(conf.mean()),
        }

    def overlay(self, path: pathlib.Path, image: np.ndarray, initial_vertices, vertices) -> None:
        """overlay.png: image | initial body over it | refined body over it."""
        panels = [Panel("image", image)]
        for title, verts in (("initial", initial_vertices), ("refined", vertices)):
            render = self.render(verts, self.flat)
            panels.append(Panel(title, blend(image, np.asarray(render["rgb"]), np.asarray(render["mask"]))))
        save_overlay_png(path, panels)


def check_person(refiner: Refiner, job: Job, image_size: int, checkpoint: str):
    """Load and check one person's image and parameters (sizes, in front of the camera, covers a pixel)."""
    image = load_image(job.image)
    check_image_size(image, refiner.camera, f"image {job.image}")
    if image.shape[:2] != (image_size, image_size):
        raise InputError(f"image {job.image}: is {image.shape[1]}×{image.shape[0]} but the checkpoint {checkpoint} "
                         f"was trained on {image_size}×{image_size} images")  # fmt: skip
    params = load_params_npz(job.init, refiner.body)
    check_in_front(refiner.body, refiner.camera, params, f"init {job.init}")
    if not bool(jnp.any(refiner.render(posed(refiner.body, params).vertices, refiner.flat)["mask"])):
        raise InputError(f"init {job.init}: the initial body renders to no pixel of the {refiner.camera.width}×"
                         f"{refiner.camera.height} image (empty mask: outside the image?)")  # fmt: skip
    return image, params


def write_person(refiner: Refiner, job: Job, image: np.ndarray, result: dict, summary: dict) -> None:
    """The person's output files, each written atomically."""
    save_params_npz(job.out / "refined.npz", result["params"])
    save_mesh(job.out / "refined.obj", np.asarray(result["vertices"]), np.asarray(refiner.body.faces))
    save_mesh(job.out / "initial.obj", np.asarray(result["initial_vertices"]), np.asarray(refiner.body.faces))
    refiner.overlay(job.out / "overlay.png", image, result["initial_vertices"], result["vertices"])
    write_json(job.out / "summary.json", summary)


def run(args: argparse.Namespace, prog: str) -> list[dict]:
    """Check everything, then refine and write every person; returns their summaries."""
    jobs = plan_jobs(args)
    camera_path = check_input_file(args.camera, "camera", (".json",))
    texture_path = None if args.texture is None else check_input_file(args.texture, "texture", (".npz",))
    inputs = [camera_path, *(p for job in jobs for p in (job.image, job.init))] + ([texture_path] if texture_path else [])
    outputs = [job.out / name for job in jobs for name in OUTPUT_FILES]
    check_output_dir(args.out, outputs + ([pathlib.Path(args.out) / "summary.json"] if args.image_dir else []), inputs,
                     overwrite=args.overwrite)  # fmt: skip
    steps = parse_steps(args.steps)
    camera = load_camera_json(camera_path)
    config = read_refinement_config(args.checkpoint)
    synthetic = synthetic_config(config.data)
    body_name = args.body or synthetic.resolution
    if body_name != synthetic.resolution:
        status(prog, f"warning: the CNN was trained with the {synthetic.resolution!r} body, refining the {body_name!r} body")
    body = resolve_body(body_name)
    texture = None if texture_path is None else load_texture_npz(texture_path, body.num_vertices)
    fit_config = FitConfig(stages=default_stages(args.solver, steps), weights=dict(DEFAULT_WEIGHTS))
    refiner = Refiner(body, camera, float(synthetic.render_ambient), texture, fit_config)
    for job in jobs:  # every input is checked before the first output is written
        check_person(refiner, job, synthetic.image_size, args.checkpoint)
    refiner.load_model(args.checkpoint)
    status(prog, "texture: " + ("per-vertex colours from " + str(texture_path) if texture_path else
                                "back-projected from each image onto the initial body (no --texture given)"))  # fmt: skip
    summaries = []
    for number, job in enumerate(jobs, 1):
        started = time.perf_counter()
        image, params = check_person(refiner, job, synthetic.image_size, args.checkpoint)
        result = refiner.refine(image, params)
        seconds = time.perf_counter() - started
        summary = {
            "image": str(job.image), "init": str(job.init), "camera": str(camera_path), "checkpoint": str(args.checkpoint),
            "body": body_name, "solver": args.solver, "steps": [int(stage.solver.num_steps) for stage in fit_config.stages],
            **{key: result[key] for key in ("texture", "energies", "iterations", "visible_vertices", "rendered_pixels",
                                            "mean_predicted_displacement_px", "confidence_weighted_displacement_px",
                                            "mean_confidence")},
            "seconds": seconds, "seconds_note": "wall time of this person; the first includes compilation",
        }  # fmt: skip
        write_person(refiner, job, image, result, summary)
        summaries.append(summary)
        final = list(summary["energies"].values())[-1]
        final = "NaN" if final is None else f"{final:.4g}"
        status(prog, f"[{number}/{len(jobs)}] {job.stem}: {summary['visible_vertices']} visible vertices, mean predicted "
                     f"displacement {summary['mean_predicted_displacement_px']:.2f} px, energy {final}, "
                     f"{seconds:.1f} s -> {job.out}")  # fmt: skip
    if args.image_dir:
        write_json(pathlib.Path(args.out) / "summary.json", {"people": {job.stem: s for job, s in zip(jobs, summaries)}})
    return summaries


def main(argv: list[str] | None = None, prog: str = "jaxpose refine") -> int:
    """Run the command; 0 on success, 2 on an expected error (one line on stderr, nothing written)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    single, batch = (args.image, args.init), (args.image_dir, args.init_dir)
    if not (all(x is not None for x in single) and all(x is None for x in batch)
            or all(x is not None for x in batch) and all(x is None for x in single)):  # fmt: skip
        parser.error("give --image and --init (one person), or --image-dir and --init-dir (batch mode)")
    started = time.perf_counter()
    try:
        summaries = run(args, prog)
    except ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    print(f"refined {len(summaries)} {'person' if len(summaries) == 1 else 'people'} in "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")  # fmt: skip
    return 0


__all__ = ["EPILOG", "Job", "OUTPUT_FILES", "Refiner", "build_parser", "main", "plan_jobs", "read_refinement_config"]

if __name__ == "__main__":
    sys.exit(main())
