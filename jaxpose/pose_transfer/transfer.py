"""`jaxpose transfer`: put the identity mesh A into the pose of B with a trained model.

    jaxpose transfer --identity A.obj --pose B.obj --out C.obj [--checkpoint RUN_DIR] [--overwrite]
        [--step N] [--matching auto|NAME --block_size N] [--up-axis y|z|x] [--triangulate]
        [--permutation_seed S]

A thin wrapper over `jaxpose.pose_transfer.api.run_transfer` (also `jaxpose.transfer` in Python);
see that module for the steps. Without `--checkpoint` it uses the 3D-CoreNet that ships with the
package (`jaxpose.pose_transfer.pretrained`); `--checkpoint` takes any pose-transfer training workdir
or model bundle (3D-CoreNet or NPT; the saved config names the task). Any vertex counts (N_A ≠ N_B).

- Before anything slow, the paths are checked (`transfer_paths`): inputs exist with a supported
  extension, the output has a mesh extension, is not a directory, is not an input, does not exist
  unless `--overwrite`, and its directory is (or can be created in) a writable directory.
- A: a mesh (.obj/.ply; `--triangulate` splits polygon faces). B: a mesh or a point cloud
  (.obj/.ply with or without faces, .npy (M, 3), .npz with `vertices`/`points` or one array).
  Degenerate inputs (< 16 distinct points, flat, zero area) are refused; a body that looks z-up or not
  human-sized gets a warning; `--up-axis z` (or x) rotates the inputs to y-up and the output back.
- Bodies must be metre-scale: the models output coordinates bounded by 2·tanh, inside (−2, 2) mesh
  units around the bbox centre (`MAX_HALF_EXTENT`), and were trained on metre-scale bodies.
- `--matching auto` (default, 3D-CoreNet): dense matching if its estimated peak memory is at most half
  of the available memory, else online (row blocks of `--block_size`, equal to dense up to float
  rounding, with a progress bar); the estimate is printed, and a matching that cannot fit is refused
  with the numbers before the model is loaded. Other names: `jaxpose.matching.MATCHING_NAMES`.
- The permutations of the test protocol are applied (`--permutation_seed`), since the official
  3D-CoreNet `fc` layer (kernel 3 along the vertex axis) saw only randomly ordered vertices.
- Output C: A's vertex count, order and faces, its bounding box centred where A's was.

Status lines and progress go to stderr; the one-line summary to stdout. Errors: one line, exit code 2,
and C is not written.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from jaxpose.io.mesh import MeshError, save_mesh
from jaxpose.pose_transfer import pretrained
from jaxpose.pose_transfer.api import run_transfer
from jaxpose.pose_transfer.transfer_inputs import (
    MAX_HALF_EXTENT,
    InputWarning,
    UpAxis,
    check_metre_scale,
    identity_from,
    pose_from,
)
from jaxpose.pose_transfer.transfer_memory import AUTO, MATCHING_CHOICES
from jaxpose.pose_transfer.transfer_model import load_model, predict
from jaxpose.pose_transfer.transfer_paths import check_transfer_paths
from jaxpose.training.checkpoint import CheckpointError


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The `jaxpose transfer` argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[0].split(": ", 1)[-1])
    parser.add_argument("--identity", required=True, metavar="A", help="identity mesh (.obj/.ply), metres")
    parser.add_argument("--pose", required=True, metavar="B",
                        help="pose mesh or point cloud (.obj/.ply/.npy/.npz), metres; any vertex count")  # fmt: skip
    parser.add_argument("--checkpoint", metavar="DIR",
                        help="corenet or npt training workdir or model bundle (default: the shipped 3D-CoreNet, "
                             f"{pretrained.DEFAULT_MODEL})")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="C", help="output mesh (.obj/.ply): A's vertices order and faces")
    parser.add_argument("--overwrite", action="store_true", help="replace C if it exists (never an input)")
    parser.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    parser.add_argument("--matching", choices=MATCHING_CHOICES, default=AUTO,
                        help="3D-CoreNet matching: auto (default: dense if it fits in half the free memory, else "
                             "online) or a jaxpose.matching.matching_from_name name")  # fmt: skip
    parser.add_argument("--block_size", type=int, help="row block of online matching (default: the checkpoint's)")
    parser.add_argument("--up-axis", "--up_axis", dest="up_axis", choices=[a.value for a in UpAxis], default="y",
                        help="up axis of A and B (default y); z or x inputs are rotated to y-up and C back")  # fmt: skip
    parser.add_argument("--triangulate", action="store_true", help="split polygon faces of A into triangles")
    parser.add_argument("--permutation_seed", type=int, default=0, help="seed of the input vertex shuffles")
    return parser


def _error_message(error: BaseException, checkpoint: str) -> str:
    """One line for an expected error; checkpoint problems are prefixed `checkpoint DIR:`."""
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, CheckpointError) and not message.startswith("checkpoint "):
        message = f"checkpoint {checkpoint}: {message}"
    return message


@contextlib.contextmanager
def _input_warnings_to_stderr(prog: str):
    """Within the block, `InputWarning`s print as `prog: warning: message` lines on stderr (others unchanged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, InputWarning):
                print(f"{prog}: warning: {message}", file=sys.stderr)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None, prog: str = "jaxpose transfer") -> int:
    """Run the command; 0 on success, 2 on an expected error (one line on stderr, nothing written)."""
    args = build_parser(prog).parse_args(argv)
    try:
        with _input_warnings_to_stderr(prog):
            paths = check_transfer_paths(args.identity, args.pose, args.out, overwrite=args.overwrite)
            identity = identity_from(paths.identity, triangulate=args.triangulate)
            pose = pose_from(paths.pose)
            result = run_transfer(identity, pose, args.checkpoint, step=args.step,
                                  matching=args.matching, block_size=args.block_size, up_axis=args.up_axis,
                                  permutation_seed=args.permutation_seed)  # fmt: skip
        save_mesh(paths.out, result.vertices, result.faces)
    except (MeshError, ValueError, KeyError, FileNotFoundError, CheckpointError) as error:
        print(f"{prog}: error: {_error_message(error, args.checkpoint or 'shipped model')}", file=sys.stderr)
        return 2
    matching = f", {result.matching} matching" if result.matching else ""
    print(
        f"{result.task}@{result.step}: identity {len(identity.vertices)} vertices, pose {len(pose.vertices)} vertices "
        f"-> {paths.out} "
        f"({len(result.vertices)} vertices, {len(result.faces)} faces; {result.seconds:.2f} s incl. compile{matching})"
    )
    return 0


__all__ = ["MAX_HALF_EXTENT", "build_parser", "check_metre_scale", "load_model", "main", "predict"]

if __name__ == "__main__":
    sys.exit(main())
