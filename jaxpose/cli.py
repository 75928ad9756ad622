"""The `jaxpose` console script: a thin dispatcher to per-command modules.

Each command lives in its own module exposing ``main(argv: list[str], prog: str) -> int``; modules are
imported only when their command runs, so `jaxpose --help` stays instant (no JAX import).
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("jaxpose.pose_transfer.demo", "run the main job on the embedded default body"),
    "data": ("jaxpose.pose_transfer.data_cli", "build datasets (e.g. `jaxpose data npt`)"),
    "train": ("jaxpose.training.cli_train", "train a model from a config file"),
    "eval": ("jaxpose.training.cli_eval", "evaluate checkpoints/baselines on a test list"),
    "transfer": ("jaxpose.pose_transfer.transfer", "pose transfer of one mesh pair with a trained checkpoint"),
    "repose": ("jaxpose.skinning.repose", "extract an INS canonical mesh once and repose it to given poses"),
    "refine": ("jaxpose.fitting.cli_refine", "refine a body estimate with the displacement CNN and dense SMPLify"),
    "fit": ("jaxpose.fitting.cli_fit", "keypoint-only SMPLify fit of a body to 2D keypoints"),
    "deform-learn": ("jaxpose.deform_learn.cli_loop", "run the deform-and-learn loop (registration + lifter + ConvNet)"),
    "register": ("jaxpose.deform_learn.cli_register", "register the segment-scale body to one image's dense labels"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: jaxpose COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `jaxpose COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"jaxpose: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest, prog=f"jaxpose {name}") or 0)


if __name__ == "__main__":
    sys.exit(main())
