"""Rotation conversions vs float64 scipy, stability near 0 and pi, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from jaxpose.geometry import rotations as rot


def _random_rotvecs(rng, n):
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0.0, np.pi, size=(n, 1))
    return axes * angles


def _wxyz(scipy_quat_xyzw):
    q = np.concatenate([scipy_quat_xyzw[..., 3:], scipy_quat_xyzw[..., :3]], axis=-1)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def _tricky_rotvecs():
    """Rotation vectors at 0, tiny angles, exactly pi and just below pi, about several axes."""
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3], [-3, 1, 1]], float)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = [0.0, 1e-8, 1e-4, 1e-3, np.pi - 1e-6, np.pi - 1e-3, np.pi]
    return np.concatenate([axes * a for a in angles])


def test_round_trips_match_scipy_float64(rng):
    with jax.enable_x64(True):
        aa = _random_rotvecs(rng, 64)
        reference = Rotation.from_rotvec(aa)
        mats = rot.axis_angle_to_matrix(jnp.asarray(aa))
        np.testing.assert_allclose(mats, reference.as_matrix(), atol=1e-13)
        quat = rot.matrix_to_quaternion(mats)
        np.testing.assert_allclose(quat, _wxyz(reference.as_quat()), atol=1e-13)
        np.testing.assert_allclose(rot.axis_angle_to_quaternion(jnp.asarray(aa)), _wxyz(reference.as_quat()), atol=1e-13)
        np.testing.assert_allclose(rot.quaternion_to_matrix(quat), reference.as_matrix(), atol=1e-13)
        np.testing.assert_allclose(rot.matrix_to_axis_angle(mats), aa, atol=1e-12)
        np.testing.assert_allclose(rot.quaternion_to_axis_angle(quat), aa, atol=1e-12)
        six = rot.matrix_to_rotation_6d(mats)
        np.testing.assert_allclose(six, np.concatenate([reference.as_matrix()[..., 0], reference.as_matrix()[..., 1]], -1), atol=1e-13)
        np.testing.assert_allclose(rot.rotation_6d_to_matrix(six), reference.as_matrix(), atol=1e-13)


def test_6d_gram_schmidt_of_a_perturbed_input_is_a_rotation(rng):
    with jax.enable_x64(True):
        six = jnp.asarray(rng.normal(size=(32, 6)))
        mats = np.asarray(rot.rotation_6d_to_matrix(six))
        np.testing.assert_allclose(mats @ np.swapaxes(mats, -1, -2), np.broadcast_to(np.eye(3), mats.shape), atol=1e-13)
        np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-13)
        # The first column is the normalised first 3-vector (Zhou et al.'s construction).
        first = np.asarray(six[:, :3]) / np.linalg.norm(six[:, :3], axis=1, keepdims=True)
        np.testing.assert_allclose(mats[:, :, 0], first, atol=1e-13)


def test_near_zero_and_near_pi_are_accurate():
    aa = _tricky_rotvecs()
    reference = Rotation.from_rotvec(aa)
    with jax.enable_x64(True):
        mats = rot.axis_angle_to_matrix(jnp.asarray(aa))
        np.testing.assert_allclose(mats, reference.as_matrix(), atol=1e-14)
        back = np.array(rot.matrix_to_axis_angle(jnp.asarray(reference.as_matrix())))
    # At exactly pi, +axis and -axis are the same rotation: compare rotations, and angles directly.
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), reference.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), np.linalg.norm(aa, axis=1), atol=1e-9)
    below_pi = np.linalg.norm(aa, axis=1) < np.pi - 1e-7
    # Below pi the vector is unique. Near pi the matrix conditions the axis only to ~eps/(pi - angle).
    np.testing.assert_allclose(back[below_pi], aa[below_pi], atol=1e-9)
    tiny = np.linalg.norm(aa, axis=1) <= 1e-8
    np.testing.assert_allclose(back[tiny], aa[tiny], rtol=1e-6, atol=1e-20)


def test_float32_near_zero_and_pi_stay_finite_and_accurate():
    aa = _tricky_rotvecs().astype(np.float32)
    mats = rot.axis_angle_to_matrix(jnp.asarray(aa))
    back = rot.matrix_to_axis_angle(mats)
    assert np.all(np.isfinite(mats)) and np.all(np.isfinite(back))
    np.testing.assert_allclose(Rotation.from_rotvec(np.asarray(back, np.float64)).as_matrix(), Rotation.from_rotvec(aa.astype(np.float64)).as_matrix(), atol=2e-6)


def test_gradients_at_exactly_zero_are_finite_and_correct():
    zero = jnp.zeros(3)
    jac = jax.jacobian(rot.axis_angle_to_matrix)(zero)
    # dR/domega at 0 is the generator [e_k]x.
    expected = np.stack([np.asarray(rot.skew(jnp.eye(3)[k])) for k in range(3)], axis=-1)
    np.testing.assert_allclose(jac, expected, atol=1e-7)
    for fn in (rot.axis_angle_to_quaternion, lambda v: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(v))):
        assert np.all(np.isfinite(jax.jacobian(fn)(zero)))
    jac_log = jax.jacobian(rot.matrix_to_axis_angle)(jnp.eye(3))
    assert np.all(np.isfinite(jac_log))
    jac_q = jax.jacobian(rot.quaternion_to_axis_angle)(jnp.asarray([1.0, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(jac_q[:, 1:], 2.0 * np.eye(3), atol=1e-6)


@pytest.mark.parametrize("point", ["generic", "small", "zero"])
def test_check_grads(point):
    with jax.enable_x64(True):
        aa = {"generic": jnp.asarray([0.3, -1.1, 0.7]), "small": jnp.asarray([1e-5, -2e-5, 3e-6]), "zero": jnp.zeros(3)}[point]
        check_grads(rot.axis_angle_to_matrix, (aa,), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
        check_grads(rot.axis_angle_to_quaternion, (aa,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
        if point == "generic":
            mat = rot.axis_angle_to_matrix(aa)
            check_grads(rot.matrix_to_axis_angle, (mat,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
            check_grads(rot.rotation_6d_to_matrix, (rot.matrix_to_rotation_6d(mat) + 0.1,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
            check_grads(rot.quaternion_to_matrix, (jnp.asarray([0.9, 0.1, -0.3, 0.2]),), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_batching_and_dispatch(rng):
    aa = jnp.asarray(_random_rotvecs(rng, 8).reshape(2, 4, 3), jnp.float32)
    mats = rot.axis_angle_to_matrix(aa)
    assert mats.shape == (2, 4, 3, 3)
    np.testing.assert_allclose(rot.as_rotation_matrices(aa), mats)
    np.testing.assert_allclose(rot.as_rotation_matrices(mats), mats)
    np.testing.assert_allclose(rot.as_rotation_matrices(rot.matrix_to_quaternion(mats)), mats, atol=1e-6)
    np.testing.assert_allclose(rot.as_rotation_matrices(rot.matrix_to_rotation_6d(mats)), mats, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(rot.axis_angle_to_matrix)(aa.reshape(8, 3)), mats.reshape(8, 3, 3))


def test_wrong_shapes_raise():
    with pytest.raises(ValueError, match="axis_angle"):
        rot.axis_angle_to_matrix(jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="matrix"):
        rot.matrix_to_quaternion(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="rotations must be"):
        rot.as_rotation_matrices(jnp.zeros((4, 5)))
