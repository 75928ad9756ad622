"""The displacement CNN: a Flax NNX U-Net from the 14 input channels to a per-pixel 2D displacement
(pixels) and a confidence logit (reconstruction: the paper names a CNN but not its architecture).

    inputs (B, H, W, 14) ── stem conv ── level 0 ─────────────────────────── concat ── level 0 ── head
                                            └─ down ── level 1 ──── concat ── level 1 ─ up ┘
                                                          └─ down ── bottleneck ─ up ┘

Each level is `convs_per_level` 3×3 convolutions (+ GroupNorm unless `norm="none"`, + activation);
level i has `base_width · 2^i` channels. Down-sampling halves H and W (a stride-2 3×3 convolution, or
2×2 average pooling); up-sampling doubles them (nearest resize + 3×3 convolution, or a stride-2
transposed convolution) and the decoder concatenates the encoder's features of the same level.
H and W must be divisible by 2^(num_levels − 1).

The head is a zero-initialised 1×1 convolution, so a fresh network predicts zero displacement and
confidence 0.5; its displacement channels are multiplied by `displacement_scale` so that the typical
±20 px displacements need head outputs of order 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

NORMS = ("group", "none")
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": jax.nn.relu, "gelu": jax.nn.gelu}
DOWNSAMPLES = ("strided_conv", "avg_pool")
UPSAMPLES = ("resize", "transpose_conv")
OUTPUT_CHANNELS = 3  # displacement (u, v) in pixels + confidence logit


def split_output(output: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, H, W, 3) network output → (displacement (B, H, W, 2) px, confidence logit (B, H, W))."""
    return output[..., :2], output[..., 2]


class ConvBlock(nnx.Module):
    """`num_convs` × (3×3 conv → optional GroupNorm → activation): (B, H, W, C_in) → (B, H, W, C_out)."""

    def __init__(self, in_width: int, out_width: int, num_convs: int, norm: str, num_groups: int,
                 activation: str, *, rngs: nnx.Rngs):  # fmt: skip
        widths = [in_width] + [out_width] * num_convs
        self.convs = nnx.List(
            [nnx.Conv(widths[i], widths[i + 1], (3, 3), use_bias=norm == "none", rngs=rngs) for i in range(num_convs)]
        )
        self.norms = nnx.List(
            [nnx.GroupNorm(out_width, num_groups=math.gcd(num_groups, out_width), rngs=rngs) for _ in range(num_convs)]
            if norm == "group" else []
        )  # fmt: skip
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if len(self.norms):
                x = self.norms[i](x)
            x = act(x)
        return x


class Downsample(nnx.Module):
    """(B, H, W, C_in) → (B, H/2, W/2, C_out): stride-2 3×3 conv, or 2×2 average pool then 1×1 conv."""

    def __init__(self, in_width: int, out_width: int, mode: str, *, rngs: nnx.Rngs):
        self.mode = mode
        kernel = (3, 3) if mode == "strided_conv" else (1, 1)
        self.conv = nnx.Conv(in_width, out_width, kernel, strides=2 if mode == "strided_conv" else 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "avg_pool":
            x = nnx.avg_pool(x, (2, 2), strides=(2, 2))
        return self.conv(x)


class Upsample(nnx.Module):
    """(B, H, W, C_in) → (B, 2H, 2W, C_out): nearest resize then 3×3 conv, or a stride-2 transposed conv."""

    def __init__(self, in_width: int, out_width: int, mode: str, *, rngs: nnx.Rngs):
        self.mode = mode
        if mode == "transpose_conv":
            self.conv = nnx.ConvTranspose(in_width, out_width, (2, 2), strides=(2, 2), rngs=rngs)
        else:
            self.conv = nnx.Conv(in_width, out_width, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "resize":
            b, h, w, c = x.shape
            x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")
        return self.conv(x)


class DisplacementUNet(nnx.Module):
    """U-Net (B, H, W, in_channels) → (B, H, W, 3): displacement px (2) and confidence logit (1).

    Args:
      in_channels: input channels (14, see `jaxpose.fitting.network_inputs`).
      base_width: channels of the first level; level i has base_width · 2^i.
      num_levels: resolution levels including the bottleneck (≥ 1; 1 is a plain conv net).
      convs_per_level: 3×3 convolutions per encoder/decoder block.
      norm: "group" (GroupNorm with gcd(num_groups, width) groups) or "none".
      activation: "relu" or "gelu".
      downsample: "strided_conv" or "avg_pool"; upsample: "resize" or "transpose_conv".
      displacement_scale: the head's displacement channels are multiplied by this (pixels).
    """

    def __init__(self, *, in_channels: int = 14, base_width: int = 16, num_levels: int = 4, convs_per_level: int = 2,
                 norm: str = "group", num_groups: int = 8, activation: str = "relu", downsample: str = "strided_conv",
                 upsample: str = "resize", displacement_scale: float = 10.0, rngs: nnx.Rngs):  # fmt: skip
        choices = (("norm", norm, NORMS), ("activation", activation, tuple(ACTIVATIONS)),
                   ("downsample", downsample, DOWNSAMPLES), ("upsample", upsample, UPSAMPLES))  # fmt: skip
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name, value in (("in_channels", in_channels), ("base_width", base_width), ("num_levels", num_levels),
                            ("convs_per_level", convs_per_level), ("num_groups", num_groups)):  # fmt: skip
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not displacement_scale > 0:
            raise ValueError(f"displacement_scale must be positive, got {displacement_scale}")
        self.num_levels = int(num_levels)
        self.displacement_scale = float(displacement_scale)
        widths = [int(base_width) * 2**i for i in range(self.num_levels)]
        block = dict(num_convs=int(convs_per_level), norm=norm, num_groups=int(num_groups), activation=activation)
        self.stem = nnx.Conv(int(in_channels), widths[0], (3, 3), rngs=rngs)
        self.encoder = nnx.List([ConvBlock(widths[i], widths[i], **block, rngs=rngs) for i in range(self.num_levels)])
        self.down = nnx.List(
            [Downsample(widths[i], widths[i + 1], downsample, rngs=rngs) for i in range(self.num_levels - 1)]
        )
        self.up = nnx.List(
            [Upsample(widths[i + 1], widths[i], upsample, rngs=rngs) for i in range(self.num_levels - 1)]
        )
        self.decoder = nnx.List(
            [ConvBlock(2 * widths[i], widths[i], **block, rngs=rngs) for i in range(self.num_levels - 1)]
        )
        self.head = nnx.Conv(widths[0], OUTPUT_CHANNELS, (1, 1), kernel_init=nnx.initializers.zeros_init(),
                             bias_init=nnx.initializers.zeros_init(), rngs=rngs)  # fmt: skip

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (self.num_levels - 1)

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """inputs (B, H, W, C_in) → (B, H, W, 3) = (displacement u, v in px, confidence logit)."""
        if inputs.ndim != 4:
            raise ValueError(f"inputs must be (B, H, W, C), got shape {inputs.shape}")
        height, width = inputs.shape[1:3]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"image size {height}×{width} is not divisible by {self.size_multiple} "
                             f"(2^(num_levels − 1) for num_levels={self.num_levels})")  # fmt: skip
        x = self.stem(inputs)
        skips = []
        for level in range(self.num_levels):
            x = self.encoder[level](x)
            if level < self.num_levels - 1:
                skips.append(x)
                x = self.down[level](x)
        for level in reversed(range(self.num_levels - 1)):
            x = self.up[level](x)
            x = self.decoder[level](jnp.concatenate([x, skips[level]], axis=-1))
        raw = self.head(x)
        scale = jnp.asarray([self.displacement_scale, self.displacement_scale, 1.0], raw.dtype)
        return raw * scale.reshape(1, 1, 1, OUTPUT_CHANNELS)
