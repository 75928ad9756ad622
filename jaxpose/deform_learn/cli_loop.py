"""`jaxpose deform-learn --config FILE --workdir DIR [--comparisons] [--config.KEY=VALUE ...]`.

Runs (or resumes) the deform-and-learn loop of the config in DIR, then optionally the two comparison
rows (fully supervised, no iteration); writes ``curves.jsonl``, ``curves.png`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from jaxpose.deform_learn.comparisons import results_table, run_comparisons
from jaxpose.deform_learn.loop import LoopConfigError, load_loop_data, run_loop
from jaxpose.io.atomic import atomic_write_text
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.config import apply_overrides, load_config, split_config_args
from jaxpose.training.loop import TrainingDivergedError
from jaxpose.training.workdir_lock import WorkdirLockedError, workdir_lock

EPILOG = """\
config overrides: --config.KEY=VALUE (e.g. --config.num_iterations=4), typed by the field they replace.
Rerunning the same command resumes: finished stages are reused, engine trainings resume from checkpoints.
Configs: configs/deform_learn_small.py (2 CPU cores), configs/deform_learn_full.py (an accelerator).
"""


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the deform-and-learn loop.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--config", metavar="FILE", help="configs/deform_learn_*.py (required)")
    parser.add_argument("--workdir", required=True, help="run directory; resumed if it holds a run of the same config")
    parser.add_argument("--comparisons", action="store_true",
                        help="also train the fully supervised and the no-iteration regressors (same budget)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str], prog: str = "jaxpose deform-learn") -> int:
    parser = build_parser(prog)
    try:
        config_path, overrides, rest = split_config_args(argv)
    except ValueError as error:
        parser.error(str(error))
    args = parser.parse_args(rest)
    if config_path is None:
        parser.error("--config FILE is required")
    workdir = pathlib.Path(args.workdir)
    try:
        config = apply_overrides(load_config(config_path), overrides)
        if args.no_progress:
            config.show_progress = False
        with workdir_lock(workdir):
            data = load_loop_data(config)
            rows = run_loop(config, workdir, data=data)
            if args.comparisons:
                run_comparisons(config, workdir, data=data)
            table = results_table(workdir)
            atomic_write_text(workdir / "results.md", table)
    except (ValueError, KeyError, TypeError, FileNotFoundError, CheckpointError, TrainingDivergedError,
            WorkdirLockedError, LoopConfigError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    print(table)
    print(f"{prog}: {len(rows)} iterations; curves in {workdir / 'curves.png'}", file=sys.stderr)
    return 0


__all__ = ["build_parser", "main"]
