"""The ott-jax compatibility shim works, and tells us when it is no longer needed."""

import importlib.metadata

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose._ott import SHIM_APPLIED, ott


@pytest.mark.ott
def test_online_pointcloud_runs_with_shim():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(40, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(30, 4)), jnp.float32)
    geom = ott.geometry.pointcloud.PointCloud(x, y, epsilon=0.5, batch_size=16)
    dense = ott.geometry.pointcloud.PointCloud(x, y, epsilon=0.5)
    solve = ott.solvers.linear.sinkhorn.Sinkhorn(min_iterations=5, max_iterations=5)
    out_online = solve(ott.problems.linear.linear_problem.LinearProblem(geom))
    out_dense = solve(ott.problems.linear.linear_problem.LinearProblem(dense))
    np.testing.assert_allclose(out_online.g, out_dense.g, rtol=1e-4, atol=1e-5)


def test_shim_still_needed():
    """If this fails, jax re-exports `is_vmappable` again (or ott stopped using it): drop the shim."""
    version = importlib.metadata.version("ott-jax")
    if version == "0.6.0":
        assert SHIM_APPLIED, "jax exports batching.is_vmappable again: remove the shim in jaxpose/_ott.py"
