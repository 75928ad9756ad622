"""`jaxpose eval refinement`: the comparison table of the refinement system on the same test people.

Rows (each scored by `jaxpose.fitting.evaluation`, mean ± std over people):
  initial estimate | keypoint-only (OpenPose-like) | DensePose-like | ours: <checkpoint> (one row per
  checkpoint, e.g. the full model and its input ablations) | ours: exact displacement (upper bound)
With --robustness, every checkpoint is also scored on two variants of the test split with the same
people: the approximate texture with added noise, and a lighting change of the image.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import numpy as np
from flax import nnx

from jaxpose.bodies.default import default_body
from jaxpose.fitting.comparisons import ComparisonSettings, Method, score_method
from jaxpose.fitting.synthetic import camera_from_arrays, load_or_make_dataset
from jaxpose.fitting.task import input_channels, synthetic_config, training_arrays
from jaxpose.fitting.unet import split_output
from jaxpose.training import evaluation
from jaxpose.training.protocol import EvaluationReport, EvaluationRequest, StandardProtocol, unique_row

BASELINE_ROWS = {
    Method.INITIAL: "initial estimate",
    Method.KEYPOINTS: "keypoint-only (OpenPose-like)",
    Method.DENSEPOSE: "DensePose-like labels",
}
EXACT_ROW = "ours: exact displacement (upper bound)"


def checkpoint_predictor(checkpoint):
    """people slice -> (displacement (B, H, W, 2) px, confidence (B, H, W)) of a refinement checkpoint."""
    model = nnx.merge(checkpoint.graphdef, checkpoint.state.params, checkpoint.state.model_state)
    channels = input_channels(checkpoint.config.model)
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, batch):
        displacement, logit = split_output(checkpoint.task.predict(nnx.merge(graphdef, state), batch))
        return displacement, jax.nn.sigmoid(logit)

    def predict(people):
        displacement, confidence = run(state, training_arrays(people, channels))
        return np.asarray(displacement, np.float32), np.asarray(confidence, np.float32)

    return predict


class RefinementProtocol(StandardProtocol):
    """See the module docstring."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("refinement comparisons")
        group.add_argument("--people", type=int, default=None, help="score the first N test people (default: all)")
        group.add_argument("--solver", choices=("adam", "lbfgs"), default="adam", help="the fitter's solver")
        group.add_argument("--steps", default=None, metavar="N1,N2", help="solver steps of the two stages")
        group.add_argument("--keypoint-noise", type=float, default=2.0, metavar="PX", help="OpenPose-like noise σ, px")
        group.add_argument("--densepose-points", type=int, default=150, help="DensePose-like labelled pixels per person")
        group.add_argument("--robustness", action="store_true", help="add texture-noise and lighting-change rows")
        group.add_argument("--texture-noise", type=float, default=0.1, help="σ of the added texture noise (colour units)")
        group.add_argument("--no-baselines", action="store_true", help="skip the initial/keypoint/DensePose/exact rows")

    def evaluate(self, request: EvaluationRequest) -> EvaluationReport:
        options = request.options or argparse.Namespace()
        config = request.config if request.config is not None else (request.checkpoints[0].config if request.checkpoints else None)
        if config is None:
            raise ValueError("--config FILE (a refinement config) or --checkpoint DIR is required")
        if request.baselines:
            raise ValueError(
                f"the refinement protocol has its own rows (initial, keypoint-only, DensePose-like, exact); --baseline "
                f"{', '.join(request.baselines)} is not one of them"
            )
        for checkpoint in request.checkpoints:
            if checkpoint.task.name != "refinement":
                raise ValueError(f"checkpoint {checkpoint.name} is a {checkpoint.task.name!r} checkpoint, not a refinement one")
        steps = None
        if getattr(options, "steps", None):
            steps = tuple(int(x) for x in str(options.steps).split(","))
            if len(steps) != 2 or min(steps) < 1:
                raise ValueError(f"--steps must be two positive integers N1,N2, got {options.steps!r}")
        settings = ComparisonSettings(
            solver=getattr(options, "solver", "adam"), steps=steps,
            keypoint_noise_px=float(getattr(options, "keypoint_noise", 2.0)),
            densepose_points=int(getattr(options, "densepose_points", 150)),
            batch_size=request.batch_size or 50,
        )
        people = getattr(options, "people", None)
        synthetic = synthetic_config(config.data)
        cache_dir = config.data.cache_dir
        dataset = load_or_make_dataset(synthetic, "test", cache_dir)
        body = default_body(synthetic.resolution)
        camera = camera_from_arrays(dataset)
        results: dict[str, dict] = {}
        timings = []

        def score(row, method, data, predictor=None):
            started = time.perf_counter()

            def progress(done, total):
                print(f"\r{row}: {done}/{total} people", end="", file=sys.stderr, flush=True)

            per_person = score_method(method, body, camera, data, settings, predictor, num_people=people, progress=progress)
            seconds = time.perf_counter() - started
            print(f"\r{row}: {len(per_person['mpjpe_mm'])} people in {seconds:.1f} s", file=sys.stderr, flush=True)
            results[unique_row(results, row)] = evaluation.summarize(per_person)
            timings.append(f"{row}: {seconds:.1f} s")

        variants = {}
        if getattr(options, "robustness", False) and request.checkpoints:
            # Build and check the variant splits before any scoring, so a mismatch costs nothing.
            configs = {
                f"texture noise σ={options.texture_noise:g}": dataclasses.replace(synthetic, texture_noise=float(options.texture_noise)),
                "lighting change": dataclasses.replace(synthetic, lighting_shift=True),
            }
            for label, variant in configs.items():
                data = load_or_make_dataset(variant, "test", cache_dir)
                for key in ("gt_pose", "init_pose", "gt_betas", "init_betas", "gt_transl", "init_transl"):
                    if not np.array_equal(data[key], dataset[key]):
                        raise ValueError(f"the {label} variant of the test split does not hold the same people ({key} differs)")
                variants[label] = data
        if not getattr(options, "no_baselines", False):
            for method, row in BASELINE_ROWS.items():
                score(row, method, dataset)
        predictors = {checkpoint.name: checkpoint_predictor(checkpoint) for checkpoint in request.checkpoints}
        for name, predictor in predictors.items():
            score(f"ours: {name}", Method.PREDICTED, dataset, predictor)
        if not getattr(options, "no_baselines", False):
            score(EXACT_ROW, Method.EXACT, dataset)
        for label, data in variants.items():
            for name, predictor in predictors.items():
                score(f"ours: {name}, {label}", Method.PREDICTED, data, predictor)
        count = len(dataset["gt_pose"]) if people is None else min(int(people), len(dataset["gt_pose"]))
        notes = (
            f"{count} held-out synthetic people ({synthetic.image_size}x{synthetic.image_size}, {synthetic.resolution} body); "
            f"fitter: {settings.solver} {settings.steps or 'default steps'}; MPJPE/PVE root-aligned, PA-MPJPE Procrustes-aligned; "
            "times: " + "; ".join(timings)
        )
        return EvaluationReport(results, count, notes)


__all__ = ["RefinementProtocol", "checkpoint_predictor"]
