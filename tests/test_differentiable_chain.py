"""Acceptance test of the one differentiable chain: body shape -> body model -> 3D-CoreNet -> renderer.

An image-space loss (depth with visibility held fixed + soft silhouette, 48 x 48) of
`render(transfer(identity(betas), pose))` is differentiated with `jax.grad` back to the identity's betas
(`jaxpose.fitting.chain`), and the gradient is compared with central finite differences in float64 on
three beta components: relative error < 1e-6 (measured: 3e-9 to 1e-8 at step 1e-5).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.bodies import default_body, forward
from jaxpose.fitting.chain import chain_loss, render_transfer, shape_gradient_through_transfer
from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.render import frame_vertices

SIZE = 48
STEP = 1e-5
RELATIVE_TOLERANCE = 1e-6
CUTOFF = 64.0  # cutoff * sigma > image size: the soft silhouette skips no face, so it is smooth in betas


def _bbox_centre(points):
    return 0.5 * (points.max(axis=0, keepdims=True) + points.min(axis=0, keepdims=True))


@pytest.fixture(scope="module")
def chain():
    """Float64 inputs: a small random-weight 3D-CoreNet (tiny-config width 32), the low-resolution body,
    an identity in the T pose at `betas`, a pose mesh at betas = 0, a camera and a target rendered at
    other betas. Built under the suite's strict rank promotion, as the tests run, so that the compiled
    chain is reused."""
    with jax.enable_x64(True), jax.numpy_rank_promotion("raise"):
        model = CoreNet(feature_widths=(32, 32, 32), num_residual_blocks=2, correlation_width=32,
                        decoder_widths=(32, 32, 32), residual_output=True, rngs=nnx.Rngs(0))  # fmt: skip
        body = default_body("low").astype(np.float64)
        pose = np.zeros((body.num_joints, 3))
        pose[0, 1] = 0.3  # root yaw
        pose[1, 0], pose[4, 0] = -0.4, 0.6  # left hip and knee
        pose[16, 2], pose[17, 2] = -1.1, 1.1  # shoulders: arms down
        betas = jnp.asarray([0.6, -0.4, 0.3, 0.2])
        identity_pose = jnp.zeros((body.num_joints, 3))
        meshes = jax.jit(forward)(body, jnp.stack([betas, jnp.zeros(4)]), jnp.stack([identity_pose, jnp.asarray(pose)]))
        identity_vertices, pose_vertices = meshes.vertices
        # the transferred mesh has roughly the pose mesh's shape, at the identity's bounding-box centre
        framed = pose_vertices - _bbox_centre(pose_vertices) + _bbox_centre(identity_vertices)
        camera = frame_vertices(framed, "front", height=SIZE, width=SIZE, margin=0.15)
        inputs = dict(model=model, body=body, identity_pose=identity_pose, pose_vertices=pose_vertices, camera=camera)
        target = render_transfer(**inputs, betas=betas + jnp.asarray([0.5, 0.3, -0.4, 0.0]), cutoff=CUTOFF)
        return inputs, betas, target


def test_shape_gradient_matches_central_finite_differences(chain):
    inputs, betas, target = chain
    with jax.enable_x64(True):
        targets = dict(target_depth=target.depth, target_silhouette=target.silhouette, cutoff=CUTOFF)
        result = shape_gradient_through_transfer(**inputs, betas=betas, **targets)
        rendered = result.rendered
        assert result.grad_betas.dtype == jnp.float64 and result.grad_betas.shape == (4,)
        assert rendered.vertices.shape == (inputs["body"].num_vertices, 3)
        assert rendered.depth.shape == rendered.silhouette.shape == rendered.face_id.shape == (SIZE, SIZE)
        covered = np.asarray(rendered.face_id >= 0)
        assert 100 < covered.sum() < SIZE * SIZE  # the mesh is in view, with background around it
        assert np.all(np.asarray(rendered.depth)[covered] > 0)
        assert float(result.loss) > 0 and np.all(np.isfinite(np.asarray(result.grad_betas)))

        def loss(b):
            return float(chain_loss(**inputs, betas=b, face_id=rendered.face_id, **targets))

        assert loss(betas) == pytest.approx(float(result.loss), rel=1e-12)
        for index in range(3):
            step = jnp.zeros_like(betas).at[index].set(STEP)
            numeric = (loss(betas + step) - loss(betas - step)) / (2 * STEP)
            analytic = float(result.grad_betas[index])
            assert abs(numeric) > 1e-7, "the loss must depend on this beta for the check to mean anything"
            assert abs(analytic - numeric) <= RELATIVE_TOLERANCE * abs(numeric), (index, analytic, numeric)


def test_chain_rejects_inconsistent_inputs(chain):
    inputs, betas, target = chain
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="target_depth is needed"):
            shape_gradient_through_transfer(**inputs, betas=betas, target_silhouette=target.silhouette)
        with pytest.raises(ValueError, match="target_silhouette must have the image shape"):
            shape_gradient_through_transfer(**inputs, betas=betas, target_depth=target.depth,
                                            target_silhouette=target.silhouette[:-1])  # fmt: skip
        with pytest.raises(ValueError, match="betas must be a float vector"):
            render_transfer(**inputs, betas=jnp.zeros((1, 4)))
        with pytest.raises(ValueError, match="needs a face_id"):
            chain_loss(**inputs, betas=betas, face_id=None, target_depth=target.depth, target_silhouette=target.silhouette)
