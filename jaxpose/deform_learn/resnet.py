"""The deform-and-learn regressor: a ResNet in Flax NNX from an image to the 105-d θ vector.

    image (B, H, W, C) ── stem: 7×7 conv stride 2 → norm → ReLU → 3×3 max-pool stride 2
                      ── stage 0 … stage S−1 (residual blocks; stages ≥ 1 start with stride 2)
                      ── global average pool ── linear head ── θ vector (B, 105)

Blocks are "basic" (two 3×3 convolutions, ResNet-18/34) or "bottleneck" (1×1 → 3×3 → 1×1 with 4×
expansion, ResNet-50/101; the stride sits on the 3×3 convolution as in "ResNet v1.5"). A block whose
input and output differ in width or stride has a 1×1 projection shortcut with its own norm.

Normalisation is GroupNorm (or none): no running statistics, so a train step is a pure function of
(parameters, batch) and evaluation equals training mode. With `zero_init_residual` the last norm of
every residual branch starts with scale 0, so each block starts as the identity (Goyal et al.,
"Accurate, large minibatch SGD"); this keeps a deep GroupNorm ResNet trainable from scratch.

Head (reconstruction: the paper names ResNet-50 and the regressed θ, not the head): a linear layer on
the pooled features whose kernel starts at zero and whose bias is `output_bias`, so the network's
output at initialisation is exactly that vector (the task passes the mean initial θ). The paper
starts from ImageNet weights; none are bundled here (the free-data default trains from scratch).

Presets (`RESNET_PRESETS`): "resnet50" ([3, 4, 6, 3] bottleneck, width 64: 23.5M backbone
parameters, as torchvision's ResNet-50 without its classifier), "resnet18" ([2, 2, 2, 2] basic,
width 64), "small" ([1, 1, 1, 1] basic, width 16: a CPU-sized network) and "tiny" ([1, 1] basic,
width 8: for tests).
"""

from __future__ import annotations

import dataclasses
import enum
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class BlockKind(enum.Enum):
    BASIC = "basic"
    BOTTLENECK = "bottleneck"


class Norm(enum.Enum):
    GROUP = "group"
    NONE = "none"


def _parse(enum_type: type[enum.Enum], value, what: str):
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(str(value).lower())
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; expected one of {[m.value for m in enum_type]}") from None


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """Architecture of a `ResNet`.

    block: `BlockKind` (or its name); stage_depths: blocks per stage; width: channels of stage 0's
    3×3 convolutions (stage i has width · 2^i; bottleneck outputs are 4× that); norm: `Norm`;
    num_groups: GroupNorm groups (gcd with the channel count is used).
    """

    block: BlockKind = BlockKind.BOTTLENECK
    stage_depths: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    norm: Norm = Norm.GROUP
    num_groups: int = 32
    zero_init_residual: bool = True

    def __post_init__(self):
        object.__setattr__(self, "block", _parse(BlockKind, self.block, "block kind"))
        object.__setattr__(self, "norm", _parse(Norm, self.norm, "norm"))
        depths = tuple(int(d) for d in self.stage_depths)
        object.__setattr__(self, "stage_depths", depths)
        if not depths or min(depths) < 1:
            raise ValueError(f"stage_depths must be a non-empty list of positive ints, got {self.stage_depths}")
        if int(self.width) < 1 or int(self.num_groups) < 1:
            raise ValueError(f"width and num_groups must be >= 1, got {self.width} and {self.num_groups}")

    @property
    def expansion(self) -> int:
        return 4 if self.block is BlockKind.BOTTLENECK else 1

    @property
    def feature_width(self) -> int:
        """Channels of the pooled features (the head's input)."""
        return int(self.width) * 2 ** (len(self.stage_depths) - 1) * self.expansion


RESNET_PRESETS: dict[str, ResNetSpec] = {
    "resnet50": ResNetSpec(BlockKind.BOTTLENECK, (3, 4, 6, 3), 64),
    "resnet18": ResNetSpec(BlockKind.BASIC, (2, 2, 2, 2), 64),
    "small": ResNetSpec(BlockKind.BASIC, (1, 1, 1, 1), 16, num_groups=8),
    "tiny": ResNetSpec(BlockKind.BASIC, (1, 1), 8, num_groups=4),
}


def resnet_spec(preset: str | None = None, **overrides) -> ResNetSpec:
    """A preset's spec (`RESNET_PRESETS`) with fields replaced by the non-None `overrides`; no preset
    (None or "custom") starts from the `ResNetSpec` defaults."""
    if preset in (None, "", "custom"):
        base = ResNetSpec()
    elif preset in RESNET_PRESETS:
        base = RESNET_PRESETS[preset]
    else:
        raise ValueError(f"unknown ResNet preset {preset!r}; expected one of {sorted(RESNET_PRESETS)} or 'custom'")
    fields = {k: v for k, v in overrides.items() if v is not None}
    if "stage_depths" in fields:
        fields["stage_depths"] = tuple(fields["stage_depths"])
    return dataclasses.replace(base, **fields)


def _conv(c_in: int, c_out: int, kernel: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    # He (fan-out) initialisation, no bias (a norm follows), as torchvision's ResNet.
    init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
    return nnx.Conv(c_in, c_out, (kernel, kernel), strides=stride, padding=(kernel - 1) // 2 if kernel > 1 else 0,
                    use_bias=False, kernel_init=init, rngs=rngs)  # fmt: skip


class _Norm(nnx.Module):
    """GroupNorm with gcd(num_groups, channels) groups, or the identity for `Norm.NONE`."""

    def __init__(self, channels: int, spec: ResNetSpec, zero_scale: bool, rngs: nnx.Rngs):
        scale_init = nnx.initializers.zeros_init() if zero_scale else nnx.initializers.ones_init()
        self.norm = nnx.data(
            nnx.GroupNorm(channels, num_groups=math.gcd(int(spec.num_groups), channels), scale_init=scale_init,
                          rngs=rngs) if spec.norm is Norm.GROUP else None
        )  # fmt: skip

    def __call__(self, x: jax.Array) -> jax.Array:
        return x if self.norm is None else self.norm(x)


class ResidualBlock(nnx.Module):
    """One basic or bottleneck block: (B, H, W, c_in) → (B, H/stride, W/stride, width · expansion)."""

    def __init__(self, c_in: int, width: int, stride: int, spec: ResNetSpec, *, rngs: nnx.Rngs):
        c_out = width * spec.expansion
        zero = spec.zero_init_residual
        if spec.block is BlockKind.BASIC:
            self.convs = nnx.List([_conv(c_in, width, 3, stride, rngs), _conv(width, width, 3, 1, rngs)])
            self.norms = nnx.List([_Norm(width, spec, False, rngs), _Norm(width, spec, zero, rngs)])
        else:
            self.convs = nnx.List([_conv(c_in, width, 1, 1, rngs), _conv(width, width, 3, stride, rngs),
                                   _conv(width, c_out, 1, 1, rngs)])  # fmt: skip
            self.norms = nnx.List([_Norm(width, spec, False, rngs), _Norm(width, spec, False, rngs),
                                   _Norm(c_out, spec, zero, rngs)])  # fmt: skip
        project = stride != 1 or c_in != c_out
        self.shortcut = nnx.data(_conv(c_in, c_out, 1, stride, rngs) if project else None)
        self.shortcut_norm = nnx.data(_Norm(c_out, spec, False, rngs) if project else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            residual = norm(conv(residual))
            if i < len(self.convs) - 1:
                residual = jax.nn.relu(residual)
        shortcut = x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))
        return jax.nn.relu(residual + shortcut)


class ResNet(nnx.Module):
    """ResNet regressor (B, H, W, in_channels) float → (B, output_dim).

    Args:
      spec: `ResNetSpec` (see `RESNET_PRESETS`, `resnet_spec`).
      output_bias: (output_dim,) the head's initial bias = the network's output at initialisation
        (the head kernel starts at zero).
      in_channels: image channels (3).
    Any H, W ≥ 1 works (the strides round up; pooling is global).
    """

    def __init__(self, spec: ResNetSpec, output_bias, *, in_channels: int = 3, rngs: nnx.Rngs):
        if not isinstance(spec, ResNetSpec):
            raise TypeError(f"spec must be a ResNetSpec, got {type(spec).__name__}")
        bias = np.asarray(output_bias, np.float32)
        if bias.ndim != 1 or bias.shape[0] < 1:
            raise ValueError(f"output_bias must be a non-empty vector (D,), got shape {bias.shape}")
        self.spec = spec
        self.output_dim = int(bias.shape[0])
        width = int(spec.width)
        self.stem = _conv(int(in_channels), width, 7, 2, rngs)
        self.stem_norm = _Norm(width, spec, False, rngs)
        blocks = []
        c_in = width
        for stage, depth in enumerate(spec.stage_depths):
            stage_width = width * 2**stage
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(ResidualBlock(c_in, stage_width, stride, spec, rngs=rngs))
                c_in = stage_width * spec.expansion
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c_in, self.output_dim, kernel_init=nnx.initializers.zeros_init(),
                               bias_init=lambda *_: jnp.asarray(bias), rngs=rngs)  # fmt: skip

    def features(self, images: jax.Array) -> jax.Array:
        """(B, H, W, C) → pooled features (B, spec.feature_width)."""
        if images.ndim != 4:
            raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}")
        x = jax.nn.relu(self.stem_norm(self.stem(images)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for block in self.blocks:
            x = block(x)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, images: jax.Array) -> jax.Array:
        """(B, H, W, C) → (B, output_dim)."""
        return self.head(self.features(images))


def count_params(model: nnx.Module) -> int:
    """Number of scalar `nnx.Param` entries of `model` (works on an `nnx.eval_shape` abstract model)."""
    state = nnx.state(model, nnx.Param)
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state)))
