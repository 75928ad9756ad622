"""`StepwiseWarp`: the row-blocked warp as a host loop of per-block steps equals `ot_warp`."""

from __future__ import annotations

import numpy as np
import pytest

from jaxpose.matching import CoreNetIteration, Materialized, OttFixedStep, RowBlocked, StepwiseWarp, ot_warp


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(200, 8)).astype(np.float32),
            rng.normal(size=(200, 3)).astype(np.float32))  # fmt: skip


@pytest.mark.parametrize("block_size, iterations, blocks_per_step, steps_per_pass", [
    (64, 5, None, 5), (128, 1, None, 3), (512, 3, None, 1), (32, 5, 3, 4), (8, 2, None, 13),
])  # fmt: skip
def test_equals_ot_warp_and_reports_every_step(problem, block_size, iterations, blocks_per_step, steps_per_pass):
    x, y, points = problem
    solver = CoreNetIteration(iterations)
    warp = StepwiseWarp(x, y, points, epsilon=0.05, block_size=block_size, solver=solver, blocks_per_step=blocks_per_step)
    assert warp.num_blocks == -(-300 // min(block_size, 300)) and warp.steps_per_pass == steps_per_pass
    assert warp.num_steps == steps_per_pass * (iterations + 1)
    steps = []
    result = np.asarray(warp.run(lambda: steps.append(1)))
    assert len(steps) == warp.num_steps and result.shape == (300, 3)
    for geometry in (RowBlocked(block_size), Materialized()):
        expected = ot_warp(x, y, points, epsilon=0.05, geometry=geometry, solver=solver)
        np.testing.assert_allclose(result, np.asarray(expected), atol=1e-5)


def test_compiled_steps_give_the_same_result(problem):
    x, y, points = problem
    lazy = StepwiseWarp(x, y, points, block_size=64)
    eager = StepwiseWarp(x, y, points, block_size=64)
    eager.compile()
    np.testing.assert_array_equal(np.asarray(eager.run()), np.asarray(lazy.run()))


def test_rejects_what_ot_warp_rejects(problem):
    x, y, points = problem
    with pytest.raises(TypeError, match="CoreNetIteration"):
        StepwiseWarp(x, y, points, solver=OttFixedStep(5))
    with pytest.raises(ValueError, match="feature widths differ"):
        StepwiseWarp(x[:, :4], y, points)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="x_features contains NaN"):
        StepwiseWarp(bad, y, points)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        StepwiseWarp(x, y, points, block_size=0)
