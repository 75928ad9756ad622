"""The engine task `refinement`: train the displacement U-Net on the synthetic refinement dataset.

Config sections (see `configs/refinement_small.py`):
  model: base_width, num_levels, convs_per_level, norm, num_groups, activation, downsample, upsample,
    displacement_scale (the `DisplacementUNet` arguments) and inputs (texture, depth, normals: bools,
    the `InputChannels` of the ablations);
  loss: confidence_weight;
  data: cache_dir (where the generated splits are cached) and synthetic (`SyntheticConfig` fields).

Loss (reconstruction): mean over the batch's valid pixels (rendered and `displacement_valid`) of the
L1 displacement error |Δu| + |Δv| (px), plus `confidence_weight` × the mean over rendered pixels of
the binary cross-entropy between the confidence logit and `displacement_valid`.
Evaluation (per person): endpoint error (px) on valid pixels, the same error of zero displacement
(the initial misalignment), and the accuracy of the confidence (logit > 0) on rendered pixels.
Baseline "zero_displacement": predicts no displacement and logit 0 (every pixel invalid).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxpose.fitting.network_inputs import InputChannels, network_inputs
from jaxpose.fitting.synthetic import SyntheticConfig, dataset_cache_path, load_or_make_dataset
from jaxpose.fitting.unet import DisplacementUNet, split_output
from jaxpose.io.arrays import load_npz
from jaxpose.training.data import ArrayDataset
from jaxpose.training.task import Task

TARGET_KEYS = ("displacement", "displacement_valid")
COLOR_KEYS = ("image", "render_rgb", "render_rgb_untextured", "render_code")  # stored as uint8


def input_channels(model: ml_collections.ConfigDict) -> InputChannels:
    """The `InputChannels` of a `model` config section (its `inputs` subsection; default: all on)."""
    inputs = model.get("inputs", ml_collections.ConfigDict())
    return InputChannels(**{name: bool(inputs.get(name, True)) for name in ("texture", "depth", "normals")})


def make_model(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> DisplacementUNet:
    """The U-Net of a `model` config section."""
    return DisplacementUNet(
        base_width=int(model.base_width), num_levels=int(model.num_levels),
        convs_per_level=int(model.convs_per_level), norm=str(model.norm), num_groups=int(model.num_groups),
        activation=str(model.activation), downsample=str(model.downsample), upsample=str(model.upsample),
        displacement_scale=float(model.displacement_scale), rngs=rngs,
    )  # fmt: skip


def synthetic_config(data: ml_collections.ConfigDict) -> SyntheticConfig:
    """`SyntheticConfig` from `data.synthetic` (lists become tuples; unknown fields raise TypeError)."""
    fields = data.synthetic.to_dict()
    return SyntheticConfig(**{key: tuple(v) if isinstance(v, list) else v for key, v in fields.items()})


def _to_uint8(colors: np.ndarray) -> np.ndarray:
    if colors.dtype == np.uint8:
        return colors
    return np.round(np.clip(np.asarray(colors, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def training_arrays(data, channels: InputChannels) -> dict[str, np.ndarray]:
    """The arrays of a synthetic split that the network and loss read, in compact storage.

    Colours (image, renders, vertex code) become uint8 (`network_inputs` divides by 255), normals
    float16, masks bool; depth and displacement stay float32. About 29 bytes per pixel with every
    input on, against ~120 bytes for the float32 split.
    """
    arrays = {}
    for key in (*channels.required_keys(), *TARGET_KEYS):
        array = np.asarray(data[key])
        if key in COLOR_KEYS:
            array = _to_uint8(array)
        elif key == "render_normals":
            array = array.astype(np.float16)
        elif key in ("render_mask", "displacement_valid"):
            array = array.astype(bool)
        else:
            array = array.astype(np.float32)
        arrays[key] = array
    return arrays


def pixel_masks(batch) -> tuple[jax.Array, jax.Array]:
    """(rendered, valid) float32 (B, H, W): the rendered mask, and rendered ∧ displacement_valid."""
    rendered = jnp.asarray(batch["render_mask"]).astype(jnp.float32)
    valid = rendered * jnp.asarray(batch["displacement_valid"]).astype(jnp.float32)
    return rendered, valid


def pixel_errors(output: jax.Array, batch, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(L1 |Δu| + |Δv|, endpoint error ‖Δ‖) per pixel (B, H, W), float32, 0 where not `valid`."""
    displacement, _ = split_output(output.astype(jnp.float32))
    target = jnp.asarray(batch["displacement"]).astype(jnp.float32)
    error = jnp.where(valid[..., None] > 0, displacement - target, 0.0)  # targets off `valid` may be anything
    l1 = jnp.sum(jnp.abs(error), axis=-1)
    endpoint = jnp.sqrt(jnp.sum(error * error, axis=-1) + 1e-12) * valid
    return l1, endpoint


def confidence_terms(output: jax.Array, batch, rendered: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(BCE, correct) per pixel (B, H, W): cross-entropy of the logit against displacement_valid and
    whether `logit > 0` agrees with it, both 0 off the rendered mask."""
    _, logit = split_output(output.astype(jnp.float32))
    label = jnp.asarray(batch["displacement_valid"]).astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logit, label) * rendered
    correct = ((logit > 0).astype(jnp.float32) == label).astype(jnp.float32) * rendered
    return bce, correct


def _masked_mean(values: jax.Array, weights: jax.Array, axis=None) -> jax.Array:
    return jnp.sum(values, axis=axis) / jnp.maximum(jnp.sum(weights, axis=axis), 1.0)


def refinement_loss(output: jax.Array, batch, confidence_weight: float) -> tuple[jax.Array, dict]:
    """Scalar loss and training metrics of a network output (B, H, W, 3) on `batch` (pooled pixels)."""
    rendered, valid = pixel_masks(batch)
    l1, endpoint = pixel_errors(output, batch, valid)
    bce, correct = confidence_terms(output, batch, rendered)
    l1_loss, bce_loss = _masked_mean(l1, valid), _masked_mean(bce, rendered)
    metrics = {
        "l1_px": l1_loss,
        "confidence_bce": bce_loss,
        "endpoint_error_px": jax.lax.stop_gradient(_masked_mean(endpoint, valid)),
        "confidence_accuracy": jax.lax.stop_gradient(_masked_mean(correct, rendered)),
        "valid_fraction": _masked_mean(valid, rendered),
    }
    return l1_loss + confidence_weight * bce_loss, metrics


def eval_metrics(output: jax.Array, batch) -> dict[str, jax.Array]:
    """Per-person (B,) endpoint error px, zero-displacement error px and confidence accuracy."""
    rendered, valid = pixel_masks(batch)
    _, endpoint = pixel_errors(output, batch, valid)
    _, zero_endpoint = pixel_errors(jnp.zeros_like(output, jnp.float32), batch, valid)
    _, correct = confidence_terms(output, batch, rendered)
    pixels = (-2, -1)
    return {
        "endpoint_error_px": _masked_mean(endpoint, valid, pixels),
        "zero_displacement_error_px": _masked_mean(zero_endpoint, valid, pixels),
        "confidence_accuracy": _masked_mean(correct, rendered, pixels),
    }


def zero_displacement(batch) -> jax.Array:
    """The baseline's output (B, H, W, 3): no displacement, confidence logit 0."""
    return jnp.zeros(jnp.shape(batch["displacement"])[:-1] + (3,), jnp.float32)


def make_train_data(config: ml_collections.ConfigDict, channels: InputChannels) -> ArrayDataset:
    data = load_or_make_dataset(synthetic_config(config.data), "train", str(config.data.cache_dir))
    return ArrayDataset(training_arrays(data, channels))


def make_eval_data(
    config: ml_collections.ConfigDict, channels: InputChannels, data_dir: str | None, list_file: str | None
) -> ArrayDataset:
    """The test split of the config's synthetic data, from `config.data.cache_dir` (generated there if
    missing) or from an existing cache directory `data_dir` (`jaxpose eval --data DIR`)."""
    if list_file is not None:
        raise ValueError("the refinement task has no example lists; evaluate a whole test split (no --list)")
    synthetic = synthetic_config(config.data)
    if data_dir is None:
        data = load_or_make_dataset(synthetic, "test", str(config.data.cache_dir))
    else:
        path = dataset_cache_path(synthetic, "test", data_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no refinement test split for this config in {data_dir} (expected {path.name})")
        data = load_npz(path, "refinement dataset cache")
    return ArrayDataset(training_arrays(data, channels))


def check_config(config: ml_collections.ConfigDict) -> None:
    """ValueError/TypeError naming the field for a config the task cannot use (no data is made)."""
    synthetic = synthetic_config(config.data)
    model = nnx.eval_shape(lambda: make_model(config.model, nnx.Rngs(0)))  # validates the arguments, no compute
    if synthetic.image_size % model.size_multiple:
        raise ValueError(f"config.data.synthetic.image_size {synthetic.image_size} is not divisible by "
                         f"{model.size_multiple} (2^(num_levels − 1), num_levels={config.model.num_levels})")  # fmt: skip
    if float(config.loss.confidence_weight) < 0:
        raise ValueError(f"config.loss.confidence_weight must be >= 0, got {config.loss.confidence_weight}")
    if "cache_dir" not in config.data:
        raise ValueError("config.data.cache_dir is required (where the synthetic splits are cached)")


def make_task(config: ml_collections.ConfigDict) -> Task:
    """The `refinement` task of `config` (sections in the module docstring)."""
    check_config(config)
    channels = input_channels(config.model)
    confidence_weight = float(config.loss.confidence_weight)
    dtype = jnp.bfloat16 if str(config.get("compute_dtype", "float32")) == "bfloat16" else jnp.float32

    def predict(model: DisplacementUNet, batch) -> jax.Array:
        return model(network_inputs(batch, channels, dtype))

    def loss_fn(model: DisplacementUNet, batch, rng) -> tuple[jax.Array, dict]:
        del rng  # deterministic model, no augmentation
        return refinement_loss(predict(model, batch), batch, confidence_weight)

    return Task(
        name="refinement",
        config=config,
        make_model=lambda rngs: make_model(config.model, rngs),
        loss_fn=loss_fn,
        make_train_data=lambda: make_train_data(config, channels),
        make_eval_data=lambda data_dir, list_file: make_eval_data(config, channels, data_dir, list_file),
        predict=predict,
        eval_metrics=eval_metrics,
        baselines={"zero_displacement": zero_displacement},
    )
