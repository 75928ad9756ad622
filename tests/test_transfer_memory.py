"""Peak-memory estimates of a 3D-CoreNet transfer and the dense/online choice made from them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxpose.matching import CoreNetIteration, Materialized, OttFixedStep, RowBlocked
from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.pose_transfer.protocol import permuted_forward
from jaxpose.pose_transfer.transfer_memory import (
    OVERHEAD_BYTES,
    CoreNetWidths,
    MatchingMemoryError,
    host_available_bytes,
    matching_bytes,
    peak_bytes,
    plan_matching,
)
from jaxpose.training.config import load_config
from transfer_support import REPO

SMALL = ((32, 64, 128), 64, (128, 64, 32), 2)  # configs/corenet_small.py
TINY = ((8, 8, 16), 16, (16, 16, 16), 1)  # the CLI tests' checkpoint


def _compiled_temp_bytes(widths, n_id: int, n_pose: int, geometry) -> int:
    """XLA's temporary-buffer bytes of the compiled permuted forward pass (the transfer's jitted program)."""
    features, correlation, decoder, blocks = widths
    model = CoreNet(feature_widths=features, num_residual_blocks=blocks, correlation_width=correlation,
                    decoder_widths=decoder, matching_geometry=geometry, rngs=nnx.Rngs(0))  # fmt: skip
    model.eval()
    batch = {"identity": jax.ShapeDtypeStruct((1, n_id, 3), jnp.float32),
             "pose": jax.ShapeDtypeStruct((1, n_pose, 3), jnp.float32),
             "permutation_key": jax.ShapeDtypeStruct((1, 2), jnp.uint32)}  # fmt: skip
    compiled = jax.jit(lambda b: permuted_forward(model, b).output).lower(batch).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("this backend has no memory analysis")
    return int(analysis.temp_size_in_bytes)


@pytest.mark.parametrize("widths", [SMALL, TINY], ids=["small", "tiny"])
@pytest.mark.parametrize("geometry", [Materialized(), RowBlocked(256)], ids=["dense", "online"])
def test_estimate_bounds_the_compiled_program_within_a_factor_two(widths, geometry):
    n_id, n_pose = 1536, 1024
    measured = _compiled_temp_bytes(widths, n_id, n_pose, geometry)
    estimate = peak_bytes(n_id, n_pose, geometry, CoreNetIteration(5), CoreNetWidths(widths[0][-1], widths[1], widths[2]))
    assert measured <= estimate - OVERHEAD_BYTES <= 2 * measured


def test_dense_estimate_counts_three_full_matrices():
    n = 219_000
    assert matching_bytes(n, n, Materialized(), CoreNetIteration(5)) == 3 * n * n * 4  # ≈ 575.5 GB
    assert matching_bytes(n, n, Materialized(), OttFixedStep(5)) == 5 * n * n * 4
    online = matching_bytes(n, n, RowBlocked(1024), CoreNetIteration(5))
    assert online == (3 * 1024 * n + 2 * 214 * n) * 4  # three (block, M) slabs + two passes of column sums


@pytest.mark.parametrize("config_name, online_gb", [("corenet_small", (5, 6)), ("corenet_official", (17, 18.5))])
def test_219k_vertices_choose_online_on_a_64_gb_machine(config_name, online_gb):
    model = load_config(REPO / "configs" / f"{config_name}.py").model
    plan = plan_matching("auto", 219_000, 219_000, CoreNetWidths.from_config(model), block_size=1024, num_iterations=5,
                         available=lambda: 64 * 10**9)  # fmt: skip
    assert plan.name == "online" and plan.dense_bytes > 575 * 10**9
    assert online_gb[0] * 10**9 < plan.online_bytes < online_gb[1] * 10**9


def test_auto_dense_when_comfortable_online_otherwise_and_refusals():
    widths = CoreNetWidths(128, 64, (128, 64, 32))
    plan = lambda requested, free, configured="dense": plan_matching(  # noqa: E731
        requested, 20_000, 20_000, widths, configured=configured, block_size=1024, num_iterations=5,
        available=lambda: free)
    dense = plan("dense", 10**15).dense_bytes
    online = plan("dense", 10**15).online_bytes
    assert plan("auto", 2 * dense).name == "dense"  # exactly 50 %: comfortable
    assert plan("auto", 2 * dense - 1).name == "online"
    assert plan("auto", 2 * dense - 1, configured="ott").name == "ott_online"  # the checkpoint's solver is kept
    with pytest.raises(MatchingMemoryError, match=r"dense matching .* needs ≈ .*--matching online"):
        plan("dense", dense - 1)
    with pytest.raises(MatchingMemoryError, match="even online matching does not fit"):
        plan("auto", online - 1)
    with pytest.raises(MatchingMemoryError, match="converged matching"):
        plan("auto", dense - 1, configured="converged")  # no online variant to fall back to
    with pytest.raises(ValueError, match="unknown matching 'sparse'"):
        plan("sparse", 10**15)


def test_host_available_bytes_reads_meminfo_and_falls_back(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2048 kB\nMemFree:         512 kB\nMemAvailable:    1024 kB\n")
    assert host_available_bytes(str(meminfo)) == 1024 * 1024
    assert host_available_bytes(str(tmp_path / "absent")) > 0  # os.sysconf
