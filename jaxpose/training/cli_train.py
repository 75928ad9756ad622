"""`jaxpose train TASK --config FILE --workdir DIR [--config.KEY=VALUE ...]` (also `python -m train.TASK`).

The config names its task (`config.task`); TASK must agree with it (it guards against training with
the wrong config file). The task is built from the config by the registry.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

from jaxpose.training import distributed
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.config import apply_overrides, load_config, split_config_args
from jaxpose.training.loop import TrainingDivergedError, train_and_evaluate
from jaxpose.training.workdir_lock import WorkdirLockedError

EPILOG = """\
config overrides: --config.KEY=VALUE (e.g. --config.optimizer.lr=1e-3), typed by the field they replace.
multi-process: --coordinator_address HOST:PORT --num_processes N --process_id I (or the environment
variables JAXPOSE_COORDINATOR_ADDRESS, JAXPOSE_NUM_PROCESSES, JAXPOSE_PROCESS_ID).
Ctrl-C stops after the current step and writes a checkpoint; rerunning the command resumes.
"""


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train a registered task.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("task", help="the task the config names (e.g. tiny)")
    parser.add_argument("--config", metavar="FILE", help="configs/<name>.py with get_config() (required)")
    parser.add_argument("--workdir", required=True, help="run directory (checkpoints, logs); resumed if it has checkpoints")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--compilation_cache", metavar="DIR", default=os.environ.get("JAXPOSE_COMPILATION_CACHE"),
                        help="persistent XLA compilation cache directory (default: $JAXPOSE_COMPILATION_CACHE; "
                             "unset = none). A rerun or resume then loads compiled programs instead of compiling.")
    parser.add_argument("--coordinator_address", help="host:port of process 0 (multi-process)")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)
    return parser


def main(argv: list[str], prog: str = "jaxpose train") -> int:
    parser = build_parser(prog)
    try:
        config_path, overrides, rest = split_config_args(argv)
    except ValueError as error:
        parser.error(str(error))
    args = parser.parse_args(rest)
    if config_path is None:
        parser.error("--config FILE is required")

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:
        distributed.initialize(
            distributed.resolve_options(args.coordinator_address, args.num_processes, args.process_id)
        )
        config = apply_overrides(load_config(config_path), overrides)
        if str(config.get("task", "")) != args.task:
            raise ValueError(f"{config_path} is a config for task {config.get('task', None)!r}, not {args.task!r}")
        result = train_and_evaluate(config, args.workdir, show_progress=not args.no_progress)
    except (ValueError, KeyError, TypeError, FileNotFoundError, CheckpointError, TrainingDivergedError,
            WorkdirLockedError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    if distributed.is_main_process():
        if result.interrupted:
            print(f"{prog}: interrupted at step {result.step}; checkpoint saved in {args.workdir}", file=sys.stderr)
        else:
            print(f"{prog}: finished step {result.step}; outputs in {args.workdir}", file=sys.stderr)
    return 130 if result.interrupted else 0
