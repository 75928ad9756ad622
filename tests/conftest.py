"""Test-suite set-up shared by every test module.

The whole suite runs with 8 simulated CPU devices so that data-parallel code is exercised for real;
single-device code simply runs on device 0. This must happen before JAX is imported anywhere.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

_REPO = pathlib.Path(__file__).resolve().parents[1]

# A persistent compilation cache speeds up repeated local runs. CI checkouts are fresh, so there it
# could only share programs between the two xdist workers, and one CI run aborted inside XLA while
# both workers read and wrote ~7k cache entries: CI (env CI set) runs without it.
if not os.environ.get("CI"):
    jax.config.update("jax_compilation_cache_dir", str(_REPO / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _strict_rank_promotion(request):
    """Silent broadcasting between (V, 3) and (V,) or (3,) arrays is a classic bug source: raise on it.

    ott-jax itself relies on rank promotion, so tests that run ott code are marked `ott`.
    """
    if "ott" in request.keywords:
        yield
        return
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    An xdist worker runs hundreds of modules in one process; without this its compilation caches only
    grow (5+ GB RSS per worker by the end of the suite), and one full-suite run crashed inside XLA
    compilation late in the run. Modules rarely share compiled programs, so this costs little.
    """
    yield
    jax.clear_caches()


@pytest.fixture
def rng():
    """A fresh, seeded NumPy generator per test."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return _REPO


@pytest.fixture(scope="session")
def python3_kernel() -> str:
    """Name of a Jupyter "python3" kernel running this interpreter (installed into sys.prefix if missing)."""
    import sys

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # only the notebook tests need Jupyter

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        if pathlib.Path(spec.argv[0]).exists() or spec.argv[0] in ("python", "python3"):
            return "python3"
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(user=False, prefix=sys.prefix, kernel_name="python3")
    return "python3"
