"""The canonical star pose and rectified bone transforms (jaxpose.bodies.canonical)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose.bodies import default_body, forward, rectified_bone_transforms, sample_pose, star_pose
from jaxpose.geometry.lbs import lbs_points


@pytest.fixture(scope="module")
def body():
    return default_body("low")


def test_star_pose_is_snarfs():
    pose = star_pose()
    assert pose.shape == (24, 3)
    np.testing.assert_allclose(pose[1], [0, 0, np.pi / 6], rtol=1e-6)
    np.testing.assert_allclose(pose[2], [0, 0, -np.pi / 6], rtol=1e-6)
    assert np.count_nonzero(pose) == 2


def test_rectified_transforms_map_canonical_frames_to_posed_frames(body):
    betas = jnp.zeros(4)
    star = star_pose()
    assert star[1, 2] == pytest.approx(np.pi / 6) and star[2, 2] == pytest.approx(-np.pi / 6)
    poses = jnp.asarray(sample_pose(1, "wide", num_samples=2), jnp.float32)
    rect = np.asarray(rectified_bone_transforms(body, betas, poses, star))
    assert rect.shape == (2, 24, 4, 4)
    world_pose = np.asarray(forward(body, betas, poses).transforms, np.float64)
    world_star = np.asarray(forward(body, betas, star).transforms, np.float64)
    np.testing.assert_allclose(np.einsum("pjab,jbc->pjac", rect, world_star), world_pose, atol=2e-5)
    identity = np.asarray(rectified_bone_transforms(body, betas, star, star))
    np.testing.assert_allclose(identity, np.broadcast_to(np.eye(4), (24, 4, 4)), atol=1e-6)
    # With the rest pose as canonical pose, forward LBS of the rest mesh is the body's own forward.
    rest = np.asarray(forward(body, betas, jnp.zeros((24, 3))).vertices)
    from_rest = rectified_bone_transforms(body, betas, poses[0], jnp.zeros((24, 3)))
    np.testing.assert_allclose(
        np.asarray(lbs_points(rest, body.weights, from_rest)), np.asarray(forward(body, betas, poses[0]).vertices), atol=2e-5
    )
    with pytest.raises(ValueError, match="canonical_pose"):
        rectified_bone_transforms(body, betas, poses, star[:5])
