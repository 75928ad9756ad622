"""The pure train/eval steps: data parallelism, carried model state, mixed precision, eval harness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from training_support import host_leaves, tiny_config

from jaxpose.training import evaluation, sharding, step, tiny
from jaxpose.training.data import ArrayDataset, batch_indices, steps_per_epoch
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.optim import make_optimizer
from jaxpose.training.state import create_train_state



def _setup(config, mesh, compute_dtype=jnp.float32):
    task = tiny.make_task(config)
    data = task.make_train_data()
    tx, schedule = make_optimizer(config.optimizer, steps_per_epoch(config.batch_size, len(data)), config.num_steps)
    graphdef, state = create_train_state(task, tx, mesh)
    train_step = step.make_train_step(graphdef, task, tx, schedule, compute_dtype)
    return data, graphdef, state, train_step


def _batch(config, data, step_index, mesh):
    indices = batch_indices(config.seed, step_index, config.batch_size, len(data))
    return sharding.shard_batch(data.take(indices), mesh, config.batch_size)


@pytest.fixture(scope="module")
def config():
    return tiny_config()


def test_eight_device_step_equals_one_device_step(config):
    assert len(jax.devices()) == 8
    results = {}
    for count in (8, 1):
        mesh = sharding.make_mesh(jax.devices()[:count])
        data, _, state, train_step = _setup(config, mesh)
        compiled = step.jit_train_step(train_step, mesh)
        for i in range(3):
            state, metrics = compiled(state, _batch(config, data, i, mesh))
        assert state.params["embed"]["kernel"].sharding.mesh.size == count
        results[count] = (host_leaves(state), host_leaves(metrics))
    for a, b in zip(results[8][0] + results[8][1], results[1][0] + results[1][1]):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_step_carries_spectral_norm_vectors_and_donates_its_input(config):
    mesh = sharding.make_mesh()
    data, _, state, train_step = _setup(config, mesh)
    stats = lambda s: s.model_state["hidden"][0]["batch_stats"]  # noqa: E731
    u_before = np.asarray(stats(state)[("kernel", "u")], np.float64)  # (1, H)
    kernel = np.asarray(state.params["hidden"][0]["layer_instance"]["kernel"], np.float64)  # (H, H)
    compiled = step.jit_train_step(train_step, mesh)
    new_state, metrics = compiled(state, _batch(config, data, 0, mesh))
    assert state.params["embed"]["kernel"].is_deleted()  # the input state was donated
    # One power iteration on the pre-step kernel: v = unit(u K^T), u' = unit(v K), sigma = v K u'^T.
    v = u_before @ kernel.T
    v /= np.linalg.norm(v)
    u_expected = v @ kernel
    u_expected /= np.linalg.norm(u_expected)
    np.testing.assert_allclose(np.asarray(stats(new_state)[("kernel", "u")]), u_expected, rtol=1e-4, atol=1e-6)
    sigma = float((v @ kernel @ u_expected.T)[0, 0])
    assert float(stats(new_state)[("kernel", "sigma")]) == pytest.approx(sigma, rel=1e-4)
    assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))
    assert new_state.params["embed"]["kernel"].sharding.is_fully_replicated


def test_step_is_pure_and_reproducible(config):
    mesh = sharding.make_mesh()
    data, _, state, train_step = _setup(config, mesh)
    compiled = jax.jit(train_step)  # no donation: the input must survive unchanged
    before = host_leaves(state)
    losses = []
    for _ in range(2):
        s = state
        run = []
        for i in range(3):
            s, metrics = compiled(s, _batch(config, data, i, mesh))
            run.append(float(metrics["loss"]))
        losses.append(run)
    assert losses[0] == losses[1]
    for a, b in zip(before, host_leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_compute_keeps_float32_state(config):
    mesh = sharding.make_mesh()
    data, _, state, step32 = _setup(config, mesh)
    _, _, state16, step16 = _setup(config, mesh, jnp.bfloat16)
    batch = _batch(config, data, 0, mesh)
    out32, m32 = jax.jit(step32)(state, batch)
    out16, m16 = jax.jit(step16)(state16, batch)
    for leaf in jax.tree.leaves((out16.params, out16.opt_state, out16.model_state)):
        assert leaf.dtype in (jnp.float32, jnp.int32)
    assert m16["loss"].dtype == jnp.float32
    assert float(m16["loss"]) == pytest.approx(float(m32["loss"]), rel=5e-2)
    assert float(m16["loss"]) != float(m32["loss"])  # bf16 really was used


def test_eval_harness_pads_masks_and_compiles_once():
    mesh = sharding.make_mesh()
    examples = tiny.make_examples(3, 11, 16)  # 11 examples, batch 8: last batch padded
    dataset = ArrayDataset(examples)
    per_example = evaluation.evaluate_predictions(tiny.BASELINES["identity"], tiny.eval_metrics, dataset, mesh, batch_size=8)
    diff = examples["inputs"].astype(np.float64) - examples["targets"].astype(np.float64)
    errors = np.linalg.norm(diff, axis=-1)
    np.testing.assert_allclose(per_example["mean_point_error"], errors.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(per_example["max_point_error"], errors.max(axis=1), rtol=1e-5)
    summary = evaluation.summarize(per_example)["mean_point_error"]
    assert summary.count == 11
    assert summary.std == pytest.approx(errors.mean(axis=1).std(ddof=1), rel=1e-5)

    config = tiny_config()
    _, graphdef, state, _ = _setup(config, mesh)
    evaluator = evaluation.ModelEvaluator.for_task(tiny.make_task(config), graphdef, mesh, batch_size=4)
    evaluator(state.params, state.model_state, dataset)  # 3 batches, one shape
    assert evaluator.num_compilations == 1
    with pytest.raises(KeyError, match="no baseline 'nope'"):
        evaluation.baseline(tiny.make_task(config), "nope")


def test_results_tables():
    results = {
        "run@5": {"err": evaluation.MetricSummary(0.5, 0.1, 3)},
        "baseline:identity": {"err": evaluation.MetricSummary(1.25, 0.0, 3)},
    }
    csv_text = evaluation.to_csv(results).splitlines()
    assert csv_text[0] == "method,err_mean,err_std,n"
    assert csv_text[2] == "baseline:identity,1.25,0.0,3"
    markdown = evaluation.to_markdown(results)
    assert "| run@5 | 0.5 ± 0.1 | 3 |" in markdown
    assert evaluation.format_table(results).splitlines()[0].split() == ["method", "err", "n"]


def test_tiny_task_converges(tmp_path):
    config = tiny_config(num_steps=150, eval_every=150, checkpoint_every=0, log_every=150, model__hidden=32,
                         optimizer__lr=0.01, data__num_train=128)  # fmt: skip
    result = train_and_evaluate(config, tmp_path, show_progress=False)
    mesh = sharding.make_mesh()
    task = tiny.make_task(config)
    evaluator = evaluation.ModelEvaluator.for_task(task, result.graphdef, mesh, batch_size=16)
    eval_data = task.make_eval_data(None, None)
    trained = evaluation.summarize(evaluator(result.state.params, result.state.model_state, eval_data))
    identity = evaluation.summarize(evaluation.evaluate_predictions(task.baselines["identity"], task.eval_metrics, eval_data, mesh, 16))
    rigid = evaluation.summarize(evaluation.evaluate_predictions(task.baselines["rotation_only"], task.eval_metrics, eval_data, mesh, 16))
    assert trained["mean_point_error"].mean < 0.15 * identity["mean_point_error"].mean
    assert trained["mean_point_error"].mean < rigid["mean_point_error"].mean


def test_batch_must_split_evenly_over_devices(tmp_path):
    with pytest.raises(ValueError, match="batch size 12 must be divisible by the 8 devices"):
        train_and_evaluate(tiny_config(batch_size=12), tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="missing required keys: num_steps"):
        config = tiny_config()
        del config["num_steps"]
        train_and_evaluate(config, tmp_path, show_progress=False)
