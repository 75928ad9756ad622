"""`jaxpose eval TASK --checkpoint DIR [...] --baseline NAME [...] [--data DIR] [--list FILE]`.

Scores each checkpoint (a training workdir or its checkpoints/ directory) and each named baseline on
one test set, prints a table (rows = methods, columns = metrics, mean ± std) and writes
`<output>/results.csv` and `<output>/results.md`. The test set and model come from the config saved
with the first checkpoint, or from `--config FILE` (which may be given overrides, --config.KEY=VALUE).
"""

from __future__ import annotations

import argparse
import sys


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("task", help="registered task name (e.g. tiny) or module:ATTRIBUTE")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR", help="repeatable")
    parser.add_argument("--step", type=int, help="checkpoint step to load (default: latest)")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME", help="repeatable")
    parser.add_argument("--data", metavar="DIR", help="test-set directory (default: the task's own test set)")
    parser.add_argument("--list", metavar="FILE", help="file of example names to use from --data")
    parser.add_argument("--config", metavar="FILE", help="config when no checkpoint is given")
    parser.add_argument("--output", default="eval_results", metavar="DIR", help="where results.csv/.md go")
    parser.add_argument("--batch_size", type=int, help="evaluation batch size (default: config.eval_batch_size)")
    return parser


def main(argv: list[str], prog: str = "jaxpose eval") -> int:
    from jaxpose.training.config import split_config_args

    if argv and not argv[0].startswith("-"):
        from jaxpose.training.registry import get_task

        try:
            custom = get_task(argv[0]).eval_main
        except (KeyError, ValueError, TypeError, ImportError):
            custom = None  # reported by the generic path below
        if custom is not None:
            return int(custom(list(argv[1:]), f"{prog} {argv[0]}") or 0)
    parser = build_parser(prog)
    try:
        config_path, overrides, rest = split_config_args(argv)
    except ValueError as error:
        parser.error(str(error))
    args = parser.parse_args(rest)
    if not args.checkpoint and not args.baseline:
        parser.error("give at least one --checkpoint or --baseline")
    if not args.checkpoint and config_path is None:
        parser.error("--config FILE is required when no --checkpoint is given")

    from jaxpose.training import evaluation
    from jaxpose.training.checkpoint import CheckpointError
    from jaxpose.training.config import apply_overrides, load_config
    from jaxpose.training.registry import get_task
    from jaxpose.training.sharding import make_mesh
    from jaxpose.training.step import compute_dtype_from_name

    try:
        task = get_task(args.task)
        for name in args.baseline:
            if name not in task.baselines:
                raise KeyError(f"task {task.name!r} has no baseline {name!r}; available: {sorted(task.baselines)}")
        mesh = make_mesh()
        loaded = [evaluation.load_checkpoint(task, path, mesh, args.step) for path in args.checkpoint]
        evaluation.check_eval_configs({c.name: c.config for c in loaded})
        config = load_config(config_path) if config_path else loaded[0].config
        config = apply_overrides(config, overrides)
        dataset = task.make_eval_data(config, args.data, args.list)
        batch_size = args.batch_size or int(config.eval_batch_size)
        if batch_size <= 0:
            raise ValueError(f"--batch_size must be positive, got {batch_size}")
        results = {}
        for checkpoint in loaded:
            dtype = compute_dtype_from_name(checkpoint.config.get("compute_dtype", "float32"), task)
            evaluator = evaluation.ModelEvaluator(task, checkpoint.graphdef, mesh, batch_size, dtype)
            per_example = evaluator(checkpoint.state.params, checkpoint.state.model_state, dataset)
            name = checkpoint.name
            while name in results:
                name += "'"
            results[name] = evaluation.summarize(per_example)
        for name in args.baseline:
            per_example = evaluation.evaluate_baseline(task, name, dataset, mesh, batch_size)
            results[f"baseline:{name}"] = evaluation.summarize(per_example)
        csv_path, md_path = evaluation.write_results(results, args.output)
    except (ValueError, KeyError, TypeError, FileNotFoundError, CheckpointError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    print(f"{task.name}: {len(dataset)} examples")
    print(evaluation.format_table(results))
    print(f"wrote {csv_path} and {md_path}")
    return 0
