"""`jaxpose eval TASK --checkpoint DIR [...] --baseline NAME [...] [--data DIR] [--list FILE]`.

Scores each checkpoint (a training workdir or its checkpoints/ directory; its task and model are rebuilt
from the config saved with it) and each named baseline of TASK on one test set, with TASK's evaluation
protocol; prints a table (rows = methods, columns = metrics, mean ± std) and writes
`<output>/results.csv` and `<output>/results.md`. The test set comes from the config saved with the
first checkpoint, or from `--config FILE` (which may be given overrides, --config.KEY=VALUE); a
protocol may also accept neither (pose transfer: baselines on --data alone).
Checkpoints of several tasks of one system (e.g. corenet and npt; ins, snarf and snarf_nc) may share a
table when their `data` config sections agree.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from jaxpose.io.atomic import atomic_write_text
from jaxpose.training import evaluation
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.config import apply_overrides, load_config, split_config_args
from jaxpose.training.protocol import EvaluationRequest
from jaxpose.training.registry import available_tasks, get_definition


def build_parser(prog: str, protocol) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--checkpoint", action="append", default=[], metavar="DIR", help="repeatable")
    parser.add_argument("--step", type=int, help="checkpoint step to load (default: latest)")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME", help="repeatable")
    parser.add_argument("--data", metavar="DIR", help="test-set directory (default: the task's own test set)")
    parser.add_argument("--list", metavar="FILE", help="file of example names to use from --data")
    parser.add_argument("--config", metavar="FILE", help="config when no checkpoint is given")
    parser.add_argument("--output", default="eval_results", metavar="DIR", help="where results.csv/.md go")
    parser.add_argument("--batch_size", type=int, help="evaluation batch size (default: config.eval_batch_size)")
    protocol.add_arguments(parser)
    return parser


def _fail(prog: str, error: BaseException) -> int:
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str], prog: str = "jaxpose eval") -> int:
    if not argv or argv[0].startswith("-"):
        print(f"usage: {prog} TASK [--checkpoint DIR ...] [--baseline NAME ...] [options]\n"
              f"tasks: {', '.join(available_tasks())}; `{prog} TASK --help` lists the options", file=sys.stderr)  # fmt: skip
        return 2
    name, argv = argv[0], list(argv[1:])
    try:
        definition = get_definition(name)
    except (KeyError, ValueError, TypeError, ImportError) as error:
        return _fail(prog, error)
    prog = f"{prog} {name}"
    parser = build_parser(prog, definition.protocol)
    try:
        config_path, overrides, rest = split_config_args(argv)
    except ValueError as error:
        parser.error(str(error))
    args = parser.parse_args(rest)
    if not args.checkpoint and not args.baseline:
        parser.error("give at least one --checkpoint or --baseline")
    try:
        mesh = definition.protocol.make_mesh(args)
        loaded = [evaluation.load_checkpoint(path, mesh, args.step) for path in args.checkpoint]
        for checkpoint in loaded:
            if type(get_definition(checkpoint.task.name).protocol) is not type(definition.protocol):
                raise ValueError(f"checkpoint {checkpoint.name} is a {checkpoint.task.name!r} checkpoint, which "
                                 f"`{prog}` does not evaluate")  # fmt: skip
        config = load_config(config_path) if config_path else (loaded[0].config if loaded else None)
        if config is not None:
            config = apply_overrides(config, overrides)
            evaluation.check_eval_configs({"the evaluation config": config, **{c.name: c.config for c in loaded}})
        request = EvaluationRequest(config, loaded, list(args.baseline), mesh, args.batch_size, args.data, args.list,
                                    args)  # fmt: skip
        report = definition.protocol.evaluate(request)
        output = pathlib.Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = evaluation.write_results(report.results, output)
        if report.notes:
            notes = "".join(f"- {line}\n" for line in report.notes.splitlines())
            atomic_write_text(md_path, evaluation.to_markdown(report.results) + "\n" + notes)
    except (ValueError, KeyError, TypeError, FileNotFoundError, CheckpointError) as error:
        return _fail(prog, error)
    print(f"{name}: {report.examples} examples")
    print(evaluation.format_table(report.results))
    if report.notes:
        print(report.notes)
    print(f"wrote {csv_path} and {md_path}")
    return 0
