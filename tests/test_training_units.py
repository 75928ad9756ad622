"""Unit tests of the engine's host-side pieces: sampler, configs, optimisers, registry, logs, tiny data."""

import json
import math

import ml_collections
import numpy as np
import optax
import pytest
from training_support import TINY_CONFIG

from jaxpose.training import config as config_lib
from jaxpose.training import data as data_lib
from jaxpose.training import distributed, logs, optim, registry, tiny


# --- deterministic sampler -------------------------------------------------------------------------
def test_batch_indices_cover_each_epoch_exactly_once():
    num_items, batch_size, seed = 10, 4, 3
    stream = np.concatenate([data_lib.batch_indices(seed, s, batch_size, num_items) for s in range(10)])
    for epoch in range(4):  # 40 positions = 4 full epochs, batches straddle epoch boundaries
        assert sorted(stream[epoch * 10 : (epoch + 1) * 10]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])  # each epoch is reshuffled


def test_batch_indices_is_a_pure_function_of_seed_and_step():
    a = data_lib.batch_indices(7, 123, 8, 50)
    data_lib._epoch_permutation.cache_clear()
    np.testing.assert_array_equal(a, data_lib.batch_indices(7, 123, 8, 50))
    assert not np.array_equal(a, data_lib.batch_indices(8, 123, 8, 50))
    assert data_lib.epoch_of_step(123, 8, 50) == (123 * 8) // 50


@pytest.mark.parametrize("args", [(0, 0, 4, 0), (0, 0, 0, 5), (0, -1, 4, 5)])
def test_batch_indices_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        data_lib.batch_indices(*args)


def test_process_rows_partition_the_global_batch():
    rows = [data_lib.process_rows(12, p, 3) for p in range(3)]
    assert np.concatenate([np.arange(12)[r] for r in rows]).tolist() == list(range(12))
    with pytest.raises(ValueError, match="not divisible"):
        data_lib.process_rows(10, 0, 3)


def test_array_dataset_pads_last_eval_batch_and_validates():
    dataset = data_lib.ArrayDataset({"x": np.arange(5.0)[:, None]})
    batches = list(dataset.eval_batches(2))
    assert [valid for _, valid in batches] == [2, 2, 1]
    np.testing.assert_array_equal(batches[-1][0]["x"][:, 0], [4.0, 4.0])
    with pytest.raises(ValueError, match="leading"):
        data_lib.ArrayDataset({"x": np.zeros((3, 2)), "y": np.zeros((4, 2))})


# --- configs ---------------------------------------------------------------------------------------
def test_overrides_are_typed_by_the_field_they_replace():
    config = config_lib.load_config(TINY_CONFIG)
    path, overrides, rest = config_lib.split_config_args(
        ["--config", "c.py", "--config.optimizer.lr=1e-4", "--config.model.hidden", "7",
         "--config.compute_dtype=bfloat16", "--workdir", "w"]
    )  # fmt: skip
    assert path == "c.py" and rest == ["--workdir", "w"]
    new = config_lib.apply_overrides(config, overrides)
    assert new.optimizer.lr == 1e-4 and isinstance(new.optimizer.lr, float)
    assert new.model.hidden == 7 and isinstance(new.model.hidden, int)
    assert new.compute_dtype == "bfloat16"
    assert config.model.hidden == 32  # the original is not mutated


def test_override_errors_name_the_problem():
    config = ml_collections.ConfigDict({"flag": True, "size": 3, "shape": (1, 2), "opt": {"lr": 0.1}})
    assert config_lib.apply_overrides(config, [("flag", "false")]).flag is False
    assert config_lib.apply_overrides(config, [("shape", "[3, 4]")]).shape == (3, 4)
    with pytest.raises(KeyError, match="did you mean opt.lr"):
        config_lib.apply_overrides(config, [("opt.lrr", "1")])
    with pytest.raises(ValueError, match="expected an integer"):
        config_lib.apply_overrides(config, [("size", "3.5")])
    with pytest.raises(ValueError, match="boolean"):
        config_lib.apply_overrides(config, [("flag", "maybe")])
    with pytest.raises(ValueError, match="section"):
        config_lib.apply_overrides(config, [("opt", "1")])


def test_config_json_round_trip_and_differences(tmp_path):
    config = config_lib.load_config(TINY_CONFIG)
    config_lib.save_config(config, tmp_path / "config.json")
    loaded = config_lib.config_from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert loaded.to_dict() == config.to_dict()
    assert config_lib.config_differences(config, loaded) == []
    wider = config_lib.apply_overrides(config, [("model.hidden", "64"), ("optimizer.lr", "1.0")])
    diffs = config_lib.config_differences(config, wider)
    assert diffs == ["model.hidden: checkpoint has 64, config has 32"]  # lr may change on resume


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        config_lib.load_config(tmp_path / "missing.py")
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="get_config"):
        config_lib.load_config(tmp_path / "bad.py")


# --- optimisers ------------------------------------------------------------------------------------
def _opt(**fields):
    base = dict(name="adam", lr=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, clip_grad_norm=0.0,
                schedule="constant", warmup_steps=0, final_lr_fraction=0.0, constant_epochs=0.0, decay_epochs=0.0)  # fmt: skip
    base.update(fields)
    return ml_collections.ConfigDict(base)


def test_constant_then_linear_decay_per_epoch():
    # 4 steps per epoch: lr constant for 2 epochs (8 steps), then linear to 0 over 2 epochs (8 steps).
    schedule = optim.make_schedule(_opt(schedule="constant_then_linear", constant_epochs=2.0, decay_epochs=2.0), 4.0, 100)
    expected = [0.1 if s <= 8 else max(0.0, 0.1 * (1 - (s - 8) / 8)) for s in range(20)]
    np.testing.assert_allclose([float(schedule(s)) for s in range(20)], expected, rtol=1e-6, atol=1e-9)


def test_cosine_schedule_formula():
    schedule = optim.make_schedule(_opt(schedule="cosine", warmup_steps=0, final_lr_fraction=0.1), 1.0, 50)
    for s in (0, 10, 25, 50):
        expected = 0.01 + (0.1 - 0.01) * 0.5 * (1 + math.cos(math.pi * s / 50))
        assert float(schedule(s)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="schedule"):
        optim.make_schedule(_opt(schedule="step"), 1.0, 10)


def test_gradient_clipping_bounds_the_gradient_adam_sees():
    params = {"w": np.zeros(3, np.float32)}
    grads = {"w": np.array([300.0, 400.0, 0.0], np.float32)}
    for clip, expected_grad in ((1.0, [0.6, 0.8, 0.0]), (0.0, [300.0, 400.0, 0.0])):
        tx, _ = optim.make_optimizer(_opt(clip_grad_norm=clip), 1.0, 10)
        _, state = tx.update(grads, tx.init(params), params)
        first_moment = optax.tree_utils.tree_get(state, "mu")["w"]  # (1 - b1) * gradient after one step
        np.testing.assert_allclose(first_moment, 0.1 * np.array(expected_grad), rtol=1e-5)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        optim.make_optimizer(_opt(clip_grad_norm=-1.0), 1.0, 10)


# --- registry, distributed options ------------------------------------------------------------------
def test_registry_lookup_and_errors():
    assert registry.get_definition("tiny") is tiny.TINY_TASK
    assert registry.get_definition("jaxpose.training.tiny:TINY_TASK") is tiny.TINY_TASK
    with pytest.raises(KeyError, match="available: .*tiny"):
        registry.get_definition("nope")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_task(tiny.TINY_TASK)
    config = config_lib.load_config(TINY_CONFIG)  # a task is built from its config, which names it
    task = registry.build_task(config)
    assert task.name == "tiny" and task.config is config
    config.task = "npt"
    with pytest.raises(ValueError, match="config.task is 'npt' but this is the 'tiny' task"):
        tiny.TINY_TASK(config)
    config.task = "nope"
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        registry.build_task(config)


def test_distributed_options_from_flags_and_environment():
    assert distributed.resolve_options(environ={}) is None
    env = {"JAXPOSE_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAXPOSE_NUM_PROCESSES": "2", "JAXPOSE_PROCESS_ID": "1"}
    assert distributed.resolve_options(environ=env) == distributed.DistributedOptions("127.0.0.1:1234", 2, 1)
    assert distributed.resolve_options(process_id=0, environ=env).process_id == 0
    with pytest.raises(ValueError, match="missing: number of processes, process id"):
        distributed.resolve_options("127.0.0.1:1", environ={})
    with pytest.raises(ValueError, match="out of range"):
        distributed.resolve_options("127.0.0.1:1", 2, 2, environ={})


# --- logs ------------------------------------------------------------------------------------------
def test_metrics_logger_resume_drops_later_records_and_writes_outputs(tmp_path):
    logger = logs.MetricsLogger(tmp_path)
    for step in (1, 2, 3):
        logger.write(step, {"train/loss": 1.0 / step})
    logger.close()
    with open(tmp_path / logs.METRICS_FILE, "a") as handle:
        handle.write('{"step": 4, "train/lo')  # torn line of a killed process
    logger = logs.MetricsLogger(tmp_path, resume_step=2)
    logger.write(3, {"train/loss": 0.25})
    logger.close()
    records = logs.read_jsonl(tmp_path / logs.METRICS_FILE)
    assert [(r["step"], r["train/loss"]) for r in records] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert list((tmp_path / logs.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    logs.write_loss_curve(records, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the tiny task's data --------------------------------------------------------------------------
def test_tiny_examples_follow_the_target_map():
    examples = tiny.make_examples(0, 3, 20)
    x = examples["inputs"].astype(np.float64)
    angle = np.deg2rad(30.0)
    axis = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    rotated = (x * np.cos(angle) + np.cross(axis, x) * np.sin(angle)
               + axis * (x @ axis)[..., None] * (1 - np.cos(angle)))  # Rodrigues, independent of the code
    np.testing.assert_allclose(examples["targets"], rotated + 0.1 * np.sin(2 * x), atol=1e-5)
    np.testing.assert_array_equal(examples["inputs"], tiny.make_examples(0, 3, 20)["inputs"])


def test_tiny_dataset_files_round_trip_and_errors(tmp_path):
    names = tiny.write_dataset(tmp_path, seed=5, count=4, num_points=8)
    (tmp_path / "sub.txt").write_text(f"{names[2]}\n{names[0]}\n")
    subset = tiny.load_dataset(tmp_path, tmp_path / "sub.txt")
    full = tiny.make_examples(5, 4, 8)
    np.testing.assert_array_equal(subset.arrays["inputs"], full["inputs"][[2, 0]])
    (tmp_path / "missing.txt").write_text("nothing_here\n")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        tiny.load_dataset(tmp_path, tmp_path / "missing.txt")
    np.savez(tmp_path / "bad.npz", inputs=np.full((8, 3), np.nan), targets=np.zeros((8, 3)))
    (tmp_path / "bad.txt").write_text("bad\n")
    with pytest.raises(ValueError, match="NaN"):
        tiny.load_dataset(tmp_path, tmp_path / "bad.txt")


def test_eval_configs_may_differ_only_in_evaluation_keys():
    from jaxpose.training.evaluation import check_eval_configs

    def config(**data):
        c = ml_collections.ConfigDict()
        c.data = ml_collections.ConfigDict({"root": "d", "subject": "s", "eval_protocol": "cape", "max_eval_frames": 0, **data})
        return c

    # The scoring protocol, point counts and evaluated frames apply to every method alike.
    check_eval_configs({"eval": config(), "run": config(eval_protocol="dfaust", max_eval_frames=4, eval_n_bbox=10)})
    with pytest.raises(ValueError, match="data.subject"):
        check_eval_configs({"eval": config(), "run": config(subject="other")})
