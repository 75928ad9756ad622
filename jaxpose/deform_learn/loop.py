"""The deform-and-learn loop: registration alternated with training a lifter and a ConvNet regressor.

Iteration k (0-based) runs four stages, each of which writes its result file atomically *last*, so an
interrupted loop resumes at the first stage without one (engine trainings resume from their own
checkpoints):

  lifter        train the cGAN 2D→3D lifter (`lifter_steps_per_iteration` more steps, continuing the
                same engine run), lift the training keypoints → ``iteration_k/lifter.npz``
  registration  register every training image (iteration 0 from the T-pose with unit scales and the
                stiff first-iteration weights; later from the previous ConvNet's predictions)
                → ``iteration_k/registrations.npz``
  regressor     train the ConvNet on the registrations (warm-started from iteration k−1's weights)
                → ``iteration_k/regressor/`` (engine run) and ``iteration_k/regressor.npz`` (its
                predictions on the training images, which initialise the next registration)
  evaluation    the paper's three curves → one row of ``curves.jsonl`` and ``curves.png``:
                ConvNet test MPJPE, lifter test MPJPE, registration train MPJPE (protocol MPJPE, mm)

The loop config (`configs/deform_learn_small.py`) holds the data definition once and the engine
configs of the two networks (`lifter`, `regressor`); `lifter_config` / `regressor_config` derive the
configs that are actually trained, so the data definition cannot diverge between the stages.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose.bodies import BodyModel
from jaxpose.deform_learn import evaluation
from jaxpose.deform_learn.params import PARAM_KEYS, initial_params, predict_points
from jaxpose.deform_learn.registration import FIRST_ITERATION_WEIGHTS, RegistrationConfig, RegistrationWeights, register
from jaxpose.deform_learn.tasks import load_body, load_split, save_model_params
from jaxpose.io.arrays import load_npz
from jaxpose.io.atomic import atomic_save_npz, atomic_write_text
from jaxpose.training.config import config_differences, config_from_dict, config_to_json, save_config
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.registry import build_task
from jaxpose.training.state import merge_model

CURVES_FILE = "curves.jsonl"
CURVES_PNG = "curves.png"
CURVE_NAMES = ("convnet_test_mpjpe_mm", "lifter_test_mpjpe_mm", "registration_train_mpjpe_mm")
_LOOP_CRITICAL = ("data", "body", "lifter", "regressor", "registration", "seed")


class LoopConfigError(ValueError):
    """The loop config is malformed or does not match the run already in the workdir."""


def _say(message: str) -> None:
    print(f"[deform-learn] {message}", file=sys.stderr, flush=True)


# --- configs ----------------------------------------------------------------------------------------------
def lifter_config(config: ml_collections.ConfigDict, iteration: int) -> ml_collections.ConfigDict:
    """The engine config of the lifter after `iteration` + 1 iterations (steps accumulate)."""
    lifter = ml_collections.ConfigDict(config.lifter.to_dict())
    lifter.data = ml_collections.ConfigDict(config.data.to_dict())
    lifter.body = config.body
    lifter.seed = int(config.seed)
    lifter.num_steps = int(config.lifter_steps_per_iteration) * (iteration + 1)
    return lifter


def regressor_config(
    config: ml_collections.ConfigDict, targets: str | None, init_params: str | None, num_steps: int | None = None
) -> ml_collections.ConfigDict:
    """The engine config of one regressor training on the registrations in `targets` (None: ground truth)."""
    regressor = ml_collections.ConfigDict(config.regressor.to_dict())
    regressor.data = ml_collections.ConfigDict(config.data.to_dict())
    regressor.body = config.body
    regressor.seed = int(config.seed)
    regressor.data.targets = "" if targets is None else str(targets)
    regressor.loss.target = "ground_truth" if targets is None else "registration"
    regressor.model.init_params = "" if init_params is None else str(init_params)
    if num_steps is not None:
        regressor.num_steps = int(num_steps)
    return regressor


def registration_config(config: ml_collections.ConfigDict, iteration: int) -> RegistrationConfig:
    """The registration settings of `iteration` (the first iteration uses the stiff weights)."""
    section = config.registration
    weights = RegistrationWeights(**section.weights.to_dict())
    if iteration == 0:
        weights = dataclasses.replace(weights, **FIRST_ITERATION_WEIGHTS)
    return RegistrationConfig(
        num_steps=int(section.num_steps), learning_rate=float(section.learning_rate),
        batch_size=int(section.batch_size), weights=weights,
    )  # fmt: skip


def check_loop_config(config: ml_collections.ConfigDict) -> None:
    """`LoopConfigError` naming what is missing or out of range."""
    for key in ("data", "body", "seed", "num_iterations", "lifter", "regressor", "registration", "lifter_steps_per_iteration"):
        if key not in config:
            raise LoopConfigError(f"the deform-and-learn config has no {key!r} entry")
    if int(config.num_iterations) < 1:
        raise LoopConfigError(f"num_iterations must be at least 1, got {config.num_iterations}")
    if int(config.lifter_steps_per_iteration) < 1:
        raise LoopConfigError(f"lifter_steps_per_iteration must be at least 1, got {config.lifter_steps_per_iteration}")


def _claim_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    """Save the config, or check it against the run already in `workdir` (resume)."""
    path = workdir / "loop_config.json"
    if path.exists():
        saved = config_from_dict(json.loads(path.read_text()))
        diffs = config_differences(saved, config, keys=_LOOP_CRITICAL)
        if diffs:
            raise LoopConfigError(f"{workdir} holds a deform-and-learn run with a different config:\n  " + "\n  ".join(diffs))
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        save_config(config, path)


# --- prediction helpers -----------------------------------------------------------------------------------
def _batched(fn, arrays: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Apply a jitted `fn(batch) -> dict` over the leading axis in fixed-size batches (last one padded)."""
    n = len(next(iter(arrays.values())))
    outputs: list[dict] = []
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n))
        valid = len(index)
        index = np.concatenate([index, np.full(batch_size - valid, index[-1])])
        result = jax.device_get(fn({key: value[index] for key, value in arrays.items()}))
        outputs.append({key: np.asarray(value)[:valid] for key, value in result.items()})
    return {key: np.concatenate([out[key] for out in outputs]) for key in outputs[0]}


def model_predictions(result, task, arrays: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """`task.predict` of a trained engine run (`TrainResult`) on `arrays`, as host arrays."""
    graphdef, params, model_state = result.graphdef, result.state.params, result.state.model_state

    @jax.jit
    def predict(params, model_state, batch):
        return task.predict(merge_model(graphdef, params, model_state), batch)

    return _batched(lambda batch: predict(params, model_state, batch), arrays, batch_size)


def params_joints(body: BodyModel, params: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Camera-frame joints R·X (N, 24, 3), metres, of a batch of θ."""
    fn = jax.jit(jax.vmap(lambda p: predict_points(body, p)["joints_cam"]))
    return _batched(lambda batch: {"joints": fn(batch)}, {k: np.asarray(params[k]) for k in PARAM_KEYS}, batch_size)["joints"]


def mpjpe_of(body: BodyModel, joints: np.ndarray, gt_joints: np.ndarray, bone_length: float) -> float:
    """Mean protocol MPJPE (mm) of (N, J, 3) predicted joints against the ground truth."""
    return float(np.mean(evaluation.protocol_mpjpe(joints, gt_joints, body.parents, bone_length)))


def error_summary(body: BodyModel, joints: np.ndarray, gt_joints: np.ndarray, bone_length: float, prefix: str) -> dict:
    """``{prefix}_mpjpe_mm`` (mean), ``{prefix}_mpjpe_std_mm`` (std over images) and ``{prefix}_pa_mpjpe_mm``."""
    errors = np.asarray(evaluation.protocol_mpjpe(joints, gt_joints, body.parents, bone_length), np.float64)
    return {f"{prefix}_mpjpe_mm": float(errors.mean()), f"{prefix}_mpjpe_std_mm": float(errors.std()),
            f"{prefix}_pa_mpjpe_mm": float(np.mean(evaluation.pa_mpjpe(joints, gt_joints)))}  # fmt: skip


# --- stages -----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class LoopData:
    body: BodyModel
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    bone_length: float


def load_loop_data(config: ml_collections.ConfigDict) -> LoopData:
    body = load_body(config.body)
    train, test = load_split(config, "train"), load_split(config, "test")
    bone_length = evaluation.canonical_bone_length(train["joints_cam"], body.parents, train["subject"])
    return LoopData(body, train, test, bone_length)


def _lifter_stage(config, iteration: int, workdir: pathlib.Path, data: LoopData) -> dict:
    from jaxpose.deform_learn.lifter import lift  # noqa: PLC0415 (the lifter module imports flax; fine at module level too)

    lconfig = lifter_config(config, iteration)
    result = train_and_evaluate(lconfig, workdir / "lifter", show_progress=bool(config.get("show_progress", True)))
    model = merge_model(result.graphdef, result.state.params, result.state.model_state)
    lift_fn = jax.jit(lambda keypoints: lift(model, keypoints))
    depths_train = _batched(lambda b: {"d": lift_fn(b["k"])}, {"k": data.train["keypoints"]}, 256)["d"]
    depths_test = _batched(lambda b: {"d": lift_fn(b["k"])}, {"k": data.test["keypoints"]}, 256)["d"]
    return {"depths_train": depths_train, "depths_test": depths_test}


def lifted_joints_cam(keypoints: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """The lifted skeleton (x, y from the 2D keypoints, z from the lifter) in normalised image units."""
    root = keypoints[:, :1]
    return np.concatenate([keypoints - root, depths[..., None]], axis=-1)


def _registration_stage(config, iteration: int, workdir: pathlib.Path, data: LoopData, depths: np.ndarray) -> dict:
    train = data.train
    if iteration == 0:
        init = _tpose(data.body, train["keypoints"])
    else:
        previous = load_npz(workdir / f"iteration_{iteration - 1}" / "regressor.npz", "regressor predictions")
        init = {key: previous[key] for key in PARAM_KEYS}
    observations = {
        "dense_xy": train["dense_xy"], "dense_vertex": train["dense_vertex"], "dense_valid": train["dense_valid"],
        "keypoints": train["keypoints"], "keypoint_valid": train["keypoint_valid"],
        "depths": depths.astype(np.float32), "depth_valid": np.ones(len(depths), bool),
    }  # fmt: skip
    params, energy = register(data.body, observations, init, registration_config(config, iteration))
    params = {key: np.asarray(value) for key, value in params.items()}
    return {**params, "energy": np.asarray(energy), "depths": observations["depths"], "depth_valid": observations["depth_valid"]}


def _regressor_stage(config, iteration: int, workdir: pathlib.Path, data: LoopData) -> dict:
    directory = workdir / f"iteration_{iteration}"
    previous = workdir / f"iteration_{iteration - 1}" / "regressor_params.npz"
    warm = bool(config.get("warm_start", True)) and iteration > 0
    rconfig = regressor_config(config, directory / "registrations.npz", previous if warm else None)
    task = build_task(rconfig)
    result = train_and_evaluate(rconfig, directory / "regressor", task=task, show_progress=bool(config.get("show_progress", True)))
    save_model_params(merge_model(result.graphdef, result.state.params, result.state.model_state), directory / "regressor_params.npz")
    batch = int(rconfig.eval_batch_size)
    train_pred = model_predictions(result, task, task.make_train_data().arrays, batch)
    test_pred = model_predictions(result, task, task.make_eval_data(None, None).arrays, batch)
    out = {key: train_pred[key] for key in PARAM_KEYS}
    out.update({f"test_{key}": test_pred[key] for key in PARAM_KEYS})
    return out


# --- the loop ---------------------------------------------------------------------------------------------
def _stage(path: pathlib.Path, label: str, compute) -> dict[str, np.ndarray]:
    if path.exists():
        _say(f"{label}: done earlier ({path}), reusing it")
        return load_npz(path, label)
    start = time.perf_counter()
    _say(f"{label}…")
    arrays = compute()
    arrays["seconds"] = np.asarray(time.perf_counter() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(path, **arrays)
    _say(f"{label}: {arrays['seconds']:.1f} s")
    return arrays


def run_loop(config: ml_collections.ConfigDict, workdir, *, data: LoopData | None = None) -> list[dict]:
    """Run (or resume) `config.num_iterations` deform-and-learn iterations in `workdir`.

    Returns the rows of ``curves.jsonl`` (one per iteration): the three MPJPE curves (mm, protocol
    MPJPE) and the seconds of every stage.
    """
    check_loop_config(config)
    workdir = pathlib.Path(workdir)
    _claim_workdir(config, workdir)
    data = load_loop_data(config) if data is None else data
    rows: list[dict] = []
    for iteration in range(int(config.num_iterations)):
        directory = workdir / f"iteration_{iteration}"
        label = f"iteration {iteration + 1}/{int(config.num_iterations)}"
        lifted = _stage(directory / "lifter.npz", f"{label} lifter", lambda: _lifter_stage(config, iteration, workdir, data))
        registered = _stage(
            directory / "registrations.npz", f"{label} registration",
            lambda: _registration_stage(config, iteration, workdir, data, lifted["depths_train"]),
        )  # fmt: skip
        regressed = _stage(directory / "regressor.npz", f"{label} regressor", lambda: _regressor_stage(config, iteration, workdir, data))
        rows.append(_evaluate(iteration, data, lifted, registered, regressed))
    write_curves(rows, workdir)
    return rows


def _tpose(body: BodyModel, keypoints: np.ndarray) -> dict[str, np.ndarray]:
    init = jax.vmap(lambda k: initial_params(k, body))(jnp.asarray(keypoints, jnp.float32))
    return {key: np.asarray(value) for key, value in init.items()}


def _evaluate(iteration: int, data: LoopData, lifted, registered, regressed) -> dict:
    body, length = data.body, data.bone_length
    convnet = params_joints(body, {key: regressed[f"test_{key}"] for key in PARAM_KEYS})
    lifter = lifted_joints_cam(data.test["keypoints"], lifted["depths_test"])
    registration = params_joints(body, {key: registered[key] for key in PARAM_KEYS})
    return {
        "iteration": iteration + 1,
        **error_summary(body, convnet, data.test["joints_cam"], length, "convnet_test"),
        **error_summary(body, lifter, data.test["joints_cam"], length, "lifter_test"),
        **error_summary(body, registration, data.train["joints_cam"], length, "registration_train"),
        # References on the same protocol: the T-pose start, and the ground truth itself (the floor left by
        # rescaling every skeleton to the canonical size).
        "tpose_test_mpjpe_mm": mpjpe_of(body, params_joints(body, _tpose(body, data.test["keypoints"])), data.test["joints_cam"], length),
        "ground_truth_test_mpjpe_mm": mpjpe_of(body, data.test["joints_cam"], data.test["joints_cam"], length),
        "lifter_seconds": float(lifted["seconds"]),
        "registration_seconds": float(registered["seconds"]),
        "regressor_seconds": float(regressed["seconds"]),
    }


def write_curves(rows: list[dict], workdir) -> None:
    """``curves.jsonl`` (one JSON row per iteration) and ``curves.png`` (the three MPJPE curves)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 (heavy; only when a figure is written)

    workdir = pathlib.Path(workdir)
    atomic_write_text(workdir / CURVES_FILE, "".join(json.dumps(row) + "\n" for row in rows))
    figure, axis = plt.subplots(figsize=(5.0, 3.4), dpi=120)
    iterations = [row["iteration"] for row in rows]
    styles = {"convnet_test_mpjpe_mm": ("ConvNet (test)", "tab:blue"), "lifter_test_mpjpe_mm": ("cGAN lifter (test)", "tab:orange"),
              "registration_train_mpjpe_mm": ("registration (train)", "tab:gray")}  # fmt: skip
    for name, (label, color) in styles.items():
        axis.plot(iterations, [row[name] for row in rows], marker="o", label=label, color=color)
    axis.set_xlabel("iteration")
    axis.set_ylabel("MPJPE (mm, scaled skeleton)")
    axis.set_xticks(iterations)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    temp = workdir / (CURVES_PNG + ".tmp.png")
    figure.savefig(temp)
    plt.close(figure)
    temp.replace(workdir / CURVES_PNG)


__all__ = [
    "CURVES_FILE", "CURVES_PNG", "CURVE_NAMES", "LoopConfigError", "LoopData", "check_loop_config",
    "lifter_config", "load_loop_data", "regressor_config", "registration_config", "run_loop", "write_curves",
]
