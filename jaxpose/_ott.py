"""Import point for ott-jax, with a compatibility shim.

ott-jax 0.6.0 calls ``jax.interpreters.batching.is_vmappable``, which jax >= 0.9 no longer re-exports
(upstream ott-jax/ott#700, fixed on ott's main branch, not yet released). Every online
``PointCloud`` (``batch_size`` set) fails without it. We re-export the private function before ott
is used. ``tests/test_ott_compat.py`` fails once the shim is no longer needed, so it can be removed.

Always import ott through this module: ``from jaxpose._ott import ott``.
"""

import jax.interpreters.batching as _public_batching

SHIM_APPLIED = False
if not hasattr(_public_batching, "is_vmappable"):
    from jax._src.interpreters import batching as _private_batching

    _public_batching.is_vmappable = _private_batching.is_vmappable
    SHIM_APPLIED = True

import ott  # noqa: E402
import ott.geometry.costs  # noqa: E402,F401
import ott.geometry.pointcloud  # noqa: E402,F401
import ott.problems.linear.linear_problem  # noqa: E402,F401
import ott.solvers.linear.sinkhorn  # noqa: E402,F401

__all__ = ["ott", "SHIM_APPLIED"]
