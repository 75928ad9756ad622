"""`jaxpose demo`: the end-to-end job on the embedded default body.

Currently: build the default low-resolution NPT-style pose-transfer dataset into a run directory
(kept if an identical one is already there, checked through meta.json) and print a summary.
Needs nothing but the shipped body (no network, no user files).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time


def main(argv: list[str] | None = None, prog: str = "jaxpose demo") -> int:
    from jaxpose.bodies.default import RESOLUTIONS

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument("--identities", type=int, default=8)
    parser.add_argument("--poses", type=int, default=24)
    parser.add_argument("--resolution", choices=RESOLUTIONS, default="low")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from jaxpose.data.cli import format_summary
    from jaxpose.data.npt import NptConfig, generate_npt_dataset
    from jaxpose.data.pose_transfer import PoseTransferData

    start = time.perf_counter()
    data_dir = pathlib.Path(args.out) / "data"
    try:
        config = NptConfig(identities=args.identities, poses=args.poses, resolution=args.resolution, seed=args.seed)
        # The demo owns its run directory: a different earlier dataset there is replaced.
        report = generate_npt_dataset(data_dir, config, overwrite=True, skip_if_identical=True,
                                      progress=not args.no_progress)
        data = PoseTransferData.open(data_dir)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(report.meta, report.out_dir, time.perf_counter() - start, report.skipped))
    arrays = data.as_arrays()
    print(f"  loaded back: vertices {arrays.shape} {arrays.dtype}, faces {data.faces.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
