"""The `tiny` task: a small point-cloud regressor that exercises every part of the engine.

Data: each example is a cloud of P points on an ellipsoid (a Fibonacci sphere with random
anisotropic scales and a random rotation, all drawn from the data seed); the target is the fixed
smooth map  f(x) = R x + 0.1 sin(2x)  (R: 30° about the (1, 1, 0) axis), applied per point.
Model: a per-point MLP with a mean-pooled global feature and a spectral-normalised hidden layer (so the
state carries non-Param variables), predicting a residual displacement: y = x + MLP(x).
Metrics (per example, in input units): mean and max point-to-point Euclidean error.
Baselines: "identity" (copy the input cloud) and "rotation_only" (the rigid part R x of the map).
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxpose.io.arrays import open_npz
from jaxpose.io.atomic import atomic_save_npz, atomic_write_text
from jaxpose.training.data import ArrayDataset
from jaxpose.training.protocol import StandardProtocol
from jaxpose.training.task import Task, TaskDefinition


def _axis_angle_matrix(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


TARGET_ROTATION = _axis_angle_matrix([1.0, 1.0, 0.0], np.deg2rad(30.0))  # (3, 3)


def target_map(points):
    """f(x) = R x + 0.1 sin(2x) for points (..., 3); works on NumPy and JAX arrays."""
    xp = jnp if isinstance(points, jax.Array) else np
    rotation = xp.asarray(TARGET_ROTATION, dtype=points.dtype)
    return points @ rotation.T + 0.1 * xp.sin(2.0 * points)


def fibonacci_sphere(num_points: int) -> np.ndarray:
    """(P, 3) nearly uniform unit-sphere points."""
    i = np.arange(num_points) + 0.5
    z = 1.0 - 2.0 * i / num_points
    radius = np.sqrt(1.0 - z * z)
    theta = np.pi * (1.0 + 5**0.5) * i
    return np.stack([radius * np.cos(theta), radius * np.sin(theta), z], axis=-1)


def make_examples(seed: int, count: int, num_points: int) -> dict[str, np.ndarray]:
    """{"inputs", "targets"}: (count, P, 3) float32 each, a pure function of the arguments."""
    rng = np.random.default_rng(seed)
    template = fibonacci_sphere(num_points)
    scales = rng.uniform(0.6, 1.4, size=(count, 1, 3))
    quaternions = rng.normal(size=(count, 4))
    quaternions /= np.linalg.norm(quaternions, axis=-1, keepdims=True)
    w, x, y, z = quaternions.T
    rotations = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )  # (count, 3, 3)
    inputs = np.einsum("nij,npj->npi", rotations, template[None] * scales)
    return {"inputs": inputs.astype(np.float32), "targets": target_map(inputs).astype(np.float32)}


def write_dataset(directory: str | os.PathLike, seed: int, count: int, num_points: int) -> list[str]:
    """Write examples as `<directory>/tiny_<i>.npz` (inputs, targets) and `list.txt`; returns names."""
    directory = pathlib.Path(directory)
    examples = make_examples(seed, count, num_points)
    names = [f"tiny_{i:04d}" for i in range(count)]
    for i, name in enumerate(names):
        atomic_save_npz(directory / f"{name}.npz", inputs=examples["inputs"][i], targets=examples["targets"][i])
    atomic_write_text(directory / "list.txt", "".join(n + "\n" for n in names))
    return names


def load_dataset(directory: str | os.PathLike, list_file: str | os.PathLike | None = None) -> ArrayDataset:
    """Examples from `<directory>/<name>.npz` for the names in `list_file` (default: every .npz)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tiny data directory not found: {directory}")
    if list_file is not None:
        lines = pathlib.Path(list_file).read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    else:
        names = sorted(p.stem for p in directory.glob("*.npz"))
    if not names:
        raise ValueError(f"no tiny examples found in {directory}" + (f" for list {list_file}" if list_file else ""))
    inputs, targets = [], []
    for name in names:
        path = directory / f"{name}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"example {name!r} listed but {path} does not exist")
        with open_npz(path, what="tiny example") as data:
            if "inputs" not in data or "targets" not in data:
                raise ValueError(f"{path}: needs arrays 'inputs' and 'targets', has {sorted(data.files)}")
            x, y = np.asarray(data["inputs"], np.float32), np.asarray(data["targets"], np.float32)
        if x.ndim != 2 or x.shape[1] != 3 or x.shape != y.shape:
            raise ValueError(f"{path}: inputs {x.shape} and targets {y.shape} must both be (P, 3)")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"{path}: contains NaN or infinite values")
        if inputs and x.shape != inputs[0].shape:
            raise ValueError(f"{path}: has {x.shape[0]} points, {names[0]} has {inputs[0].shape[0]}")
        inputs.append(x)
        targets.append(y)
    return ArrayDataset({"inputs": np.stack(inputs), "targets": np.stack(targets)})


class TinyPointRegressor(nnx.Module):
    """Maps a point cloud (B, P, 3) to a point cloud (B, P, 3)."""

    def __init__(self, hidden: int, depth: int, *, rngs: nnx.Rngs):
        if hidden < 1 or depth < 1:
            raise ValueError(f"hidden and depth must be >= 1, got hidden={hidden}, depth={depth}")
        self.embed = nnx.Linear(3, hidden, rngs=rngs)
        self.context = nnx.Linear(hidden, hidden, rngs=rngs)
        self.hidden = nnx.List(
            [nnx.SpectralNorm(nnx.Linear(hidden, hidden, rngs=rngs), rngs=rngs) for _ in range(depth)]
        )
        self.head = nnx.Linear(hidden, 3, rngs=rngs)

    def __call__(self, points: jax.Array) -> jax.Array:
        features = jnp.tanh(self.embed(points))  # (B, P, H)
        features = features + self.context(features.mean(axis=-2, keepdims=True))
        for layer in self.hidden:
            features = jnp.tanh(layer(features))
        return points + self.head(features)


def point_errors(prediction: jax.Array, targets: jax.Array) -> jax.Array:
    """Euclidean error per point, (B, P), computed in float32."""
    diff = prediction.astype(jnp.float32) - targets.astype(jnp.float32)
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def loss_fn(model: TinyPointRegressor, batch, rng) -> tuple[jax.Array, dict]:
    del rng  # the model is deterministic
    prediction = model(batch["inputs"])
    diff = prediction.astype(jnp.float32) - batch["targets"].astype(jnp.float32)
    loss = jnp.mean(jnp.sum(diff * diff, axis=-1))
    return loss, {"mean_point_error": point_errors(prediction, batch["targets"]).mean()}


def predict(model: TinyPointRegressor, batch) -> jax.Array:
    return model(batch["inputs"])


def eval_metrics(prediction: jax.Array, batch) -> dict[str, jax.Array]:
    errors = point_errors(prediction, batch["targets"])
    return {"mean_point_error": errors.mean(axis=-1), "max_point_error": errors.max(axis=-1)}


def make_eval_data(config: ml_collections.ConfigDict, data_dir: str | None, list_file: str | None) -> ArrayDataset:
    """The config's generated evaluation set, or the examples of `data_dir` (restricted to `list_file`)."""
    if data_dir is None:
        if list_file is not None:
            raise ValueError("a --list needs a --data directory")
        d = config.data
        return ArrayDataset(make_examples(int(d.eval_seed), int(d.num_eval), int(d.num_points)))
    return load_dataset(data_dir, list_file)


BASELINES = {
    "identity": lambda batch: batch["inputs"],
    "rotation_only": lambda batch: batch["inputs"] @ jnp.asarray(TARGET_ROTATION.T, batch["inputs"].dtype),
}


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The `tiny` task of `config` (sections model: hidden, depth; data: num_train, num_eval, num_points,
    train_seed, eval_seed). Sizes must be positive (ValueError naming the field)."""
    d = config.data
    for section, key in (("model", "hidden"), ("model", "depth"), ("data", "num_train"), ("data", "num_eval"),
                         ("data", "num_points")):  # fmt: skip
        if int(config[section][key]) <= 0:
            raise ValueError(f"config.{section}.{key} must be positive, got {config[section][key]}")
    return Task(
        name="tiny",
        config=config,
        make_model=lambda rngs: TinyPointRegressor(int(config.model.hidden), int(config.model.depth), rngs=rngs),
        loss_fn=loss_fn,
        make_train_data=lambda: ArrayDataset(make_examples(int(d.train_seed), int(d.num_train), int(d.num_points))),
        make_eval_data=lambda data_dir, list_file: make_eval_data(config, data_dir, list_file),
        predict=predict,
        eval_metrics=eval_metrics,
        baselines=BASELINES,
    )


TINY_TASK = TaskDefinition("tiny", make_task, StandardProtocol(),
                           "per-point MLP learning a rotation plus a smooth warp of ellipsoid point clouds")
