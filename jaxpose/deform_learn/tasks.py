"""The engine tasks of deform-and-learn: the cGAN lifter and the ConvNet regressor.

"deform_learn_lifter" (`lifter.py`): trains on the 2D keypoints of the synthetic train split; its test
metric is the protocol MPJPE of the lifted skeleton (x, y of the test keypoints, z lifted; normalised
image units — the protocol rescales the skeleton, so units do not matter) against the ground truth.
Baseline "zero_depth": the flat skeleton (every depth 0).

"deform_learn_regressor" (`resnet.py`): image → θ, trained with

    L_conv = α L_regress + β L_dense + γ L_KP          (α = γ = 1, β = 10, the paper's values)

L_regress = Σ_i smoothL1(θ_i − θ̄_i) over the 105 entries of the θ vector (Huber threshold 1, mean
over the batch), against the registration results in `data.targets` (rotation target: the
Gram–Schmidt rotation of the registered raw matrix), or against the ground-truth θ
(`ground_truth_params`) for `loss.target = "ground_truth"`, the fully supervised upper bound.
L_dense, L_KP: the registration terms (`registration.dense_loss`, `keypoint_loss`) of the predicted θ,
with the lifter depths stored next to the targets (or in `data.lifter_depths`) in L_KP.
Test metrics: protocol MPJPE (mm, `evaluation.protocol_mpjpe`, canonical bone length of the train
split's subjects) and PA-MPJPE (mm) of the predicted camera-frame joints R·X. Baseline "initial_params":
the T-pose initial θ of the keypoints (`params.initial_params`).

Config sections (see `configs/deform_learn_{lifter,regressor}_tiny.py`):
  body: "low" | "mid" | "full" (the default body's resolution) or a body model file.
  data: synthetic (the `DeformLearnDataConfig` fields), cache_dir; regressor only: targets (npz of the
    registration θ with leading N = num_train, plus "depths" (N, 24) and "depth_valid" (N,)) and
    lifter_depths (optional npz with "depths" or "depths_train" (N, 24) and optional "depth_valid").
  model (lifter): width, depth, discriminator_width, discriminator_depth.
  model (regressor): preset ("resnet50" | "resnet18" | "small" | "tiny"), optional overrides block,
    stage_depths, width, norm, num_groups; init_params ("" or an npz of `save_model_params`: warm start).
  loss (lifter): azimuth_range_deg, elevation_range_deg.
  loss (regressor): alpha, beta, gamma, target ("registration" | "ground_truth").
"""

from __future__ import annotations

import enum
import functools
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxpose.bodies import default_body
from jaxpose.bodies.files import load_body as load_body_file
from jaxpose.bodies.model import BodyModel
from jaxpose.deform_learn import evaluation
from jaxpose.deform_learn.camera import gram_schmidt
from jaxpose.deform_learn.lifter import Lifter, LifterLossConfig, LifterSpec, lift, lifted_skeleton, lifter_loss
from jaxpose.deform_learn.params import PARAM_KEYS, initial_params, params_to_vector, predict_points, vector_to_params
from jaxpose.deform_learn.registration import dense_loss, keypoint_loss
from jaxpose.deform_learn.resnet import ResNet, resnet_spec
from jaxpose.deform_learn.synthetic import DeformLearnDataConfig, load_or_make_dataset
from jaxpose.io.arrays import load_npz
from jaxpose.io.atomic import atomic_save_npz
from jaxpose.training.data import ArrayDataset
from jaxpose.training.task import Task, TaskDefinition
from jaxpose.training.protocol import StandardProtocol

BODY_RESOLUTIONS = ("low", "mid", "full")
SMOOTH_L1_BETA = 1.0  # Huber threshold of L_regress (PyTorch's smooth_l1_loss default)
REGRESSOR_TRAIN_KEYS = ("image", "dense_xy", "dense_vertex", "dense_valid", "keypoints", "keypoint_valid")


class TargetKind(enum.Enum):
    """What the regressor regresses: the registrations of the loop, or the ground-truth θ (upper bound)."""

    REGISTRATION = "registration"
    GROUND_TRUTH = "ground_truth"


def target_kind(value) -> TargetKind:
    try:
        return TargetKind(str(value).lower())
    except ValueError:
        raise ValueError(f"config.loss.target must be one of {[k.value for k in TargetKind]}, got {value!r}") from None


# --- shared helpers ---------------------------------------------------------------------------------------
def load_body(body) -> BodyModel:
    """The body of a config's `body` entry: a default-body resolution name or a body model file."""
    name = str(body)
    if name in BODY_RESOLUTIONS:
        return default_body(name)
    if not pathlib.Path(name).is_file():
        raise ValueError(f"config.body must be one of {BODY_RESOLUTIONS} or a body model file, got {name!r}")
    return load_body_file(name)


def data_config(data: ml_collections.ConfigDict) -> DeformLearnDataConfig:
    """`DeformLearnDataConfig` from `data.synthetic` (lists become tuples; unknown fields raise TypeError)."""
    if "synthetic" not in data:
        raise ValueError("config.data.synthetic is required (the DeformLearnDataConfig fields)")
    fields = data.synthetic.to_dict()
    return DeformLearnDataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _path_option(section: ml_collections.ConfigDict, key: str) -> str | None:
    value = section.get(key, "")
    return str(value) if value not in (None, "") else None


def check_body_matches_data(config: ml_collections.ConfigDict) -> None:
    """ValueError unless `config.body` names the body the data is rendered with (its dense vertex ids
    index that body): a resolution name must equal `data.synthetic.resolution`."""
    name, resolution = str(config.body), data_config(config.data).resolution
    if name in BODY_RESOLUTIONS and name != resolution:
        raise ValueError(f"config.body {name!r} differs from config.data.synthetic.resolution {resolution!r}: the dense "
                         "labels index the vertices of the body the data was rendered with")  # fmt: skip


def load_split(config: ml_collections.ConfigDict, split: str, cache_dir: str | None = None) -> dict[str, np.ndarray]:
    """The synthetic `split` of a config with `data` and `body` sections, cached in `cache_dir` (default
    `config.data.cache_dir`); rendered with `config.body` when that is a body file."""
    if "cache_dir" not in config.data:
        raise ValueError("config.data.cache_dir is required (where the synthetic splits are cached)")
    check_body_matches_data(config)
    body = None if str(config.body) in BODY_RESOLUTIONS else load_body(config.body)
    return load_or_make_dataset(data_config(config.data), split, str(cache_dir or config.data.cache_dir), body=body)



def _bone_length(train: dict, body: BodyModel) -> float:
    return evaluation.canonical_bone_length(train["joints_cam"], body.parents, train.get("subject"))


def _joint_metrics(pred_joints, gt_joints, parents, bone_length) -> dict[str, jax.Array]:
    pred_joints = jnp.asarray(pred_joints, jnp.float32)
    gt_joints = jnp.asarray(gt_joints, jnp.float32)
    return {
        "mpjpe_mm": evaluation.protocol_mpjpe(pred_joints, gt_joints, parents, bone_length),
        "pa_mpjpe_mm": evaluation.pa_mpjpe(pred_joints, gt_joints),
    }


def _eval_split(config, data_dir: str | None, list_file: str | None, what: str) -> dict[str, np.ndarray]:
    """The test split from `config.data.cache_dir`, or from the cache directory `data_dir` (`jaxpose eval
    --data DIR`; generated there if missing)."""
    if list_file is not None:
        raise ValueError(f"the {what} task has no example lists; evaluate a whole test split (no --list)")
    return load_split(config, "test", data_dir)


# --- model parameter files (warm starts) -------------------------------------------------------------------
def _flat_params(model: nnx.Module):
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(pure)
    names = ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in leaves]
    return state, treedef, names, [leaf for _, leaf in leaves]


def save_model_params(model: nnx.Module, path: str | os.PathLike) -> None:
    """Write every `nnx.Param` of `model` to an npz atomically (key = "/"-joined path, float32 as stored)."""
    _, _, names, leaves = _flat_params(model)
    atomic_save_npz(path, **{name: np.asarray(jax.device_get(leaf)) for name, leaf in zip(names, leaves)})


def load_model_params(model: nnx.Module, path: str | os.PathLike) -> nnx.Module:
    """Set `model`'s parameters (in place) from an npz of `save_model_params`; returns `model`.

    The file must hold exactly the model's parameters with the same shapes (ValueError naming the file
    and the first mismatches otherwise).
    """
    arrays = load_npz(path, "model parameter file")
    state, treedef, names, leaves = _flat_params(model)
    missing = [n for n in names if n not in arrays]
    extra = sorted(set(arrays) - set(names))
    wrong = [f"{n} {arrays[n].shape} (model {tuple(leaf.shape)})" for n, leaf in zip(names, leaves)
             if n in arrays and tuple(arrays[n].shape) != tuple(leaf.shape)]  # fmt: skip
    if missing or extra or wrong:
        raise ValueError(f"{path}: parameters do not match the model (missing {missing[:5]}, unexpected "
                         f"{extra[:5]}, wrong shapes {wrong[:5]}); was it saved from another architecture?")  # fmt: skip
    values = [jnp.asarray(arrays[n], leaf.dtype) for n, leaf in zip(names, leaves)]
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_unflatten(treedef, values))
    nnx.update(model, state)
    return model


# --- the lifter task ---------------------------------------------------------------------------------------
def lifter_spec(model: ml_collections.ConfigDict) -> LifterSpec:
    return LifterSpec(width=int(model.width), depth=int(model.depth), discriminator_width=int(model.discriminator_width),
                      discriminator_depth=int(model.discriminator_depth))  # fmt: skip


def lifter_loss_config(loss: ml_collections.ConfigDict) -> LifterLossConfig:
    return LifterLossConfig(float(loss.azimuth_range_deg), float(loss.elevation_range_deg))


def make_lifter_task(config: ml_collections.ConfigDict) -> Task:
    """The `deform_learn_lifter` task of `config` (sections in the module docstring)."""
    spec, loss_config = lifter_spec(config.model), lifter_loss_config(config.loss)
    check_body_matches_data(config)  # validates the data section without making data
    body = load_body(config.body)
    train_split = functools.cache(lambda: load_split(config, "train"))
    bone_length = functools.cache(lambda: _bone_length(train_split(), body))

    def loss_fn(model: Lifter, batch, rng):
        return lifter_loss(model, batch["keypoints"], rng, loss_config)

    def eval_metrics(depths, batch):
        skeleton = lifted_skeleton(jnp.asarray(batch["keypoints"], jnp.float32), jnp.asarray(depths, jnp.float32))
        return _joint_metrics(skeleton, batch["joints_cam"], body.parents, bone_length())

    def make_eval_data(data_dir, list_file):
        bone_length()  # the canonical size comes from the train split: make sure it exists
        test = _eval_split(config, data_dir, list_file, "deform_learn_lifter")
        return ArrayDataset({k: np.asarray(test[k], np.float32) for k in ("keypoints", "joints_cam")})

    return Task(
        name="deform_learn_lifter",
        config=config,
        make_model=lambda rngs: Lifter(spec, rngs=rngs),
        loss_fn=loss_fn,
        make_train_data=lambda: ArrayDataset({"keypoints": np.asarray(train_split()["keypoints"], np.float32)}),
        make_eval_data=make_eval_data,
        predict=lambda model, batch: lift(model, jnp.asarray(batch["keypoints"], jnp.float32)),
        eval_metrics=eval_metrics,
        baselines={"zero_depth": lambda batch: jnp.zeros(jnp.shape(batch["keypoints"])[:2], jnp.float32)},
        supports_mixed_precision=False,
    )


# --- the regressor task ------------------------------------------------------------------------------------
def regressor_spec(model: ml_collections.ConfigDict):
    overrides = {k: model.get(k) for k in ("block", "stage_depths", "width", "norm", "num_groups")}
    return resnet_spec(str(model.get("preset", "small")), **overrides)


def network_images(images, dtype=jnp.float32) -> jax.Array:
    """uint8 (or [0, 1] float) images (B, H, W, 3) → `dtype` values in [−1, 1]."""
    images = jnp.asarray(images)
    scale = 127.5 if images.dtype == jnp.uint8 else 0.5
    return (images.astype(jnp.float32) / scale - 1.0).astype(dtype)


def target_vectors(params: dict) -> np.ndarray:
    """(N, 105) float32 θ vectors of batched θ targets, the rotation replaced by its Gram–Schmidt rotation."""
    params = {k: jnp.asarray(params[k], jnp.float32) for k in PARAM_KEYS}
    rotation = gram_schmidt(params["rotation"])
    params["rotation"] = jnp.reshape(rotation, rotation.shape[:-2] + (9,))
    return np.asarray(params_to_vector(params), np.float32)


def ground_truth_targets(train: dict, body: BodyModel) -> dict[str, np.ndarray]:
    """The ground-truth θ (`ground_truth_params`) of every training image (upper-bound targets)."""
    from jaxpose.deform_learn.ground_truth import dataset_ground_truth_params  # noqa: PLC0415 (only this variant)

    return dataset_ground_truth_params(body, train)


def _registration_targets(config, num_train: int) -> tuple[dict, np.ndarray, np.ndarray]:
    path = _path_option(config.data, "targets")
    if path is None:
        raise ValueError('config.data.targets is required for loss.target = "registration" (an npz of registrations)')
    arrays = load_npz(path, "registration targets")
    missing = [key for key in PARAM_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path}: registration targets lack arrays {missing} (has {sorted(arrays)})")
    for key in PARAM_KEYS:
        if len(arrays[key]) != num_train:
            raise ValueError(f"{path}: {key} has {len(arrays[key])} rows, the train split has {num_train}")
    depths = arrays.get("depths")
    valid = arrays.get("depth_valid", None if depths is None else np.ones(num_train, bool))
    return {key: arrays[key] for key in PARAM_KEYS}, depths, valid


def _lifter_depths(config, num_train: int, depths, valid) -> tuple[np.ndarray, np.ndarray]:
    path = _path_option(config.data, "lifter_depths")
    if path is not None:
        arrays = load_npz(path, "lifter depths")
        key = "depths" if "depths" in arrays else "depths_train"
        if key not in arrays:
            raise ValueError(f"{path}: lifter depths need a 'depths' or 'depths_train' array (has {sorted(arrays)})")
        depths, valid = arrays[key], arrays.get("depth_valid", np.ones(len(arrays[key]), bool))
    if depths is None:
        return np.zeros((num_train, 24), np.float32), np.zeros(num_train, bool)
    depths, valid = np.asarray(depths, np.float32), np.asarray(valid, bool)
    if depths.shape[0] != num_train or valid.shape != (num_train,):
        raise ValueError(f"lifter depths {depths.shape} / depth_valid {valid.shape} do not match {num_train} train images")
    return depths, valid


def regressor_train_arrays(config, train: dict, body: BodyModel, target: TargetKind) -> dict[str, np.ndarray]:
    """The regressor's training arrays: images (uint8), dense labels, keypoints, depths, θ target vectors."""
    num_train = len(train["image"])
    if target is TargetKind.GROUND_TRUTH:
        params, depths, valid = ground_truth_targets(train, body), None, None
    else:
        params, depths, valid = _registration_targets(config, num_train)
    depths, valid = _lifter_depths(config, num_train, depths, valid)
    arrays = {k: np.asarray(train[k]) for k in REGRESSOR_TRAIN_KEYS}
    arrays["keypoints"] = arrays["keypoints"].astype(np.float32)
    arrays["dense_xy"] = arrays["dense_xy"].astype(np.float32)
    arrays.update(depths=depths, depth_valid=valid, target=target_vectors(params))
    return arrays


def regressor_loss(theta_vector: jax.Array, batch, body: BodyModel, weights: tuple[float, float, float]):
    """(loss, metrics) of predicted θ vectors (B, 105) on a training batch (module docstring)."""
    alpha, beta, gamma = weights
    theta_vector = theta_vector.astype(jnp.float32)
    f32 = lambda key: jnp.asarray(batch[key]).astype(jnp.float32)  # noqa: E731
    regress = jnp.mean(jnp.sum(optax.huber_loss(theta_vector, f32("target"), delta=SMOOTH_L1_BETA), axis=-1))

    def image_terms(vector, dense_xy, dense_vertex, dense_valid, keypoints, keypoint_valid, depths, depth_valid):
        points = predict_points(body, vector_to_params(vector))
        dense = dense_loss(points["vertices_xy"], dense_xy, dense_vertex, dense_valid)
        kp = keypoint_loss(points["joints_xy"], points["joints_depth"], keypoints, depths, keypoint_valid, depth_valid)
        return dense, kp

    dense, kp = jax.vmap(image_terms)(theta_vector, f32("dense_xy"), batch["dense_vertex"], batch["dense_valid"],
                                      f32("keypoints"), batch["keypoint_valid"], f32("depths"), batch["depth_valid"])  # fmt: skip
    dense, kp = jnp.mean(dense), jnp.mean(kp)
    metrics = {"regress": regress, "dense": dense, "keypoint": kp}
    return alpha * regress + beta * dense + gamma * kp, metrics


def make_regressor_task(config: ml_collections.ConfigDict) -> Task:
    """The `deform_learn_regressor` task of `config` (sections in the module docstring)."""
    spec = regressor_spec(config.model)
    target = target_kind(config.loss.get("target", "registration"))
    weights = tuple(float(config.loss[k]) for k in ("alpha", "beta", "gamma"))
    if min(weights) < 0:
        raise ValueError(f"config.loss.alpha/beta/gamma must be >= 0, got {weights}")
    check_body_matches_data(config)
    init_path = _path_option(config.model, "init_params")
    if init_path is not None and not pathlib.Path(init_path).is_file():
        raise FileNotFoundError(f"config.model.init_params: no parameter file {init_path}")
    if target is TargetKind.REGISTRATION and _path_option(config.data, "targets") is None:
        raise ValueError('config.data.targets is required for loss.target = "registration" (an npz of registrations)')
    body = load_body(config.body)
    dtype = jnp.bfloat16 if str(config.get("compute_dtype", "float32")) == "bfloat16" else jnp.float32
    train_split = functools.cache(lambda: load_split(config, "train"))
    bone_length = functools.cache(lambda: _bone_length(train_split(), body))

    @functools.cache
    def mean_initial_vector() -> np.ndarray:
        """The head's initial output: the mean over the train split of the T-pose initial θ (host array;
        computed eagerly even when `make_model` runs under a trace)."""
        with jax.ensure_compile_time_eval():
            init = initial_params(jnp.asarray(train_split()["keypoints"], jnp.float32), body)
            return np.asarray(params_to_vector(init), np.float32).mean(axis=0)

    def make_model(rngs: nnx.Rngs) -> ResNet:
        model = ResNet(spec, mean_initial_vector(), rngs=rngs)
        return model if init_path is None else load_model_params(model, init_path)

    def predict(model: ResNet, batch) -> dict[str, jax.Array]:
        vector = model(network_images(batch["image"], dtype)).astype(jnp.float32)
        return vector_to_params(vector, body.num_joints)

    def loss_fn(model: ResNet, batch, rng):
        del rng  # deterministic model, no augmentation
        vector = model(network_images(batch["image"], dtype))
        return regressor_loss(vector, batch, body, weights)

    def eval_metrics(params, batch):
        joints = jax.vmap(lambda p: predict_points(body, p)["joints_cam"])(params)
        return _joint_metrics(joints, batch["joints_cam"], body.parents, bone_length())

    def make_eval_data(data_dir, list_file):
        bone_length()
        test = _eval_split(config, data_dir, list_file, "deform_learn_regressor")
        return ArrayDataset({"image": np.asarray(test["image"]), "keypoints": np.asarray(test["keypoints"], np.float32),
                             "joints_cam": np.asarray(test["joints_cam"], np.float32)})  # fmt: skip

    def initial_baseline(batch):
        return jax.vmap(lambda k: initial_params(k, body))(jnp.asarray(batch["keypoints"], jnp.float32))

    return Task(
        name="deform_learn_regressor",
        config=config,
        make_model=make_model,
        loss_fn=loss_fn,
        make_train_data=lambda: ArrayDataset(regressor_train_arrays(config, train_split(), body, target)),
        make_eval_data=make_eval_data,
        predict=predict,
        eval_metrics=eval_metrics,
        baselines={"initial_params": initial_baseline},
    )


LIFTER_TASK = TaskDefinition(
    "deform_learn_lifter", make_lifter_task, StandardProtocol(),
    "Deform-and-learn cGAN 2D→3D lifter after Kudo et al. (reconstruction): joint depths from 2D joints without 3D "
    "supervision; scored by the protocol MPJPE of the lifted skeleton",
)  # fmt: skip
REGRESSOR_TASK = TaskDefinition(
    "deform_learn_regressor", make_regressor_task, StandardProtocol(),
    "Deform-and-learn ConvNet (ResNet) regressing the segment-scale body and weak-perspective camera θ from an "
    "image, trained on registrations (or ground truth); scored by the protocol MPJPE",
)  # fmt: skip
