"""Benchmark deform-and-learn: registration throughput, ConvNet (ResNet) and lifter training steps.

One process, one run; every case is timed the same way: the first call (tracing + compilation + one
run) is the warm-up, then `--repeats` timed calls (each ends with `jax.block_until_ready` on the whole
output) give the median and the minimum; compile time = first call − median (the one-off cost a
caller pays on the first call of a new shape). Settings come from `configs/deform_learn_small.py`
(the CPU-sized loop) unless stated.

Data: the config's synthetic people (`jaxpose.deform_learn.synthetic.make_dataset`, train split,
64×64, 150 dense points per person, default body "low", 1,229 vertices), as many images as the
largest batch below needs; its generation time is reported, not benchmarked.

1. Registration (`jaxpose.deform_learn.registration.register`, the public API, including its
   host-side checks and casts) with the loop's setting: Adam, 300 steps, lr 0.1, the later
   iterations' weights (`loop.registration_config(config, 1)`; the weights are traced, so the first
   iteration's costs the same), from the T-pose initial θ (`params.initial_params` of the keypoints),
   data `registration_data(dataset, depths=None)` (the depth term is still computed and multiplied
   by 0, so the cost is the loop's). One call = one compiled chunk of B images, B ∈ {1, 10 (the
   paper's), 100 (the small config's)}: seconds per registration = median / B and registrations/s.
   The images are independent problems (`jit(vmap)` over the chunk; each image's result does not
   depend on B), so the batch size is throughput only.
2. ConvNet training (`jaxpose.deform_learn.resnet.ResNet`, presets "small", "resnet18",
   "resnet50"; head bias = the mean initial θ vector, as the task) through the engine's own step:
   `jaxpose.training.step.make_train_step` + `jit_train_step` (value_and_grad of
   `tasks.regressor_loss` with the config's α, β, γ = 1, 10, 1 on `tasks.network_images` of the
   uint8 images; optax Adam lr 1e-3 with gradient clipping at 1 from `training.optim.make_optimizer`
   on the config's optimizer section; the divergence guard; the state donated), float32, 64×64,
   batch 30 (the paper's). The batch is the dataset's first 30 images with their dense labels and
   keypoints, targets the T-pose θ vectors (`tasks.target_vectors`), zero lifter depths marked valid
   (the loop's later iterations); it is placed once on one device (the first: per-device
   throughput), so host batch assembly is not timed. One call = `--convnet-steps` (5) consecutive
   steps: steps/s, images/s, ms per step, and the parameter count (`resnet.count_params`). State
   creation (one jitted init) is reported as init_s, outside the timing.
3. Lifter training (`jaxpose.deform_learn.lifter.Lifter` with the config's lifter model: generator
   and discriminator MLPs of width 256, depth 3; `lifter.lifter_loss` with the config's view ranges;
   Adam lr 2e-4, clip 1) through the same engine step at batch 64 on the dataset's first 64 keypoint
   sets; one call = `--lifter-steps` (100) steps: steps/s and poses/s.

`--quick` drops resnet50 and times 2 calls instead of 5 (a smoke test; sizes unchanged).
`--registration-batches`, `--registration-steps`, `--presets` (also "tiny"), `--convnet-batch`,
`--convnet-steps`, `--lifter-batch`, `--lifter-steps` and `--image-size` pick a subset or shrink
it (the JSON records the settings). `--out` writes every number as JSON, `--markdown` the report
printed at the end. A persistent compilation cache (`jax_compilation_cache_dir`) turns compile times
into cache loads; the report names it when one is set.

    python -m benchmarks.deform_learn --out /tmp/bench/deform_learn.json --markdown /tmp/bench/deform_learn.md
    python -m benchmarks.deform_learn --quick --out /tmp/deform_learn_quick.json

JSON (`--out`): benchmark "deform_learn", command, quick, settings (the `Settings` fields), config,
machine, backend, devices, xla_flags, compilation_cache_dir, versions (python, jax, jaxlib, flax,
optax, numpy, jaxpose_commit), started_utc / finished_utc, load_before / load_after, data (images,
image_size, points_per_person, body, vertices, seconds) and three lists of rows. Every row has
compile_s, first_call_s, median_s, min_s (seconds per call) and times_s (the timed calls); besides:
  registration: body, vertices, image_size, points_per_person, steps, learning_rate, batch,
                per_registration_s, registrations_per_s, adam_steps_per_s (batched steps of the
                chunk per second), initial_mean_energy, final_mean_energy
  convnet:      preset, block, stage_depths, width, parameters, image_size, batch, steps_per_call,
                init_s, step_s (median / steps_per_call), min_step_s, steps_per_s, images_per_s,
                final_loss
  lifter:       width, depth, discriminator_width, discriminator_depth, parameters, batch,
                steps_per_call, init_s, step_s, min_step_s, steps_per_s, poses_per_s, final_loss
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import shlex
import sys
import time

from benchmarks.common import load_average, machine_description, time_calls, versions

CONFIG = "configs/deform_learn_small.py"
PRESETS = ("small", "resnet18", "resnet50")
PRESET_CHOICES = PRESETS + ("tiny",)
SECTIONS = ("registration", "convnet", "lifter")
# Keys of every row whose values must be positive finite numbers (the test checks them).
TIMING_KEYS = ("compile_s", "first_call_s", "median_s", "min_s")
SECTION_KEYS = {
    "registration": ("per_registration_s", "registrations_per_s", "adam_steps_per_s"),
    "convnet": ("step_s", "steps_per_s", "images_per_s", "parameters"),
    "lifter": ("step_s", "steps_per_s", "poses_per_s", "parameters"),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures (`--quick` drops resnet50 and times fewer calls)."""

    registration_batches: tuple[int, ...] = (1, 10, 100)
    registration_steps: int = 300
    presets: tuple[str, ...] = PRESETS
    convnet_batch: int = 30
    convnet_steps: int = 5  # train steps per timed call
    lifter_batch: int = 64
    lifter_steps: int = 100
    image_size: int = 64
    repeats: int = 5
    seed: int = 0
    quick: bool = False

    @classmethod
    def quick_settings(cls, repeats: int = 2) -> "Settings":
        return cls(presets=("small", "resnet18"), repeats=repeats, quick=True)

    @property
    def num_images(self) -> int:
        return max(max(self.registration_batches), self.convnet_batch, self.lifter_batch)


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def repo_root() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parent.parent


def loop_config():
    """`configs/deform_learn_small.py`'s ConfigDict (found from the repository root)."""
    from jaxpose.training.config import load_config

    return load_config(repo_root() / CONFIG)


def make_data(settings: Settings, config, log=print) -> tuple[dict, dict]:
    """(train-split dataset of `settings.num_images` images, its description incl. generation time)."""
    from jaxpose.deform_learn.synthetic import make_dataset
    from jaxpose.deform_learn.tasks import data_config

    count = settings.num_images
    synthetic = dataclasses.replace(
        data_config(config.data), image_size=settings.image_size, num_train=count, num_test=0,
        train_subjects=min(count, int(config.data.synthetic.train_subjects)), chunk_size=min(count, 50),
        seed=settings.seed,
    )  # fmt: skip
    start = time.perf_counter()
    dataset = make_dataset(synthetic, "train", progress=False)
    seconds = time.perf_counter() - start
    description = {"images": count, "image_size": settings.image_size, "points_per_person": synthetic.points_per_person,
                   "body": synthetic.resolution, "seconds": seconds}  # fmt: skip
    log(f"data: {count} synthetic {settings.image_size}² people in {seconds:.1f} s")
    return dataset, description


def _placeholder(*_args, **_kwargs):
    raise NotImplementedError("the benchmark task only trains")


def bench_task(name: str, make_model, loss_fn, seed: int):
    """A `Task` with only what the engine's train step and state need (model, loss, seed)."""
    import ml_collections

    from jaxpose.training.task import Task

    return Task(name=name, config=ml_collections.ConfigDict({"seed": seed}), make_model=make_model, loss_fn=loss_fn,
                make_train_data=_placeholder, make_eval_data=_placeholder, predict=_placeholder,
                eval_metrics=_placeholder)  # fmt: skip


def time_training(task, optimizer_section, batch: dict, steps_per_call: int, repeats: int) -> dict:
    """Time `steps_per_call` engine train steps per call on one fixed device batch; timings + extras."""
    import jax
    from flax import nnx

    from jaxpose.deform_learn.resnet import count_params
    from jaxpose.training import sharding as sharding_lib
    from jaxpose.training import step as step_lib
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.state import create_train_state

    mesh = sharding_lib.make_mesh(jax.devices()[:1])  # one device: per-device throughput
    batch_size = len(next(iter(batch.values())))
    tx, schedule = make_optimizer(optimizer_section, 1.0, 10**6)
    start = time.perf_counter()
    graphdef, state = create_train_state(task, tx, mesh)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    parameters = count_params(nnx.eval_shape(lambda: task.make_model(nnx.Rngs(0))))
    train_step = step_lib.jit_train_step(step_lib.make_train_step(graphdef, task, tx, schedule), mesh)
    device_batch = sharding_lib.shard_batch(batch, mesh, batch_size)
    holder = {"state": state}

    def call():
        metrics = None
        for _ in range(steps_per_call):
            holder["state"], metrics = train_step(holder["state"], device_batch)
        return metrics

    timings, metrics = time_calls(call, repeats)
    if not float(metrics[step_lib.FINITE_METRIC]):
        raise FloatingPointError(f"{task.name}: a non-finite train step (loss {float(metrics['loss'])})")
    return {
        "parameters": parameters,
        "batch": batch_size,
        "steps_per_call": steps_per_call,
        "init_s": init_s,
        **timings,
        "step_s": timings["median_s"] / steps_per_call,
        "min_step_s": timings["min_s"] / steps_per_call,
        "steps_per_s": steps_per_call / timings["median_s"],
        "final_loss": float(metrics["loss"]),
    }


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------


def bench_registration(settings: Settings, config, dataset: dict, log=print) -> list[dict]:
    """One row per registration batch size: see the module docstring, item 1."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxpose.deform_learn.loop import registration_config
    from jaxpose.deform_learn.params import initial_params
    from jaxpose.deform_learn.registration import register, registration_data, registration_energies
    from jaxpose.deform_learn.tasks import load_body

    body = load_body(config.body)
    data = registration_data(dataset, depths=None)
    init = jax.vmap(lambda k: initial_params(k, body))(jnp.asarray(dataset["keypoints"], jnp.float32))
    init = {key: np.asarray(value) for key, value in init.items()}
    base = dataclasses.replace(registration_config(config, 1), num_steps=settings.registration_steps)
    rows = []
    for batch in settings.registration_batches:
        chunk_data = {key: value[:batch] for key, value in data.items()}
        chunk_init = {key: value[:batch] for key, value in init.items()}
        reg_config = dataclasses.replace(base, batch_size=batch)

        def call(chunk_data=chunk_data, chunk_init=chunk_init, reg_config=reg_config):
            return register(body, chunk_data, chunk_init, reg_config, progress=False)

        timings, (_, energy) = time_calls(call, settings.repeats)
        initial_energy = registration_energies(body, chunk_data, chunk_init, reg_config.weights)
        row = {
            "body": str(config.body),
            "vertices": int(body.num_vertices),
            "image_size": settings.image_size,
            "points_per_person": int(chunk_data["dense_xy"].shape[1]),
            "steps": int(reg_config.num_steps),
            "learning_rate": float(reg_config.learning_rate),
            "batch": batch,
            **timings,
            "per_registration_s": timings["median_s"] / batch,
            "registrations_per_s": batch / timings["median_s"],
            "adam_steps_per_s": reg_config.num_steps / timings["median_s"],
            "initial_mean_energy": float(np.mean(initial_energy)),
            "final_mean_energy": float(np.mean(energy)),
        }
        rows.append(row)
        log(f"registration batch {batch}: compile {row['compile_s']:.1f} s, median {row['median_s']:.3f} s "
            f"({row['registrations_per_s']:.2f} registrations/s)")  # fmt: skip
    return rows


def bench_convnet(settings: Settings, config, dataset: dict, log=print) -> list[dict]:
    """One row per ResNet preset: see the module docstring, item 2."""
    import jax.numpy as jnp
    import numpy as np

    from jaxpose.deform_learn.params import initial_params, params_to_vector
    from jaxpose.deform_learn.resnet import ResNet, resnet_spec
    from jaxpose.deform_learn.tasks import REGRESSOR_TRAIN_KEYS, load_body, network_images, regressor_loss, target_vectors

    body = load_body(config.body)
    n = settings.convnet_batch
    weights = tuple(float(config.regressor.loss[k]) for k in ("alpha", "beta", "gamma"))
    init = initial_params(jnp.asarray(dataset["keypoints"][:n], jnp.float32), body)
    output_bias = np.asarray(params_to_vector(init), np.float32).mean(axis=0)
    batch = {key: np.asarray(dataset[key][:n]) for key in REGRESSOR_TRAIN_KEYS}
    batch["keypoints"] = batch["keypoints"].astype(np.float32)
    batch["dense_xy"] = batch["dense_xy"].astype(np.float32)
    batch.update(depths=np.zeros((n, body.num_joints), np.float32), depth_valid=np.ones(n, bool),
                 target=target_vectors(init))  # fmt: skip

    def loss_fn(model, batch, rng):
        del rng
        return regressor_loss(model(network_images(batch["image"])), batch, body, weights)

    rows = []
    for preset in settings.presets:
        spec = resnet_spec(preset)
        task = bench_task(f"bench_resnet_{preset}", lambda rngs, spec=spec: ResNet(spec, output_bias, rngs=rngs),
                          loss_fn, settings.seed)  # fmt: skip
        measured = time_training(task, config.regressor.optimizer, batch, settings.convnet_steps, settings.repeats)
        row = {
            "preset": preset,
            "block": spec.block.value,
            "stage_depths": list(spec.stage_depths),
            "width": int(spec.width),
            "image_size": settings.image_size,
            **measured,
            "images_per_s": measured["steps_per_s"] * n,
        }
        rows.append(row)
        log(f"convnet {preset} ({row['parameters']:,} parameters) batch {n}: compile {row['compile_s']:.1f} s, "
            f"{row['step_s'] * 1e3:.1f} ms/step ({row['images_per_s']:.1f} images/s)")  # fmt: skip
    return rows


def bench_lifter(settings: Settings, config, dataset: dict, log=print) -> list[dict]:
    """One row: see the module docstring, item 3."""
    import numpy as np

    from jaxpose.deform_learn.lifter import Lifter, lifter_loss
    from jaxpose.deform_learn.tasks import lifter_loss_config, lifter_spec

    spec, loss_config = lifter_spec(config.lifter.model), lifter_loss_config(config.lifter.loss)
    batch = {"keypoints": np.asarray(dataset["keypoints"][: settings.lifter_batch], np.float32)}

    def loss_fn(model, batch, rng):
        return lifter_loss(model, batch["keypoints"], rng, loss_config)

    task = bench_task("bench_lifter", lambda rngs: Lifter(spec, rngs=rngs), loss_fn, settings.seed)
    measured = time_training(task, config.lifter.optimizer, batch, settings.lifter_steps, settings.repeats)
    row = {
        "width": spec.width,
        "depth": spec.depth,
        "discriminator_width": spec.discriminator_width,
        "discriminator_depth": spec.discriminator_depth,
        **measured,
        "poses_per_s": measured["steps_per_s"] * settings.lifter_batch,
    }
    log(f"lifter ({row['parameters']:,} parameters) batch {settings.lifter_batch}: compile {row['compile_s']:.1f} s, "
        f"{row['step_s'] * 1e3:.2f} ms/step ({row['steps_per_s']:.0f} steps/s)")  # fmt: skip
    return [row]


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def run(settings: Settings, command: str = "", log=print) -> dict:
    """Measure every case; the JSON-serialisable result (schema in the module docstring)."""
    import jax

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    config = loop_config()
    result = {
        "benchmark": "deform_learn",
        "command": command,
        "quick": settings.quick,
        "settings": dataclasses.asdict(settings),
        "config": CONFIG,
        "machine": machine_description(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # A persistent compilation cache turns compile times into cache-load times: say so.
        "compilation_cache_dir": str(jax.config.jax_compilation_cache_dir or ""),
        "versions": versions(),
        "started_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "load_before": load_before,
    }
    dataset, result["data"] = make_data(settings, config, log)
    from jaxpose.deform_learn.tasks import load_body

    result["data"]["vertices"] = int(load_body(config.body).num_vertices)
    result["registration"] = bench_registration(settings, config, dataset, log)
    result["convnet"] = bench_convnet(settings, config, dataset, log)
    result["lifter"] = bench_lifter(settings, config, dataset, log)
    result["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    result["load_after"] = load_average()
    return result


def to_markdown(result: dict) -> str:
    data = result["data"]
    reg_rows = [
        f"| {r['batch']} | {r['compile_s']:.1f} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
        f"{r['per_registration_s'] * 1e3:.1f} | {r['registrations_per_s']:.2f} | {r['adam_steps_per_s']:.0f} | "
        f"{r['initial_mean_energy']:.3g} → {r['final_mean_energy']:.3g} |"
        for r in result["registration"]
    ]
    cnn_rows = [
        f"| {r['preset']} ({r['block']}, {'-'.join(str(d) for d in r['stage_depths'])}, width {r['width']}) | "
        f"{r['parameters']:,} | {r['batch']} | {r['compile_s']:.1f} | {r['step_s'] * 1e3:.1f} | {r['min_step_s'] * 1e3:.1f} | "
        f"{r['steps_per_s']:.2f} | {r['images_per_s']:.1f} |"
        for r in result["convnet"]
    ]
    lifter_rows = [
        f"| G {r['width']}×{r['depth']}, D {r['discriminator_width']}×{r['discriminator_depth']} | {r['parameters']:,} | "
        f"{r['batch']} | {r['compile_s']:.1f} | {r['step_s'] * 1e3:.2f} | {r['min_step_s'] * 1e3:.2f} | "
        f"{r['steps_per_s']:.0f} | {r['poses_per_s']:.0f} |"
        for r in result["lifter"]
    ]
    v = result["versions"]
    reg = result["registration"][0] if result["registration"] else {"steps": 0, "learning_rate": 0.0}
    cnn = result["convnet"][0] if result["convnet"] else {"steps_per_call": 0, "batch": 0}
    lifter = result["lifter"][0] if result["lifter"] else {"steps_per_call": 0}
    repeats = result["settings"]["repeats"]
    lines = [
        "## Deform-and-learn: registration, ConvNet and lifter training (`benchmarks/deform_learn.py`)"
        + (" — QUICK smoke run" if result["quick"] else ""),
        "",
        f"Command (from the repo root): `{result['command']}`",
        f"Machine: {result['machine']}",
        f"Versions: Python {v['python']}, jaxlib {v['jaxlib']}, Flax {v['flax']}, optax {v['optax']}, NumPy {v['numpy']}; "
        f"jaxpose {v['jaxpose_commit']}"
        + (f"; XLA_FLAGS={result['xla_flags']}" if result["xla_flags"] else "")
        + (f"; persistent compilation cache {result['compilation_cache_dir']} (compile = cache load)"
           if result["compilation_cache_dir"] else ""),
        f"Date: {result['started_utc']}–{result['finished_utc'][11:16]} UTC; load average (1/5/15 min) "
        f"{result['load_before']} before, {result['load_after']} after.",
        "",
        f"Settings from `{result['config']}`. Data: {data['images']} synthetic {data['image_size']}² people "
        f"({data['points_per_person']} dense points each, body \"{data['body']}\", {data['vertices']:,} v), generated in "
        f"{data['seconds']:.1f} s (not timed below). Every case: first call (compile + run) as warm-up, then {repeats} "
        f"timed call{'s' if repeats != 1 else ''} (`block_until_ready`); compile = first call − median.",
        "",
        f"### Registration (`register`, Adam {reg['steps']} steps, lr {reg['learning_rate']:g}; one call = one chunk of B images)",
        "",
        "The images are independent problems (`jit(vmap)` over a chunk; results do not depend on B): the batch "
        "size changes throughput only.",
        "",
        "| batch B | compile (s) | median (s) | min (s) | per registration (ms) | registrations/s | Adam steps/s | "
        "mean energy, start → end |",
        "|---|---|---|---|---|---|---|---|",
        *reg_rows,
        "",
        f"### ConvNet training (engine train step, `regressor_loss` + Adam/clip, float32, {result['settings']['image_size']}², "
        f"batch {cnn['batch']}; one call = {cnn['steps_per_call']} steps)",
        "",
        "| preset | parameters | batch | compile (s) | median (ms/step) | min (ms/step) | steps/s | images/s |",
        "|---|---|---|---|---|---|---|---|",
        *cnn_rows,
        "",
        f"### Lifter training (engine train step, `lifter_loss` + Adam/clip; one call = {lifter['steps_per_call']} steps)",
        "",
        "| model | parameters | batch | compile (s) | median (ms/step) | min (ms/step) | steps/s | poses/s |",
        "|---|---|---|---|---|---|---|---|",
        *lifter_rows,
        "",
    ]
    return "\n".join(lines)


def check_result(result: dict) -> None:
    """ValueError unless every section has rows and every timing is a positive finite number."""
    for section in SECTIONS:
        rows = result.get(section)
        if not rows:
            raise ValueError(f"section {section!r} has no rows")
        for row in rows:
            for key in TIMING_KEYS + SECTION_KEYS[section]:
                value = row.get(key)
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                    raise ValueError(f"{section} row {row} has {key}={value!r}, not a positive finite number")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="no resnet50, 2 timed calls (see above)")
    parser.add_argument("--repeats", type=int, help="timed calls after the warm-up (default 5; quick 2)")
    parser.add_argument("--registration-batches", type=int, nargs="+", help="registration chunk sizes (default 1 10 100)")
    parser.add_argument("--registration-steps", type=int, help="Adam steps per registration (default 300)")
    parser.add_argument("--presets", nargs="+", choices=PRESET_CHOICES, help="ResNet presets (default small resnet18 resnet50)")
    parser.add_argument("--convnet-batch", type=int, help="ConvNet batch size (default 30)")
    parser.add_argument("--convnet-steps", type=int, help="ConvNet train steps per timed call (default 5)")
    parser.add_argument("--lifter-batch", type=int, help="lifter batch size (default 64)")
    parser.add_argument("--lifter-steps", type=int, help="lifter train steps per timed call (default 100)")
    parser.add_argument("--image-size", type=int, help="synthetic image size (default 64)")
    parser.add_argument("--out", help="write the results as JSON here (atomically)")
    parser.add_argument("--markdown", help="also write the markdown report here (atomically)")
    args = parser.parse_args(argv)
    settings = Settings.quick_settings() if args.quick else Settings()
    overrides = {"repeats": args.repeats, "registration_batches": args.registration_batches,
                 "registration_steps": args.registration_steps, "presets": args.presets,
                 "convnet_batch": args.convnet_batch, "convnet_steps": args.convnet_steps,
                 "lifter_batch": args.lifter_batch, "lifter_steps": args.lifter_steps,
                 "image_size": args.image_size}  # fmt: skip
    for name, value in overrides.items():
        if value is None:
            continue
        if name != "presets" and min(value if isinstance(value, list) else [value]) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
        settings = dataclasses.replace(settings, **{name: tuple(value) if isinstance(value, list) else value})
    command = "python -m benchmarks.deform_learn " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = run(settings, command.strip(), log=lambda text: print(text, flush=True))
    report = to_markdown(result)
    print(report)
    from jaxpose.io.atomic import atomic_write_text

    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, report)
    check_result(result)  # after writing: a bad number is reported, the measurements are kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
