"""Assembly of the displacement CNN's 14 input channels from a refinement batch (reconstruction).

Channel layout of `network_inputs(batch, channels)` (B, H, W, 14):

    0:3    image            the photograph, RGB in [0, 1]
    3:6    rendered RGB     the initial estimate rendered with the approximate texture, in [0, 1]
                            (with `texture=False`: rendered with a uniform grey albedo instead)
    6:7    depth            rendered depth (metres) minus the image's mean depth over the rendered
                            mask; 0 on the background
    7:10   normals          camera-frame normals of the rendering (0 on the background)
    10:13  vertex code      unique per-vertex colours of the rendering, in [0, 1]
    13:14  mask             rendered coverage, 1 on the body and 0 on the background

A disabled input (`InputChannels(depth=False)`, `normals=False`) is zeroed but keeps its channels, so
one network definition serves every ablation; the disabled arrays need not be in the batch at all.

Batch keys (leading axis B; the names of `jaxpose.fitting.synthetic`): "image", "render_rgb" (or
"render_rgb_untextured" when `texture=False`), "render_depth", "render_normals", "render_code",
"render_mask". Colour arrays may be float in [0, 1] or uint8 in [0, 255] (compact dataset storage);
the mask may be bool or numeric.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

NUM_INPUT_CHANNELS = 14
CHANNEL_SLICES = {
    "image": slice(0, 3),
    "render_rgb": slice(3, 6),
    "depth": slice(6, 7),
    "normals": slice(7, 10),
    "code": slice(10, 13),
    "mask": slice(13, 14),
}


@dataclasses.dataclass(frozen=True)
class InputChannels:
    """Which renderings of the initial estimate the network sees (the paper's ablations).

    texture: rendered RGB with the approximate texture (False: the untextured, grey-albedo render).
    depth, normals: include the relative depth / the normals (False: those channels are zero).
    """

    texture: bool = True
    depth: bool = True
    normals: bool = True

    def required_keys(self) -> tuple[str, ...]:
        """The batch keys `network_inputs` reads with these channels."""
        keys = ["image", "render_rgb" if self.texture else "render_rgb_untextured", "render_code", "render_mask"]
        if self.depth:
            keys.append("render_depth")
        if self.normals:
            keys.append("render_normals")
        return tuple(keys)


def unit_colors(colors: jax.Array, dtype=jnp.float32) -> jax.Array:
    """Colours as floats in [0, 1]: uint8 storage is divided by 255, float storage is kept."""
    colors = jnp.asarray(colors)
    if jnp.issubdtype(colors.dtype, jnp.integer):
        return colors.astype(dtype) / 255.0
    return colors.astype(dtype)


def relative_depth(depth: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, H, W) depth minus each image's mean depth over `mask`, 0 outside the mask (float32).

    An image with an empty mask gives all zeros.
    """
    mask = mask.astype(jnp.float32)
    depth = depth.astype(jnp.float32) * mask
    count = jnp.sum(mask, axis=(-2, -1), keepdims=True)
    mean = jnp.sum(depth, axis=(-2, -1), keepdims=True) / jnp.maximum(count, 1.0)
    return (depth - mean) * mask


def network_inputs(batch, channels: InputChannels = InputChannels(), dtype=jnp.float32) -> jax.Array:
    """The CNN input (B, H, W, 14) in `dtype` (layout in the module docstring).

    batch: a mapping with the keys of `channels.required_keys()`; image and renders (B, H, W, 3),
      render_depth and render_mask (B, H, W).
    """
    mask = jnp.asarray(batch["render_mask"]).astype(jnp.float32)  # (B, H, W)
    image = unit_colors(batch["image"])
    rendered = unit_colors(batch["render_rgb" if channels.texture else "render_rgb_untextured"])
    code = unit_colors(batch["render_code"])
    zeros3 = jnp.zeros(mask.shape + (3,), jnp.float32)
    if channels.depth:
        depth = relative_depth(jnp.asarray(batch["render_depth"]), mask)[..., None]
    else:
        depth = jnp.zeros(mask.shape + (1,), jnp.float32)
    normals = jnp.asarray(batch["render_normals"]).astype(jnp.float32) if channels.normals else zeros3
    for name, array in (("image", image), ("rendered RGB", rendered), ("render_code", code), ("normals", normals)):
        if array.shape != mask.shape + (3,):
            raise ValueError(f"{name} has shape {array.shape}, expected {mask.shape + (3,)} to match render_mask")
    inputs = jnp.concatenate([image, rendered, depth, normals, code, mask[..., None]], axis=-1)
    return inputs.astype(dtype)
