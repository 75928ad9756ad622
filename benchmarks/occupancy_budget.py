"""How good can a learned occupancy get within a CPU step budget? An oracle upper bound for the INS table.

For each of the first `--frames` held-out frames of an INS/SNARF config's test split, a SIREN (the INS
occupancy network, `--width` x `--depth`, omega0 = the config's `model.occupancy_omega0`, default 30)
is fitted directly to THAT frame: its training points are labelled samples of the very mesh it is
scored on (near-surface + uniform in the evaluation cube, drawn from a pool with a seed different from
the evaluation set's). No skinning, no root finding,
no pose generalisation: every learned model of the table (INS, SNARF, SNARF-NC) solves a strictly harder
problem with the same kind of network, so at equal steps and points per step this fit bounds what they
can reach. The LBS baselines of the same frames are printed alongside.

Each fit: Adam, cosine decay from `--lr` to 5 %, global-norm clip 0.1, `--points` points per step
(8 : 3 near-surface : uniform). IoU on the frame's protocol points (the config's `data.eval_protocol`, split into the two columns as
the INS evaluation does: `data.eval_bbox_count`; the same cached sets).

    python -m benchmarks.occupancy_budget --config configs/ins_small.py --steps 600,1500,3000
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.common import machine_description
from jaxpose.skinning.occupancy_points import make_training_pool
from jaxpose.metrics.occupancy import occupancy_iou
from jaxpose.nn.siren import Siren
from jaxpose.skinning import data as skinning_data
from jaxpose.training.config import load_config


@functools.lru_cache(maxsize=None)
def _trainer(graphdef, n_surface: int, n_uniform: int, lr: float, steps: int):
    """(optimiser, jitted BCE step), built once per network / schedule / batch layout (pools are arguments)."""
    tx = optax.chain(optax.clip_by_global_norm(0.1), optax.adam(optax.cosine_decay_schedule(lr, steps, 0.05)))

    @jax.jit
    def step(params, opt_state, key, surface, surface_occ, uniform, uniform_occ):
        k1, k2 = jax.random.split(key)
        i = jax.random.randint(k1, (n_surface,), 0, surface.shape[0])
        j = jax.random.randint(k2, (n_uniform,), 0, uniform.shape[0])
        x = jnp.concatenate([surface[i], uniform[j]])
        y = jnp.concatenate([surface_occ[i], uniform_occ[j]])

        def loss(p):
            logits = nnx.merge(graphdef, p)(x)[:, 0]
            return jnp.mean(jax.nn.softplus(logits) - y * logits)

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return tx, step


def fit_frame(vertices: np.ndarray, faces: np.ndarray, *, steps: int, width: int, depth: int, lr: float,
              points_per_step: int, seed: int, omega0: float = 30.0) -> nnx.Module:
    """Fit a SIREN occupancy (logit) to one posed mesh (V, 3) metres; returns the trained module."""
    pool = make_training_pool(vertices[None], faces, seed=seed + 1000, pool_surface=40_000, pool_uniform=40_000,
                              uniform_box="bbox")
    surface, surface_occ, uniform, uniform_occ = (a[0] for a in pool)
    n_uniform = points_per_step * 3 // 11
    n_surface = points_per_step - n_uniform
    model = Siren(3, width, depth, 1, omega0=omega0, rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(model)
    tx, step = _trainer(graphdef, n_surface, n_uniform, lr, steps)
    opt_state = tx.init(params)
    key = jax.random.key(seed)
    for s in range(steps):
        params, opt_state = step(params, opt_state, jax.random.fold_in(key, s), surface, surface_occ, uniform, uniform_occ)
    return nnx.merge(graphdef, params)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.occupancy_budget", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ins_small.py")
    parser.add_argument("--steps", default="600,1500,3000", help="comma-separated step budgets")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--width", type=int, default=None, help="default: the config's occupancy_width")
    parser.add_argument("--depth", type=int, default=None, help="default: the config's occupancy_depth")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--points", type=int, default=5500, help="points per step")
    parser.add_argument("--output", default=None, metavar="JSON")
    args = parser.parse_args(argv)
    config = load_config(pathlib.Path(args.config))
    width = args.width or int(config.model.get("occupancy_width", 256))
    depth = args.depth or int(config.model.get("occupancy_depth", 5))
    omega0 = float(config.model.get("occupancy_omega0", 30.0))
    budgets = [int(s) for s in args.steps.split(",")]
    config.data.max_eval_frames = args.frames
    dataset = skinning_data.make_eval_data(config)
    subject = skinning_data.load_subject(config.data, (str(config.data.eval_split),))
    frames = subject.splits[str(config.data.eval_split)]
    batch = dataset.take(np.arange(len(dataset)))
    is_bbox = jnp.broadcast_to(jnp.arange(batch["points"].shape[1]) < skinning_data.eval_bbox_count(config.data), batch["points"].shape[:2])
    gt = jnp.asarray(batch["occupancy"])

    def ious(inside):
        inside = jnp.asarray(inside)
        return (np.asarray(occupancy_iou(inside & is_bbox, gt & is_bbox)),
                np.asarray(occupancy_iou(inside & ~is_bbox, gt & ~is_bbox)))

    rows = {}
    for name in ("avg_lbs", "first_lbs"):
        bbox, surface = ious(batch[f"{name}_inside"])
        rows[name] = {"iou_bbox": float(bbox.mean()), "iou_surface": float(surface.mean())}
    for steps in budgets:
        start = time.perf_counter()
        inside = []
        for t in range(len(dataset)):
            model = fit_frame(frames.vertices[t], subject.faces, steps=steps, width=width, depth=depth, lr=args.lr,
                              points_per_step=args.points, seed=t, omega0=omega0)
            inside.append(np.asarray(model(jnp.asarray(batch["points"][t]))[:, 0] > 0))
        bbox, surface = ious(np.stack(inside))
        rows[f"siren_oracle_{steps}"] = {"iou_bbox": float(bbox.mean()), "iou_surface": float(surface.mean()),
                                         "seconds_per_frame": (time.perf_counter() - start) / len(dataset)}
        print(f"{steps:>6} steps: IoU bbox {bbox.mean():.4f}  IoU surface {surface.mean():.4f}", flush=True)
    print(f"\nSIREN {depth} x {width} (omega0 {omega0:g}), {args.points} points/step, lr {args.lr}, {len(dataset)} held-out frames of "
          f"{args.config}; {machine_description()}\n")
    print("| method | IoU bbox | IoU surface | fit time per frame |\n|---|---|---|---|")
    for name, row in rows.items():
        seconds = f"{row['seconds_per_frame']:.0f} s" if "seconds_per_frame" in row else "—"
        print(f"| {name} | {row['iou_bbox']:.4f} | {row['iou_surface']:.4f} | {seconds} |")
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
