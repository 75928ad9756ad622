"""The `ins`, `snarf` and `snarf_nc` tasks, built from their config: occupancy of a clothed subject in
novel poses (docs/skinning.md).

All three train with BCE on occupancy logits of deformed points (SNARF's CAPE sampling, drawn from
per-frame labelled pools — `jaxpose.skinning.data`) and are scored by the same evaluation:
mean per-frame IoU bbox / IoU surface on the held-out motions, Pred inside where the evaluation logit
(max over converged roots, 24 initial bones) is > 0, GT from winding numbers. The non-learned AVG-LBS
and FIRST-LBS baselines (`avg_lbs`, `first_lbs`) are scored in the same table.

Config sections:
  model  (ins):   occupancy_width/depth/omega0, skinning_width/depth, pin (n_layers, pose_code_dim,
                  encoder_width, embed_width, embed_depth, head_width, head_depth, bone_code_mode,
                  root_relative, spatial_omega0), root_max_steps, root_tol, root_diverge, aggregation,
                  root_chunk_size (0 = none), and the ablation switches use_pose_multiplication,
                  use_siren, use_rotation, use_h_d, use_h_c, use_lbs;
  model  (snarf): width, depth, num_frequencies, skinning_width, skinning_depth, max_steps, tol, diverge;
                  `snarf_nc` is the same without pose conditioning;
  loss:           extras_epochs (SNARF's first-epoch extras are on for epochs < extras_epochs),
                  joint_one_hot_weight (SNARF: 10), bone_occupancy_weight (SNARF: 1; 0 disables),
                  skinning_distill_weight (MSE of the skinning field to the minimal body's weights at
                  its star-pose vertices; not in SNARF, 0 disables);
  warm_start:     optional (jaxpose.skinning.warm_start): skinning_steps / skinning_lr (pre-distil the
                  skinning field to the minimal body's weights) and occupancy_steps / occupancy_lr (fit
                  the canonical occupancy to the minimal body in the star pose), run when the model is
                  first built — identically for every method;
  data:           see `jaxpose.skinning.data` (eval_protocol "cape" | "dfaust", eval_prefilter_bones).

`jaxpose eval ins --checkpoint DIR [--checkpoint DIR ...] [--baseline avg_lbs] [--baseline first_lbs]`
(the standard protocol) takes checkpoints of any of the three tasks in one table (each is rebuilt by the
task its config names; all must share the data config). The loss closes over the config's weights and
over the subject's canonical joints, vertices and skinning weights (loaded once, when first traced).
"""

from __future__ import annotations

import functools
import inspect
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxpose.skinning import data as skinning_data
from jaxpose.skinning import warm_start
from jaxpose.skinning.field import joint_one_hot_loss, lbs_points, skinning_weight_loss
from jaxpose.skinning.ins import INS, INVALID_LOGIT, INSConfig, occupancy_bce
from jaxpose.skinning.pin import PINConfig
from jaxpose.skinning.snarf import SNARF, bone_points
from jaxpose.training.protocol import StandardProtocol
from jaxpose.training.task import Task, TaskDefinition

UNRESOLVED_LOGIT = -13.815510557964274
"""logit(1e-6): the training logit of a point with no converged root (SNARF's convention: probability
clamped at eps). INS marks such points with INVALID_LOGIT (-1e5), a constant, so the gradient is the
same either way; only the loss value stays on the BCE scale instead of being dominated by 1e5 terms."""

PIN_KEYS = ("n_layers", "pose_code_dim", "encoder_width", "embed_width", "embed_depth", "head_width", "head_depth",
            "bone_code_mode", "root_relative", "spatial_omega0")
INS_KEYS = ("occupancy_width", "occupancy_depth", "occupancy_omega0", "skinning_width", "skinning_depth", "root_max_steps",
            "root_tol", "root_diverge", "aggregation", "use_pose_multiplication", "use_siren", "use_rotation", "use_h_d",
            "use_h_c", "use_lbs")
SNARF_DEFAULTS = types.SimpleNamespace(**{name: p.default for name, p in inspect.signature(SNARF.__init__).parameters.items()
                                           if p.default is not inspect.Parameter.empty})
SNARF_KEYS = ("width", "depth", "num_frequencies", "skinning_width", "skinning_depth", "max_steps", "tol", "diverge")


def _typed(defaults, section, keys) -> dict:
    """{key: value} for the keys present in the config section, cast to the type of the dataclass default."""
    return {k: type(getattr(defaults, k))(section[k]) for k in keys if k in section}


def ins_model_config(model: ml_collections.ConfigDict) -> INSConfig:
    """`INSConfig` from the `model` config section (missing keys keep INSConfig's defaults)."""
    pin = PINConfig(**_typed(PINConfig(), model.get("pin", {}), PIN_KEYS))
    chunk = int(model.get("root_chunk_size", 0))
    return INSConfig(pin=pin, root_chunk_size=chunk or None, **_typed(INSConfig(), model, INS_KEYS))


def _warm_started(config: ml_collections.ConfigDict, model, occupancy_logits):
    """Run the configured warm starts (`config.warm_start`, jaxpose.skinning.warm_start) on a fresh model."""
    settings = config.get("warm_start", None)
    if settings is None or (int(settings.skinning_steps) <= 0 and int(settings.occupancy_steps) <= 0):
        return model
    with jax.ensure_compile_time_eval():  # host-side data loading, also when make_model is traced by jit
        targets = skinning_data.warm_start_targets(config.data)
    if model.skinning is not None:
        warm_start.distil_skinning(model.skinning, targets, steps=int(settings.skinning_steps), lr=float(settings.skinning_lr))
    warm_start.fit_occupancy(model, occupancy_logits, targets, steps=int(settings.occupancy_steps),
                             lr=float(settings.occupancy_lr))
    return model


def make_ins(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> INS:
    return INS(ins_model_config(model), rngs=rngs)


def make_snarf(model: ml_collections.ConfigDict, rngs: nnx.Rngs, pose_conditioned: bool = True) -> SNARF:
    sizes = _typed(SNARF_DEFAULTS, model, SNARF_KEYS)
    return SNARF(pose_conditioned=pose_conditioned, skip_layers=tuple(int(s) for s in model.skip_layers), rngs=rngs,
                 **sizes)


def _ins_canonical_logits(model, points, pose):
    del pose  # INS's canonical occupancy is pose-free
    return model.canonical_occupancy(points)


def _snarf_canonical_logits(model, points, pose):
    return model.canonical_logits(points, pose)


def _per_frame(model, fn, *arrays):
    """vmap `fn(model, *frame_arrays)` over the batch's leading axis, the model shared (not mapped)."""
    graphdef, state = nnx.split(model)
    return jax.vmap(lambda *a: fn(nnx.merge(graphdef, state), *a))(*arrays)


def _ins_logits(model, points, transforms, pose, *, training, init_bones=None):
    return model(points, transforms, training=training, init_bones=init_bones)


def _snarf_logits(model, points, transforms, pose, *, training, init_bones=None):
    return model.occupancy_logits(points, pose, transforms, training=training, init_bones=init_bones)


def make_loss_fn(config: ml_collections.ConfigDict, logits_fn, canonical_logits_fn):
    """The engine's `loss_fn(model, batch, rng)`: BCE on occupancy logits plus SNARF's first-epoch
    extras — joint one-hot skinning loss, bone occupancy (canonical points on the skeleton's bones
    labelled inside, `loss.bone_occupancy_weight`, SNARF λ = 1) and optional skinning-weight
    distillation — whose weights come from `config.loss` and are switched off for items of epoch >=
    `loss.extras_epochs`. Also logs `skinning_vertex_error` (m): the mean distance between the
    subject's minimal body posed with the learned skinning field and with its own weights, in the
    batch's poses."""
    loss = config.loss
    extras_epochs = int(loss.extras_epochs)
    one_hot_weight, distill_weight = float(loss.joint_one_hot_weight), float(loss.skinning_distill_weight)
    bone_weight = float(loss.get("bone_occupancy_weight", 0.0))

    @functools.cache
    def canonical() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # The subject is loaded (lru-cached) when the loss is first traced, not when the task is built.
        # Host arrays: they become constants of whichever program traces the loss.
        subject = skinning_data.load_subject(config.data, (str(config.data.train_split),))
        return (np.asarray(subject.canonical_joints, np.float32), np.asarray(subject.canonical_vertices, np.float32),
                np.asarray(subject.body.weights, np.float32))  # fmt: skip

    def loss_fn(model, batch, rng):
        # The training points were drawn by the dataset (pure function of seed and epoch); `rng` only
        # jitters the bone-occupancy samples.
        logits = _per_frame(model, lambda m, x, t, p: logits_fn(m, x, t, p, training=True),
                            batch["points"], batch["transforms"], batch["pose"])  # fmt: skip
        logits = jnp.where(logits <= 0.5 * INVALID_LOGIT, UNRESOLVED_LOGIT, logits)
        bce = occupancy_bce(logits.reshape(-1), batch["occupancy"].reshape(-1))
        joints, vertices, weights = (jnp.asarray(a) for a in canonical())
        field = model.skinning
        if field is not None:
            one_hot = joint_one_hot_loss(field, joints)
            distill = skinning_weight_loss(field, vertices, weights)
            vertex_error = jnp.mean(jax.vmap(lambda t: jnp.linalg.norm(
                lbs_points(vertices, field(vertices), t) - lbs_points(vertices, weights, t), axis=-1))(batch["transforms"]))
        else:
            one_hot = distill = vertex_error = jnp.zeros(())
        if bone_weight:
            bone_logits = canonical_logits_fn(model, bone_points(joints, rng), batch["pose"][0])
            bone_bce = occupancy_bce(bone_logits, jnp.ones_like(bone_logits))
        else:
            bone_bce = jnp.zeros(())
        extras_on = jnp.mean((batch["epoch"] < extras_epochs).astype(jnp.float32))
        extras = extras_on * (one_hot_weight * one_hot + distill_weight * distill + bone_weight * bone_bce)
        accuracy = jnp.mean((logits > 0) == (batch["occupancy"] > 0.5))
        return bce + extras, {"bce": bce, "joint_one_hot": one_hot, "skinning_distill": distill, "bone_occupancy": bone_bce,
                              "skinning_vertex_error": vertex_error, "point_accuracy": accuracy}

    return loss_fn


def _predict(logits_fn):
    def predict(model, batch):
        if "init_bones" in batch:  # the nearest-bones pre-filter of the evaluation data
            logits = _per_frame(model, lambda m, x, t, p, b: logits_fn(m, x, t, p, training=False, init_bones=b),
                                batch["points"], batch["transforms"], batch["pose"], batch["init_bones"])  # fmt: skip
        else:
            logits = _per_frame(model, lambda m, x, t, p: logits_fn(m, x, t, p, training=False),
                                batch["points"], batch["transforms"], batch["pose"])  # fmt: skip
        return logits > 0

    return predict


def _task_maker(name: str, make_model, logits_fn, canonical_logits_fn):
    def make_task(config: ml_collections.ConfigDict) -> Task:
        return Task(
            name=name,
            config=config,
            make_model=lambda rngs: _warm_started(config, make_model(config.model, rngs), canonical_logits_fn),
            loss_fn=make_loss_fn(config, logits_fn, canonical_logits_fn),
            make_train_data=lambda: skinning_data.make_train_data(config),
            make_eval_data=lambda data_dir, list_file: skinning_data.make_eval_data(config, data_dir, list_file),
            predict=_predict(logits_fn),
            eval_metrics=skinning_data.make_occupancy_metrics(skinning_data.eval_bbox_count(config.data)),
            baselines=skinning_data.BASELINES,
            supports_mixed_precision=False,
        )

    return make_task


PROTOCOL = StandardProtocol()
INS_TASK = TaskDefinition("ins", _task_maker("ins", make_ins, _ins_logits, _ins_canonical_logits), PROTOCOL,
                          "Invertible Neural Skinning: canonical SIREN occupancy behind PINs and LBS")
SNARF_TASK = TaskDefinition("snarf", _task_maker("snarf", make_snarf, _snarf_logits, _snarf_canonical_logits), PROTOCOL,
                            "SNARF: pose-conditioned canonical occupancy")
SNARF_NC_TASK = TaskDefinition(
    "snarf_nc", _task_maker("snarf_nc", functools.partial(make_snarf, pose_conditioned=False), _snarf_logits,
                            _snarf_canonical_logits), PROTOCOL,
    "SNARF-NC: SNARF without pose conditioning",
)
