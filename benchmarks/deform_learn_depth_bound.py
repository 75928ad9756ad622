"""How much do the keypoint depths limit the registration? A bound measured on the loop's own data.

Registers the first `--num_images` training images of a finished `jaxpose deform-learn` run from the
T-pose with the first iteration's settings (300 Adam steps, lr 0.1, stiff weights) and varies only the
depth targets of L_KP:

  none              no depth term (dense correspondences and 2D keypoints only)
  lifter            the depths of the run's first-iteration lifter (what the loop used)
  ground truth      the true root-relative joint depths in the registration's units (an oracle)
  ground truth ×100 the same with ω_KP = 100 instead of the paper's 1 (what exact depths can give)

and reports the protocol MPJPE (mm) of each, plus the ground-truth segment-scale θ itself
(`ground_truth_params`: the floor left by the segment-scale body and the size normalisation).

    python -m benchmarks.deform_learn_depth_bound --config configs/deform_learn_small.py \\
        --workdir runs/deform_learn_small --num_images 200 [--config.data.cache_dir=DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from jaxpose.deform_learn.ground_truth import dataset_ground_truth_params
from jaxpose.deform_learn.loop import _tpose, load_loop_data, mpjpe_of, params_joints, registration_config
from jaxpose.deform_learn.params import PARAM_KEYS
from jaxpose.deform_learn.registration import register, registration_data
from jaxpose.io.arrays import load_npz
from jaxpose.io.atomic import atomic_write_text
from jaxpose.training.config import apply_overrides, load_config, split_config_args


def main(argv: list[str] | None = None) -> int:
    config_path, overrides, rest = split_config_args(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished deform-learn run (its iteration_0/lifter.npz)")
    parser.add_argument("--num_images", type=int, default=200)
    parser.add_argument("--out", help="write the rows as JSON")
    args = parser.parse_args(rest)
    config = apply_overrides(load_config(config_path or "configs/deform_learn_small.py"), overrides)
    data = load_loop_data(config)
    n = min(args.num_images, len(data.train["keypoints"]))
    train = {key: value[:n] for key, value in data.train.items()}
    init = _tpose(data.body, train["keypoints"])
    lifter = load_npz(f"{args.workdir}/iteration_0/lifter.npz", "lifter depths")["depths_train"][:n]
    truth = {key: np.asarray(value) for key, value in dataset_ground_truth_params(data.body, train).items()}
    joints = train["joints_cam"]
    true_depths = ((joints[..., 2] - joints[:, :1, 2]) * truth["cam_scale"][:, None]).astype(np.float32)
    first = registration_config(config, 0)

    def score(params) -> float:
        return mpjpe_of(data.body, params_joints(data.body, {key: params[key] for key in PARAM_KEYS}), joints, data.bone_length)

    rows = [{"depths": "ground-truth θ (no registration)", "keypoint_weight": None, "mpjpe_mm": score(truth)}]
    cases = (("none", None, 1.0), ("lifter", lifter, 1.0), ("ground truth", true_depths, 1.0), ("ground truth", true_depths, 100.0))
    for name, depths, weight in cases:
        start = time.perf_counter()
        reg_config = dataclasses.replace(first, weights=dataclasses.replace(first.weights, keypoint=weight))
        params, energy = register(data.body, registration_data(train, depths), init, reg_config, progress=False)
        rows.append({"depths": name, "keypoint_weight": weight, "mpjpe_mm": score(params),
                     "mean_energy": float(np.mean(energy)), "seconds": time.perf_counter() - start})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| depth targets of L_KP | ω_KP | registration train MPJPE (mm) |", "|---|---|---|"]
    for row in rows:
        weight = "–" if row["keypoint_weight"] is None else f"{row['keypoint_weight']:g}"
        lines.append(f"| {row['depths']} | {weight} | {row['mpjpe_mm']:.1f} |")
    print(f"{n} training images of {config_path}, first-iteration registration ({first.num_steps} steps)")
    print("\n".join(lines))
    if args.out:
        atomic_write_text(args.out, json.dumps({"num_images": n, "config": config_path, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
