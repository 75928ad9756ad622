"""NPT baseline (Wang et al., CVPR 2020): pose encoder + SPAdaIN decoder (docs/pose_transfer.md, "NPT").

Channels-last ``(B, N, C)``.

- Pose encoder: pointwise 3→64→128→1024, each followed by instance norm and ReLU.
  ``variant="maxpool"`` (default, NPT's ``model_maxpool.py``, the one its ``train.py`` trains): max
  over pose vertices, tiled to every identity vertex — works for any N_pose.
  ``variant="original"`` (``model.py``): keeps per-vertex pose features and pairs pose vertex i with
  identity vertex i, so it requires N_id == N_pose and depends on matching vertex order.
- Decoder input: concat(pose feature, identity xyz) = 1027 channels. conv 1027→1027, block(1027),
  conv→513, block(513), conv→256, block(256), conv→3, 2·tanh. Widths follow the original's
  ``b, b // 2, b // 4`` with ``b = pose_widths[-1] + 3``.
- Block: main = SPAdaIN→ReLU→conv→SPAdaIN→ReLU→conv, residual = SPAdaIN→ReLU→conv, out = sum.
  SPAdaIN(x; xyz_id) = IN(x)·conv(xyz_id) + conv(xyz_id). In the max-pool variant every SPAdaIN of
  the first block omits the IN (its input is the tiled constant, which IN would zero).
- Init as the original: kernels N(0, 0.02); biases keep PyTorch's default U(±1/√fan_in).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.pose_transfer._validation import check_pose_transfer_inputs
from jaxpose.pose_transfer.outputs import PoseTransferOutput
from jaxpose.nn import init as initializers
from jaxpose.nn.norms import SPAdaIN, instance_norm
from jaxpose.nn.pointwise import PointwiseLinear

VARIANTS = ("maxpool", "original")


def _npt_linear(in_features: int, out_features: int, stddev: float, rngs: nnx.Rngs):
    return PointwiseLinear(
        in_features,
        out_features,
        kernel_init=initializers.normal(stddev),
        bias_init=initializers.torch_default_bias(in_features),
        rngs=rngs,
    )


class SPAdaINResBlock(nnx.Module):
    """NPT residual block. Call: x (..., N, width), xyz (..., N, 3) -> (..., N, width)."""

    def __init__(self, width: int, *, use_norm: bool, init_stddev: float, rngs: nnx.Rngs):
        norm = dict(
            use_norm=use_norm,
            kernel_init=initializers.normal(init_stddev),
            bias_init=initializers.torch_default_bias(3),
            rngs=rngs,
        )
        self.spadain1 = SPAdaIN(width, 3, **norm)
        self.conv1 = _npt_linear(width, width, init_stddev, rngs)
        self.spadain2 = SPAdaIN(width, 3, **norm)
        self.conv2 = _npt_linear(width, width, init_stddev, rngs)
        self.spadain_res = SPAdaIN(width, 3, **norm)
        self.conv_res = _npt_linear(width, width, init_stddev, rngs)

    def __call__(self, x: jax.Array, xyz: jax.Array) -> jax.Array:
        out = self.conv1(jax.nn.relu(self.spadain1(x, xyz)))
        out = self.conv2(jax.nn.relu(self.spadain2(out, xyz)))
        residual = self.conv_res(jax.nn.relu(self.spadain_res(x, xyz)))
        return out + residual


class NPT(nnx.Module):
    """Neural Pose Transfer: ``model(identity_xyz, pose_xyz) -> PoseTransferOutput(output, None)``.

    Args (keyword):
      variant: "maxpool" (default; any N_pose) or "original" (per-vertex; N_id must equal N_pose).
      pose_widths: pose-encoder widths (official 64, 128, 1024).
      init_stddev: standard deviation of the kernel init (official 0.02).
      rngs: ``nnx.Rngs``.

    Call: identity_xyz (B, N_id, 3), pose_xyz (B, N_pose, 3) -> output (B, N_id, 3) in (−2, 2).
    """

    def __init__(
        self,
        *,
        variant: str = "maxpool",
        pose_widths: Sequence[int] = (64, 128, 1024),
        init_stddev: float = 0.02,
        rngs: nnx.Rngs,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown NPT variant {variant!r}; expected one of {VARIANTS}")
        pose_widths = tuple(int(w) for w in pose_widths)
        if len(pose_widths) != 3:
            raise ValueError(f"pose_widths must have 3 entries (official 64, 128, 1024), got {pose_widths}")
        bottleneck = pose_widths[-1] + 3
        widths = (bottleneck, bottleneck // 2, bottleneck // 4)
        self.variant = variant
        self.decoder_widths = widths
        self.encoder_layers = nnx.List(
            [
                _npt_linear(fan_in, fan_out, init_stddev, rngs)
                for fan_in, fan_out in zip((3,) + pose_widths[:-1], pose_widths)
            ]
        )
        self.conv1 = _npt_linear(widths[0], widths[0], init_stddev, rngs)
        self.conv2 = _npt_linear(widths[0], widths[1], init_stddev, rngs)
        self.conv3 = _npt_linear(widths[1], widths[2], init_stddev, rngs)
        self.conv4 = _npt_linear(widths[2], 3, init_stddev, rngs)
        first_block_norm = variant == "original"
        self.blocks = nnx.List(
            [
                SPAdaINResBlock(w, use_norm=first_block_norm if i == 0 else True,
                                init_stddev=init_stddev, rngs=rngs)
                for i, w in enumerate(widths)
            ]
        )

    def pose_features(self, pose_xyz: jax.Array, num_identity_vertices: int) -> jax.Array:
        """(B, N_pose, 3) -> (B, N_id, pose_widths[-1]): tiled max-pool or per-vertex features."""
        x = pose_xyz
        for layer in self.encoder_layers:
            x = jax.nn.relu(instance_norm(layer(x)))
        if self.variant == "original":
            return x
        pooled = jnp.max(x, axis=-2, keepdims=True)
        return jnp.broadcast_to(pooled, (x.shape[0], num_identity_vertices, x.shape[-1]))

    def __call__(self, identity_xyz: jax.Array, pose_xyz: jax.Array) -> PoseTransferOutput:
        check_pose_transfer_inputs("NPT", identity_xyz, pose_xyz)
        num_identity = identity_xyz.shape[1]
        if self.variant == "original" and pose_xyz.shape[1] != num_identity:
            raise ValueError(
                "NPT variant 'original' pairs pose vertex i with identity vertex i and needs "
                f"N_id == N_pose; got N_id={num_identity}, N_pose={pose_xyz.shape[1]} "
                "(use variant='maxpool' for different vertex counts)"
            )
        x = jnp.concatenate([self.pose_features(pose_xyz, num_identity), identity_xyz], axis=-1)
        x = self.blocks[0](self.conv1(x), identity_xyz)
        x = self.blocks[1](self.conv2(x), identity_xyz)
        x = self.blocks[2](self.conv3(x), identity_xyz)
        return PoseTransferOutput(output=2.0 * jnp.tanh(self.conv4(x)), warped=None)
