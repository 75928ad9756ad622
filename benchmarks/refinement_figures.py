"""Before/after figure of the refinement on held-out synthetic people (the picture behind RESULTS.md §3).

    python -m benchmarks.refinement_figures --checkpoint runs/refinement_small --people 0,1,2,3 \
        --out docs/figures/refinement_before_after.png

Columns per person: the image; the initial estimate's silhouette outline (red) over it; the refinement
with the CNN's predicted displacements (green); the refinement with the exact displacements (blue);
the ground truth's outline is white in every column. Titles give root-aligned PVE (mm) and silhouette IoU.
"""

from __future__ import annotations

import argparse
import io
import sys

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from skimage.segmentation import find_boundaries

from jaxpose.bodies.default import default_body
from jaxpose.fitting.comparisons import ComparisonSettings, Method, refine
from jaxpose.fitting.evaluation import person_metrics
from jaxpose.fitting.params import params_from_pose, pose_body
from jaxpose.fitting.protocol import checkpoint_predictor
from jaxpose.fitting.synthetic import camera_from_arrays, load_or_make_dataset
from jaxpose.fitting.task import synthetic_config
from jaxpose.io.atomic import atomic_write_bytes
from jaxpose.render import rasterize, screen_vertices
from jaxpose.training.evaluation import load_checkpoint
from jaxpose.training.sharding import make_mesh

COLUMNS = (("initial estimate", Method.INITIAL, (1.0, 0.2, 0.2)), ("ours (predicted)", Method.PREDICTED, (0.2, 1.0, 0.2)),
           ("ours (exact field)", Method.EXACT, (0.3, 0.6, 1.0)))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.refinement_figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--people", default="0,1,2,3", help="comma-separated indices into the test split")
    parser.add_argument("--out", required=True, help="output PNG")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint, make_mesh())
    synthetic = synthetic_config(checkpoint.config.data)
    dataset = load_or_make_dataset(synthetic, "test", checkpoint.config.data.cache_dir)
    body, camera = default_body(synthetic.resolution), camera_from_arrays(dataset)
    indices = np.asarray([int(i) for i in args.people.split(",")])
    people = {k: v[indices] for k, v in dataset.items() if not k.startswith("camera_") and k != "image_size"}
    displacement, confidence = checkpoint_predictor(checkpoint)(people)
    settings = ComparisonSettings(batch_size=len(indices))
    mask_of = jax.jit(lambda v: rasterize(screen_vertices(v, camera), body.faces, camera.height, camera.width).mask)
    truth = jax.vmap(lambda p, b, t: pose_body(body, params_from_pose(p, b, t)))(
        jnp.asarray(people["gt_pose"]), jnp.asarray(people["gt_betas"]), jnp.asarray(people["gt_transl"]))
    figure = Figure(figsize=(2.4 * (1 + len(COLUMNS)), 2.6 * len(indices)), dpi=110)
    for column, (title, method, color) in enumerate(COLUMNS):
        print(f"{title}…", file=sys.stderr, flush=True)
        vertices, joints = refine(method, body, camera, people, indices, settings, displacement, confidence)
        metrics = person_metrics(vertices, joints, truth.vertices, truth.joints, body.faces, camera, jnp.asarray(people["gt_mask"]))
        for row in range(len(indices)):
            image = np.asarray(people["image"][row], np.float32)
            if column == 0:
                axes = figure.add_subplot(len(indices), 1 + len(COLUMNS), row * (1 + len(COLUMNS)) + 1)
                axes.imshow(image)
                axes.set_title(f"test person {indices[row]}", fontsize=8)
                axes.axis("off")
            overlay = image.copy()
            overlay[find_boundaries(np.asarray(people["gt_mask"][row]), mode="inner")] = 1.0
            overlay[find_boundaries(np.asarray(mask_of(vertices[row])), mode="inner")] = color
            axes = figure.add_subplot(len(indices), 1 + len(COLUMNS), row * (1 + len(COLUMNS)) + column + 2)
            axes.imshow(overlay)
            axes.set_title(f"{title}\nPVE {float(metrics['pve_mm'][row]):.0f} mm, IoU {float(metrics['silhouette_iou'][row]):.2f}", fontsize=7)
            axes.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
