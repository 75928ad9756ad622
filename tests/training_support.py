"""Shared helpers for the tests of `jaxpose.training` (not a test module itself)."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny.py"


def tiny_config(**overrides):
    """configs/tiny.py with small, fast settings; `overrides` use dotted keys with '__' for '.'."""
    from jaxpose.training.config import apply_overrides, load_config

    base = {
        "num_steps": "6", "batch_size": "16", "log_every": "2", "eval_every": "0", "checkpoint_every": "3",
        "eval_batch_size": "16", "model.hidden": "8", "data.num_train": "48", "data.num_eval": "10",
        "data.num_points": "16", "optimizer.warmup_steps": "0",
    }  # fmt: skip
    base.update({key.replace("__", "."): str(value) for key, value in overrides.items()})
    return apply_overrides(load_config(TINY_CONFIG), list(base.items()))


def config_args(config) -> list[str]:
    """Command-line overrides reproducing `config` from configs/tiny.py."""
    args = []

    def walk(node, prefix):
        for key, value in node.items():
            if hasattr(value, "items"):
                walk(value, f"{prefix}{key}.")
            else:
                args.append(f"--config.{prefix}{key}={value}")

    walk(config, "")
    return ["--config", str(TINY_CONFIG), *args]


def subprocess_env(num_devices: int) -> dict:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        JAX_COMPILATION_CACHE_DIR=str(REPO / ".jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        PYTHONUNBUFFERED="1",
    )
    for key in ("JAXPOSE_COORDINATOR_ADDRESS", "JAXPOSE_NUM_PROCESSES", "JAXPOSE_PROCESS_ID"):
        env.pop(key, None)
    return env


def jaxpose_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxpose.cli", *args]


def run(command: list[str], num_devices: int = 1, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command to completion (killed after `timeout` s) and return it (text output)."""
    return subprocess.run(
        command, cwd=REPO, env=subprocess_env(num_devices), capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def restore_latest(workdir, config, mesh=None, task=None):
    """The latest checkpoint of a run in `workdir`, restored onto `mesh` (default: all devices)."""
    from jaxpose.training.checkpoint import Checkpointer
    from jaxpose.training.data import steps_per_epoch
    from jaxpose.training.optim import make_optimizer
    from jaxpose.training.registry import build_task
    from jaxpose.training.sharding import make_mesh
    from jaxpose.training.state import abstract_train_state

    task = task or build_task(config)
    mesh = mesh or make_mesh()
    tx, _ = make_optimizer(config.optimizer, steps_per_epoch(config.batch_size, config.data.num_train), config.num_steps)
    checkpointer = Checkpointer(pathlib.Path(workdir) / "checkpoints", create=False)
    try:
        return checkpointer.restore(abstract_train_state(task, tx, mesh), expected_config=config)
    finally:
        checkpointer.close()


def host_leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]
