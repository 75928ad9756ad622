"""The `ins`, `snarf` and `snarf_nc` tasks: occupancy of a clothed subject in novel poses (ins.md §2–§8).

All three train with BCE on occupancy logits of deformed points (SNARF's CAPE sampling, drawn from
per-frame labelled pools — `jaxpose.tasks.skinning_data`) and are scored by the same evaluation:
mean per-frame IoU bbox / IoU surface on the held-out motions, Pred inside where the evaluation logit
(max over converged roots, 24 initial bones) is > 0, GT from winding numbers. The non-learned AVG-LBS
and FIRST-LBS baselines (`avg_lbs`, `first_lbs`) are scored in the same table.

Config sections:
  model  (ins):   occupancy_width/depth/omega0, skinning_width/depth, pin (n_layers, pose_code_dim,
                  encoder_width, embed_width, embed_depth, head_width, head_depth), root_max_steps,
                  root_chunk_size (0 = none), and the ablation switches use_pose_multiplication,
                  use_siren, use_rotation, use_h_d, use_h_c, use_lbs;
  model  (snarf): width, depth, num_frequencies, skinning_width, skinning_depth, max_steps,
                  chunk_size (0 = none); `snarf_nc` is the same without pose conditioning;
  loss:           extras_epochs (SNARF's first-epoch extras are on for epochs < extras_epochs),
                  joint_one_hot_weight (SNARF: 10), skinning_distill_weight (MSE of the skinning field
                  to the minimal body's weights at its star-pose vertices; not in SNARF, 0 disables);
  data:           see `jaxpose.tasks.skinning_data`.

`jaxpose eval ins --checkpoint DIR [--checkpoint DIR ...] [--baseline avg_lbs] [--baseline first_lbs]`
takes checkpoints of any of the three tasks in one table (each is rebuilt by the task its config
names; all must share the data config).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from jaxpose.models.ins import INS, INVALID_LOGIT, INSConfig, occupancy_bce
from jaxpose.models.pin import PINConfig
from jaxpose.models.skinning import joint_one_hot_loss, skinning_weight_loss
from jaxpose.models.snarf import SNARF
from jaxpose.tasks import skinning_data
from jaxpose.training.task import Task

UNRESOLVED_LOGIT = -13.815510557964274
"""logit(1e-6): the training logit of a point with no converged root (SNARF's convention: probability
clamped at eps). INS marks such points with INVALID_LOGIT (-1e5), a constant, so the gradient is the
same either way; only the loss value stays on the BCE scale instead of being dominated by 1e5 terms."""

PIN_KEYS = ("n_layers", "pose_code_dim", "encoder_width", "embed_width", "embed_depth", "head_width", "head_depth")
INS_KEYS = ("occupancy_width", "occupancy_depth", "occupancy_omega0", "skinning_width", "skinning_depth", "root_max_steps",
            "use_pose_multiplication", "use_siren", "use_rotation", "use_h_d", "use_h_c", "use_lbs")


def ins_model_config(model: ml_collections.ConfigDict) -> INSConfig:
    """`INSConfig` from the `model` config section (missing keys keep INSConfig's defaults)."""
    pin = PINConfig(**{k: int(model.pin[k]) for k in PIN_KEYS if k in model.get("pin", {})})
    fields = {k: type(getattr(INSConfig, k))(model[k]) for k in INS_KEYS if k in model}
    chunk = int(model.get("root_chunk_size", 0))
    return INSConfig(pin=pin, root_chunk_size=chunk or None, **fields)


def make_ins(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> INS:
    return INS(ins_model_config(config.model), rngs=rngs)


def _make_snarf(config: ml_collections.ConfigDict, rngs: nnx.Rngs, pose_conditioned: bool) -> SNARF:
    m = config.model
    return SNARF(pose_conditioned=pose_conditioned, width=int(m.width), depth=int(m.depth),
                 skip_layers=tuple(int(s) for s in m.skip_layers), num_frequencies=int(m.num_frequencies),
                 skinning_width=int(m.skinning_width), skinning_depth=int(m.skinning_depth),
                 max_steps=int(m.max_steps), rngs=rngs)


def _per_frame(model, fn, *arrays):
    """vmap `fn(model, *frame_arrays)` over the batch's leading axis, the model shared (not mapped)."""
    graphdef, state = nnx.split(model)
    return jax.vmap(lambda *a: fn(nnx.merge(graphdef, state), *a))(*arrays)


def _ins_logits(model, points, transforms, pose, *, training):
    return model(points, transforms, training=training)


def _snarf_logits(model, points, transforms, pose, *, training):
    return model.occupancy_logits(points, pose, transforms, training=training)


def _loss(logits_fn):
    def loss_fn(model, batch, rng):
        del rng  # the training points were drawn by the dataset (pure function of seed and epoch)
        logits = _per_frame(model, lambda m, x, t, p: logits_fn(m, x, t, p, training=True),
                            batch["points"], batch["transforms"], batch["pose"])
        logits = jnp.where(logits <= 0.5 * INVALID_LOGIT, UNRESOLVED_LOGIT, logits)
        bce = occupancy_bce(logits.reshape(-1), batch["occupancy"].reshape(-1))
        field = model.skinning
        joints = batch["canonical_joints"][0]
        one_hot = joint_one_hot_loss(field, joints) if field is not None else jnp.zeros(())
        distill = (skinning_weight_loss(field, batch["canonical_vertices"][0], batch["canonical_weights"][0])
                   if field is not None else jnp.zeros(()))
        extras = jnp.mean(batch["joint_one_hot_weight"]) * one_hot + jnp.mean(batch["skinning_distill_weight"]) * distill
        accuracy = jnp.mean((logits > 0) == (batch["occupancy"] > 0.5))
        return bce + extras, {"bce": bce, "joint_one_hot": one_hot, "skinning_distill": distill, "point_accuracy": accuracy}

    return loss_fn


def _predict(logits_fn):
    def predict(model, batch):
        logits = _per_frame(model, lambda m, x, t, p: logits_fn(m, x, t, p, training=False),
                            batch["points"], batch["transforms"], batch["pose"])
        return logits > 0

    return predict


def eval_main(argv: list[str], prog: str = "jaxpose eval ins") -> int:
    """One table over checkpoints of ins / snarf / snarf_nc and the LBS baselines (see module doc)."""
    parser = argparse.ArgumentParser(prog=prog, description="IoU table of INS/SNARF checkpoints and LBS baselines")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR")
    parser.add_argument("--baseline", action="append", default=[], choices=sorted(skinning_data.BASELINES))
    parser.add_argument("--data", metavar="DIR")
    parser.add_argument("--list", metavar="FILE")
    parser.add_argument("--output", default="eval_results", metavar="DIR")
    parser.add_argument("--batch_size", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.checkpoint:
        parser.error("give at least one --checkpoint (its config defines the test set)")
    import json
    import pathlib
    import time

    from jaxpose.training import evaluation
    from jaxpose.training.checkpoint import CheckpointError, resolve_checkpoint_dir
    from jaxpose.training.registry import get_task
    from jaxpose.training.sharding import make_mesh

    try:
        mesh = make_mesh()
        loaded = []
        for path in args.checkpoint:
            config_path = resolve_checkpoint_dir(path).parent / "config.json"
            if not config_path.is_file():
                raise FileNotFoundError(f"{config_path} not found (is {path} a training workdir?)")
            task = get_task(json.loads(config_path.read_text())["task"])
            loaded.append((task, evaluation.load_checkpoint(task, path, mesh)))
        from jaxpose.training.config import config_differences

        for _, other in loaded[1:]:  # tasks differ; the test set (data section) must not
            diffs = config_differences(loaded[0][1].config, other.config, keys=("data",))
            if diffs:
                raise ValueError(f"{other.name} and {loaded[0][1].name} disagree on their data config:\n  " + "\n  ".join(diffs))
        dataset = loaded[0][0].make_eval_data(loaded[0][1].config, args.data, args.list)
        results, seconds = {}, {}
        for task, checkpoint in loaded:
            start = time.perf_counter()
            evaluator = evaluation.ModelEvaluator(task, checkpoint.graphdef, mesh, args.batch_size)
            results[f"{task.name}:{checkpoint.name}"] = evaluation.summarize(
                evaluator(checkpoint.state.params, checkpoint.state.model_state, dataset))
            seconds[f"{task.name}:{checkpoint.name}"] = time.perf_counter() - start
        for name in args.baseline:
            results[name] = evaluation.summarize(evaluation.evaluate_baseline(TASK, name, dataset, mesh, args.batch_size))
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as error:
        print(f"{prog}: error: {error}")
        return 2
    print(evaluation.format_table(results))
    for name, s in seconds.items():
        print(f"{name}: evaluated in {s:.1f} s")
    pathlib.Path(args.output).mkdir(parents=True, exist_ok=True)
    paths = evaluation.write_results(results, args.output)
    print("wrote " + ", ".join(paths))
    return 0


def _task(name, make_model, logits_fn, description):
    return Task(
        name=name,
        make_model=make_model,
        loss_fn=_loss(logits_fn),
        make_train_data=skinning_data.make_train_data,
        make_eval_data=skinning_data.make_eval_data,
        predict=_predict(logits_fn),
        eval_metrics=skinning_data.occupancy_metrics,
        baselines=skinning_data.BASELINES,
        supports_mixed_precision=False,
        description=description,
        eval_main=eval_main,
    )


TASK = _task("ins", make_ins, _ins_logits, "Invertible Neural Skinning: canonical SIREN occupancy behind PINs and LBS")
SNARF_TASK = _task("snarf", lambda c, r: _make_snarf(c, r, True), _snarf_logits, "SNARF: pose-conditioned canonical occupancy")
SNARF_NC_TASK = _task("snarf_nc", lambda c, r: _make_snarf(c, r, False), _snarf_logits, "SNARF-NC: SNARF without pose conditioning")

__all__ = ["SNARF_NC_TASK", "SNARF_TASK", "TASK", "eval_main", "ins_model_config", "make_ins"]
