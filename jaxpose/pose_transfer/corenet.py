"""3D-CoreNet (Song et al., NeurIPS 2021): correspondence by optimal transport, then ElaIN refinement.

Architecture (see ``docs/pose_transfer.md``), channels-last ``(B, N, C)``:

1. Per-vertex features (shared for identity and pose): pointwise 3→64→128→256 with instance norm
   and LeakyReLU(0.2) (none after the last norm), per-vertex L2 normalisation, then four residual
   blocks ``PReLU(IN(lin(PReLU(IN(lin(x))))) + x)`` with one shared PReLU slope per block.
2. θ, φ: pointwise 256→256 maps of identity / pose features; ``jaxpose.matching.ot_warp`` normalises
   them, runs the 5-step Sinkhorn at ε = 0.03 and warps the pose vertices onto the identity vertices
   (the geometry and solver of the matching are ``jaxpose.matching`` objects).
3. Refinement decoder on the warp, conditioned on the identity features through ElaIN:
   fc (vertex-axis conv, kernel 3) → lin → ElaIN-ResBlock → lin → block → lin → block → lin → 2·tanh.

Init: xavier-normal with gain 0.02 on every conv/linear kernel, zero biases, PReLU slopes 0.25.

Training vs evaluation: the spectral-norm layers run one power iteration per forward pass in
training mode (the default); call ``model.eval()`` for inference (and ``model.train()`` to go back).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpose.matching import CoreNetIteration, Geometry, Materialized, Solver, ot_warp
from jaxpose.matching.choices import check_geometry, check_solver
from jaxpose.pose_transfer._validation import check_pose_transfer_inputs
from jaxpose.pose_transfer.outputs import PoseTransferOutput
from jaxpose.nn import init as initializers
from jaxpose.nn.norms import ElaIN, instance_norm, l2_normalize
from jaxpose.nn.pointwise import PointwiseLinear, VertexConv
from jaxpose.nn.spectral import SpectralNormConv

LEAKY_SLOPE = 0.2
PRELU_INIT = 0.25


class ResidualBlock(nnx.Module):
    """lin → IN → PReLU → lin → IN → (+x) → PReLU, one PReLU slope shared by both activations.

    Parameters: ``conv1``, ``conv2`` (width, width); ``prelu_slope`` scalar.
    Call: (..., N, width) -> (..., N, width).
    """

    def __init__(self, width: int, *, kernel_init: initializers.Initializer, rngs: nnx.Rngs):
        self.conv1 = PointwiseLinear(width, width, kernel_init=kernel_init, rngs=rngs)
        self.conv2 = PointwiseLinear(width, width, kernel_init=kernel_init, rngs=rngs)
        self.prelu_slope = nnx.Param(jnp.asarray(PRELU_INIT, jnp.float32))

    def _prelu(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.prelu_slope[...] * x)

    def __call__(self, x: jax.Array) -> jax.Array:
        out = self._prelu(instance_norm(self.conv1(x)))
        out = instance_norm(self.conv2(out))
        return self._prelu(out + x)


class FeatureExtractor(nnx.Module):
    """Pointwise feature network applied to identity and pose points alike.

    Call: xyz (..., N, 3) -> features (..., N, widths[-1]).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256),
        num_residual_blocks: int = 4,
        *,
        kernel_init: initializers.Initializer,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise ValueError(f"feature widths must have 3 entries (official: 64, 128, 256), got {widths}")
        self.widths = widths
        self.layer1 = PointwiseLinear(3, widths[0], kernel_init=kernel_init, rngs=rngs)
        self.layer2 = PointwiseLinear(widths[0], widths[1], kernel_init=kernel_init, rngs=rngs)
        self.layer3 = PointwiseLinear(widths[1], widths[2], kernel_init=kernel_init, rngs=rngs)
        self.residual_blocks = nnx.List(
            [
                ResidualBlock(widths[2], kernel_init=kernel_init, rngs=rngs)
                for _ in range(num_residual_blocks)
            ]
        )

    def __call__(self, xyz: jax.Array) -> jax.Array:
        x = instance_norm(self.layer1(xyz))
        x = instance_norm(self.layer2(jax.nn.leaky_relu(x, LEAKY_SLOPE)))
        x = instance_norm(self.layer3(jax.nn.leaky_relu(x, LEAKY_SLOPE)))
        x = l2_normalize(x)
        for block in self.residual_blocks:
            x = block(x)
        return x


class ElaINResBlock(nnx.Module):
    """ElaIN residual block with equal in/out width.

    shortcut = conv_s(LReLU(norm_s(x, f)))  (conv_s bias-free)
    main     = conv_1(LReLU(norm_1(conv_0(LReLU(norm_0(x, f))), f)))
    out      = shortcut + main;  conv_0, conv_1, conv_s are spectral-normalised.

    Call: x (..., N, width), condition f (..., N, condition_features) -> (..., N, width).
    """

    def __init__(
        self,
        width: int,
        condition_features: int,
        *,
        elastic: bool = True,
        kernel_init: initializers.Initializer,
        rngs: nnx.Rngs,
    ):
        norm = dict(elastic=elastic, kernel_init=kernel_init, rngs=rngs)
        self.norm_0 = ElaIN(width, condition_features, **norm)
        self.norm_1 = ElaIN(width, condition_features, **norm)
        self.norm_s = ElaIN(width, condition_features, **norm)
        self.conv_0 = SpectralNormConv(width, width, kernel_init=kernel_init, rngs=rngs)
        self.conv_1 = SpectralNormConv(width, width, kernel_init=kernel_init, rngs=rngs)
        self.conv_s = SpectralNormConv(
            width, width, use_bias=False, kernel_init=kernel_init, rngs=rngs
        )

    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        def act(h):
            return jax.nn.leaky_relu(h, LEAKY_SLOPE)

        shortcut = self.conv_s(act(self.norm_s(x, condition)))
        dx = self.conv_0(act(self.norm_0(x, condition)))
        dx = self.conv_1(act(self.norm_1(dx, condition)))
        return shortcut + dx


class ElaINGenerator(nnx.Module):
    """Refinement decoder: warped xyz + identity features -> refined xyz in (−2, 2).

    Call: warped (..., N, 3), condition (..., N, condition_features) -> (..., N, 3).
    """

    def __init__(
        self,
        widths: Sequence[int] = (1024, 512, 256),
        condition_features: int = 256,
        *,
        fc_kernel: int = 3,
        elastic: bool = True,
        kernel_init: initializers.Initializer,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise ValueError(
                f"decoder widths must have 3 entries (official: 1024, 512, 256), got {widths}"
            )
        if fc_kernel not in (1, 3):
            raise ValueError(f"fc_kernel must be 3 (official) or 1 (permutation-equivariant), got {fc_kernel}")
        self.widths = widths
        linear = dict(kernel_init=kernel_init, rngs=rngs)
        self.fc = VertexConv(3, widths[0], fc_kernel, **linear)
        self.conv1 = PointwiseLinear(widths[0], widths[0], **linear)
        self.conv2 = PointwiseLinear(widths[0], widths[1], **linear)
        self.conv3 = PointwiseLinear(widths[1], widths[2], **linear)
        self.conv4 = PointwiseLinear(widths[2], 3, **linear)
        self.blocks = nnx.List(
            [ElaINResBlock(w, condition_features, elastic=elastic, **linear) for w in widths]
        )

    def __call__(self, warped: jax.Array, condition: jax.Array) -> jax.Array:
        x = self.conv1(self.fc(warped))
        x = self.blocks[0](x, condition)
        x = self.blocks[1](self.conv2(x), condition)
        x = self.blocks[2](self.conv3(x), condition)
        return 2.0 * jnp.tanh(self.conv4(x))


class CoreNet(nnx.Module):
    """3D-CoreNet pose transfer: ``model(identity_xyz, pose_xyz) -> PoseTransferOutput``.

    Args (all keyword):
      feature_widths: widths of the three pointwise feature layers (official 64, 128, 256); the
        last one is also the residual width, the θ/φ input width and the ElaIN condition width.
      num_residual_blocks: residual blocks after the L2 normalisation (official 4).
      correlation_width: θ/φ output width (official 256).
      decoder_widths: widths of the three ElaIN stages (official 1024, 512, 256 = 16·, 8·, 4·ngf).
      fc_kernel: 3 reproduces the official vertex-axis fc (depends on vertex storage order);
        1 makes the whole model permutation-equivariant in the identity vertices.
      use_elain: False is the "w/o ElaIN" ablation: every ElaIN keeps its identity-feature
        modulation but loses the elastic blend with the input's own statistics (w ≡ 1, i.e.
        SPADE-style ``IN(x)·(1+γ_id)+β_id``); the rest of the network is unchanged.
      epsilon, matching_geometry, matching_solver: passed to ``jaxpose.matching.ot_warp`` as
        ``epsilon``, ``geometry``, ``solver`` (official: ε 0.03, ``Materialized()`` — one
        N_id × N_pose kernel — and ``CoreNetIteration(5)``; ``RowBlocked(block_size)`` streams row
        blocks instead; ``jaxpose.matching.matching_from_name`` parses config names).
      init_gain: xavier-normal gain of all kernels (official 0.02).
      residual_output: False (official) decodes absolute coordinates; True adds the decoder's
        bounded output to the OT warp (``output = warped + 2·tanh(·)``). Not in the paper: a
        jaxpose option for short CPU runs, where the absolute decoder (which starts at ≈ 0 with the
        0.02 init) needs far more steps than the budget allows before it even matches its own input.
      rngs: ``nnx.Rngs`` (the ``params`` stream is used).

    Call: identity_xyz (B, N_id, 3), pose_xyz (B, N_pose, 3), bbox-centred, metre scale;
    N_id ≠ N_pose is fine; N_id ≥ 2. Returns ``PoseTransferOutput(output (B, N_id, 3),
    warped (B, N_id, 3))``, both in identity vertex order.
    """

    def __init__(
        self,
        *,
        feature_widths: Sequence[int] = (64, 128, 256),
        num_residual_blocks: int = 4,
        correlation_width: int = 256,
        decoder_widths: Sequence[int] = (1024, 512, 256),
        fc_kernel: int = 3,
        use_elain: bool = True,
        epsilon: float = 0.03,
        matching_geometry: Geometry = Materialized(),
        matching_solver: Solver = CoreNetIteration(5),
        init_gain: float = 0.02,
        residual_output: bool = False,
        rngs: nnx.Rngs,
    ):
        check_geometry(matching_geometry)
        check_solver(matching_solver)
        kernel_init = initializers.xavier_normal(init_gain)
        self.fc_kernel = fc_kernel
        self.use_elain = use_elain
        self.residual_output = bool(residual_output)
        self.epsilon = float(epsilon)
        self.matching_geometry = matching_geometry
        self.matching_solver = matching_solver
        self.feature_extractor = FeatureExtractor(
            feature_widths, num_residual_blocks, kernel_init=kernel_init, rngs=rngs
        )
        feature_width = self.feature_extractor.widths[-1]
        self.theta = PointwiseLinear(
            feature_width, correlation_width, kernel_init=kernel_init, rngs=rngs
        )
        self.phi = PointwiseLinear(feature_width, correlation_width, kernel_init=kernel_init, rngs=rngs)
        self.generator = ElaINGenerator(
            decoder_widths,
            feature_width,
            fc_kernel=fc_kernel,
            elastic=use_elain,
            kernel_init=kernel_init,
            rngs=rngs,
        )

    def features(self, xyz: jax.Array) -> jax.Array:
        """Per-vertex features. xyz (..., N, 3) -> (..., N, feature_widths[-1])."""
        return self.feature_extractor(xyz)

    def warp(self, identity_xyz: jax.Array, pose_xyz: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Correspondence stage only: (warped (B, N_id, 3), identity features (B, N_id, F))."""
        check_pose_transfer_inputs("CoreNet", identity_xyz, pose_xyz, min_vertices=2)
        if identity_xyz.shape == pose_xyz.shape:
            # One pass over both meshes (the network is shared): half the ops, each twice as large,
            # which XLA's CPU backend runs markedly faster (fewer small fusions per step).
            id_features, pose_features = self.features(jnp.stack([identity_xyz, pose_xyz]))
        else:
            id_features = self.features(identity_xyz)
            pose_features = self.features(pose_xyz)
        theta_id = self.theta(id_features)
        phi_pose = self.phi(pose_features)

        def warp_one(theta, phi, points):
            return ot_warp(
                theta,
                phi,
                points,
                epsilon=self.epsilon,
                geometry=self.matching_geometry,
                solver=self.matching_solver,
            )

        warped = jax.vmap(warp_one)(theta_id, phi_pose, pose_xyz)
        return warped, id_features

    def refine(self, warped: jax.Array, id_features: jax.Array) -> jax.Array:
        """Refinement stage only: (B, N_id, 3), (B, N_id, F) -> (B, N_id, 3).

        Absolute coordinates in (−2, 2), or ``warped`` + an offset in (−2, 2) with ``residual_output``.
        """
        refined = self.generator(warped, id_features)
        return warped + refined if self.residual_output else refined

    def __call__(self, identity_xyz: jax.Array, pose_xyz: jax.Array) -> PoseTransferOutput:
        warped, id_features = self.warp(identity_xyz, pose_xyz)
        return PoseTransferOutput(output=self.refine(warped, id_features), warped=warped)
