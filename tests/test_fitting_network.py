"""The refinement displacement CNN: input assembly, U-Net, loss, task and configs, a short engine run."""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpose.fitting.network_inputs import CHANNEL_SLICES, NUM_INPUT_CHANNELS, InputChannels, network_inputs
from jaxpose.fitting.task import eval_metrics, refinement_loss, training_arrays, zero_displacement
from jaxpose.fitting.unet import DisplacementUNet, split_output
from jaxpose.training.config import apply_overrides, load_config
from jaxpose.training.registry import build_task

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
RUN_CONFIGS = ("refinement_small", "refinement_small_no_texture", "refinement_small_no_depth",
               "refinement_small_no_normals", "refinement_full")  # fmt: skip


def fake_batch(seed: int = 0, batch: int = 2, size: int = 32) -> dict[str, np.ndarray]:
    """Random arrays with the synthetic dataset's keys, shapes and dtypes (B=2, 32×32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.stack([(abs(yy - size / 2) < size / 3 - 2 * i) & (abs(xx - size / 2) < size / 4) for i in range(batch)])
    valid = mask & (rng.uniform(size=mask.shape) < 0.8)
    displacement = rng.normal(0.0, 3.0, (batch, size, size, 2)).astype(np.float32)
    displacement[~valid] = np.nan  # undefined off the valid pixels: the loss must not read it
    return {
        "image": rng.uniform(size=(batch, size, size, 3)).astype(np.float32),
        "render_rgb": rng.uniform(size=(batch, size, size, 3)).astype(np.float32) * mask[..., None],
        "render_rgb_untextured": rng.uniform(size=(batch, size, size, 3)).astype(np.float32) * mask[..., None],
        "render_depth": (rng.uniform(2.5, 3.5, (batch, size, size)) * mask).astype(np.float32),
        "render_normals": (rng.uniform(-1, 1, (batch, size, size, 3)) * mask[..., None]).astype(np.float32),
        "render_code": rng.uniform(size=(batch, size, size, 3)).astype(np.float32) * mask[..., None],
        "render_mask": mask,
        "displacement": displacement,
        "displacement_valid": valid,
    }


def apply(model: nnx.Module, inputs) -> jax.Array:
    """`model(inputs)` compiled as one program (much faster than op-by-op on CPU)."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, inputs)


def tiny_config(**overrides):
    values = [(key.replace("__", "."), str(value)) for key, value in overrides.items()]
    return apply_overrides(load_config(CONFIGS / "refinement_tiny.py"), values)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def test_network_inputs_channel_layout():
    batch = fake_batch()
    inputs = np.asarray(network_inputs(batch, InputChannels()))
    assert inputs.shape == (2, 32, 32, NUM_INPUT_CHANNELS) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[..., CHANNEL_SLICES["image"]], batch["image"])
    np.testing.assert_array_equal(inputs[..., CHANNEL_SLICES["render_rgb"]], batch["render_rgb"])
    np.testing.assert_array_equal(inputs[..., CHANNEL_SLICES["normals"]], batch["render_normals"])
    np.testing.assert_array_equal(inputs[..., CHANNEL_SLICES["code"]], batch["render_code"])
    np.testing.assert_array_equal(inputs[..., 13], batch["render_mask"].astype(np.float32))
    mask, depth = batch["render_mask"], batch["render_depth"]
    for b in range(2):
        expected = np.where(mask[b], depth[b] - depth[b][mask[b]].mean(), 0.0)
        np.testing.assert_allclose(inputs[b, ..., 6], expected, atol=1e-5)
        assert abs(inputs[b, ..., 6][mask[b]].mean()) < 1e-5


@pytest.mark.parametrize("disabled", ["texture", "depth", "normals"])
def test_disabled_inputs_are_replaced_or_zeroed_and_need_no_arrays(disabled):
    batch = fake_batch()
    full = np.asarray(network_inputs(batch, InputChannels()))
    channels = InputChannels(**{disabled: False})
    needed = {key: batch[key] for key in channels.required_keys()}  # the unused arrays may be absent
    inputs = np.asarray(network_inputs(needed, channels))
    changed = {"texture": "render_rgb", "depth": "depth", "normals": "normals"}[disabled]
    for name, channel_slice in CHANNEL_SLICES.items():
        if name != changed:
            np.testing.assert_array_equal(inputs[..., channel_slice], full[..., channel_slice])
    if disabled == "texture":
        np.testing.assert_array_equal(inputs[..., 3:6], batch["render_rgb_untextured"])
    else:
        assert not np.any(inputs[..., CHANNEL_SLICES[changed]])


def test_compact_storage_gives_the_same_inputs():
    batch = fake_batch()
    compact = training_arrays(batch, InputChannels())
    assert compact["image"].dtype == np.uint8 and compact["render_mask"].dtype == bool
    assert compact["render_normals"].dtype == np.float16 and "render_rgb_untextured" not in compact
    np.testing.assert_allclose(network_inputs(compact), network_inputs(batch), atol=0.5 / 255 + 1e-4)  # uint8 rounding


# ---------------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(), dict(norm="none", activation="gelu", downsample="avg_pool",
                                                  upsample="transpose_conv", num_levels=2)])  # fmt: skip
def test_unet_shape_and_zero_initial_displacement(options):
    model = DisplacementUNet(base_width=4, num_levels=options.pop("num_levels", 3), num_groups=2, **options,
                             rngs=nnx.Rngs(0))  # fmt: skip
    output = apply(model, network_inputs(fake_batch()))
    assert output.shape == (2, 32, 32, 3)
    displacement, logit = split_output(output)
    assert displacement.shape == (2, 32, 32, 2) and logit.shape == (2, 32, 32)
    assert not np.any(np.asarray(output))  # zero displacement, confidence 0.5


def test_unet_rejects_bad_sizes_and_options():
    model = DisplacementUNet(base_width=4, num_levels=4, num_groups=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible by 8"):
        model(jnp.zeros((1, 36, 36, 14)))
    with pytest.raises(ValueError, match="norm"):
        DisplacementUNet(norm="batch", rngs=nnx.Rngs(0))


# ---------------------------------------------------------------------------------------------
# Loss and metrics
# ---------------------------------------------------------------------------------------------


def test_loss_matches_a_hand_computation():
    batch = fake_batch(seed=1)
    output = np.random.default_rng(2).normal(0.0, 2.0, (2, 32, 32, 3)).astype(np.float32)
    loss, metrics = refinement_loss(jnp.asarray(output), batch, confidence_weight=0.3)
    rendered, valid_mask = batch["render_mask"], batch["render_mask"] & batch["displacement_valid"]
    error = output[..., :2][valid_mask] - batch["displacement"][valid_mask]
    l1 = np.abs(error).sum(-1).mean()
    logit, label = output[..., 2][rendered], batch["displacement_valid"][rendered].astype(np.float64)
    bce = np.mean(np.log1p(np.exp(-np.abs(logit))) + np.maximum(logit, 0) - logit * label)
    np.testing.assert_allclose(float(loss), l1 + 0.3 * bce, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["endpoint_error_px"]), np.linalg.norm(error, axis=-1).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["confidence_accuracy"]), np.mean((logit > 0) == (label > 0)), rtol=1e-6)


def test_eval_metrics_per_person_and_zero_baseline():
    batch = fake_batch(seed=3)
    zero = zero_displacement(batch)
    assert zero.shape == (2, 32, 32, 3)
    metrics = {k: np.asarray(v) for k, v in eval_metrics(zero, batch).items()}
    assert all(v.shape == (2,) for v in metrics.values())
    np.testing.assert_allclose(metrics["endpoint_error_px"], metrics["zero_displacement_error_px"], rtol=1e-6)
    for b in range(2):
        valid = batch["render_mask"][b] & batch["displacement_valid"][b]
        expected = np.linalg.norm(batch["displacement"][b][valid], axis=-1).mean()
        np.testing.assert_allclose(metrics["zero_displacement_error_px"][b], expected, rtol=1e-5)
    perfect = np.zeros((2, 32, 32, 3), np.float32)
    perfect[..., :2] = np.nan_to_num(batch["displacement"])
    perfect[..., 2] = np.where(batch["displacement_valid"], 5.0, -5.0)
    perfect_metrics = eval_metrics(jnp.asarray(perfect), batch)
    assert np.all(np.asarray(perfect_metrics["endpoint_error_px"]) < 1e-4)
    np.testing.assert_allclose(perfect_metrics["confidence_accuracy"], 1.0)


def test_one_gradient_step_lowers_the_loss():
    task = build_task(tiny_config())
    model = task.make_model(nnx.Rngs(0))
    batch = {k: jnp.asarray(v) for k, v in training_arrays(fake_batch(seed=4), InputChannels()).items()}
    graphdef, params = nnx.split(model)

    def loss_of(p):
        return task.loss_fn(nnx.merge(graphdef, p), batch, jax.random.key(0))[0]

    before, grads = jax.jit(jax.value_and_grad(loss_of))(params)
    tx = optax.adam(1e-2)
    updates, _ = tx.update(grads, tx.init(params), params)
    after = jax.jit(loss_of)(optax.apply_updates(params, updates))
    assert math.isfinite(float(before)) and float(after) < float(before)


# ---------------------------------------------------------------------------------------------
# Task and configs
# ---------------------------------------------------------------------------------------------


def test_task_builds_from_the_tiny_config():
    task = build_task(tiny_config())
    assert task.name == "refinement" and set(task.baselines) == {"zero_displacement"}
    assert apply(task.make_model(nnx.Rngs(0)), jnp.zeros((1, 32, 32, 14))).shape == (1, 32, 32, 3)


@pytest.mark.parametrize("name", RUN_CONFIGS)
def test_run_configs_validate(name):
    config = load_config(CONFIGS / f"{name}.py")
    build_task(config)  # builds the model, makes no data
    small = load_config(CONFIGS / "refinement_small.py")
    if name.startswith("refinement_small_no_"):
        flipped = name.removeprefix("refinement_small_no_")
        assert config.model.inputs[flipped] is False
        config.model.inputs[flipped] = True
        assert config.to_dict() == small.to_dict()  # exactly one input flipped, same data


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        build_task(tiny_config(data__synthetic__image_size=34))
    with pytest.raises(ValueError, match="confidence_weight"):
        build_task(tiny_config(loss__confidence_weight=-1.0))


# ---------------------------------------------------------------------------------------------
# A short engine run on generated data
# ---------------------------------------------------------------------------------------------


def test_engine_trains_the_tiny_config(tmp_path):
    from jaxpose.training.loop import train_and_evaluate

    config = tiny_config(data__cache_dir=tmp_path / "data", num_steps=4, optimizer__lr=1e-2)
    result = train_and_evaluate(config, tmp_path / "run", show_progress=False)
    assert result.step == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    evaluation = [r for r in records if "eval/endpoint_error_px" in r][-1]
    assert evaluation["eval/zero_displacement_error_px"] > 0 and math.isfinite(evaluation["eval/endpoint_error_px"])
    task = build_task(config)
    train = task.make_train_data()  # now from the cache
    assert len(train) == 16 and train.arrays["image"].dtype == np.uint8
    inputs = np.asarray(network_inputs(train.take(np.arange(2))))
    mask = inputs[..., 13] > 0
    assert mask.any() and abs(inputs[..., 6][mask].mean()) < 1e-3  # depth relative to its mean
