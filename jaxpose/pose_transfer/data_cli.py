"""`jaxpose data ...`: dataset builders. Subcommand `npt`: NPT-style pose-transfer data from the default body.

    jaxpose data npt --out DIR --identities I --poses P --resolution {low,mid,full} --seed S
    python -m jaxpose.cli data npt ...
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxpose.bodies.default import RESOLUTIONS, default_body
from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset
from jaxpose.pose_transfer.npt_resources import npt_estimate


def _npt_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "npt",
        help="NPT-style identities x poses from the default body (id{i}_{j}.obj, cache.npz, meta.json, test list)",
        description="Generate NPT-style pose-transfer data (docs/pose_transfer.md, 'Data' and 'Splits and test lists') "
        "from jaxpose's default body. "
        "Files are named with NPT's pose index; see jaxpose.pose_transfer.npt_data for the pose-index mapping and splits.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--identities", type=int, default=8, help="number of identities I (default 8)")
    parser.add_argument("--poses", type=int, default=24, help="number of poses P, at most 800 (default 24)")
    parser.add_argument("--resolution", choices=RESOLUTIONS, default="low", help="default-body resolution (default low)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the identity betas and the test list (default 0)")
    parser.add_argument("--beta-mode", choices=("normal", "npt_uniform"), default="normal",
                        help="normal: N(0,1) truncated to ±2.5 (plausible adults); npt_uniform: NPT's U[-4,4]")
    parser.add_argument("--test-triples", type=int, default=400, help="length of the generated test list (default 400)")
    parser.add_argument("--precision", type=int, default=6, help="decimals of OBJ coordinates in metres (default 6)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_npt(args) -> int:
    """Validate the flags, print the size estimate, generate (errors: see `main`)."""
    start = time.perf_counter()
    config = NptConfig(
        identities=args.identities, poses=args.poses, resolution=args.resolution, seed=args.seed,
        beta_mode=args.beta_mode, num_test_triples=args.test_triples, precision=args.precision,
    )
    body = default_body(config.resolution)
    print(f"estimate: {npt_estimate(config, body).describe()}", flush=True)
    report = generate_npt_dataset(args.out, config, body=body, overwrite=args.overwrite, skip_if_identical=True,
                                  progress=not args.no_progress)
    print(format_summary(report.meta, report.out_dir, time.perf_counter() - start, report.skipped))
    return 0


def format_summary(meta: dict, out_dir, seconds: float, skipped: bool) -> str:
    """Human-readable summary of a generated dataset's meta.json."""
    splits, body, lst = meta["splits"], meta["body"], meta["test_list"]
    lines = [
        f"{'kept identical dataset' if skipped else 'wrote dataset'} {out_dir}",
        f"  identities x poses: {len(meta['identities'])} x {len(meta['pose_indices'])} "
        f"= {len(meta['identities']) * len(meta['pose_indices'])} meshes (+ {len(meta['identities'])} rest meshes)",
        f"  body: resolution {body['resolution']}, {body['num_vertices']} vertices, {body['num_faces']} faces, "
        f"{body['num_betas']} betas ({meta['beta_mode']})",
        f"  train: {len(splits['train_identities'])} identities x {len(splits['train_poses'])} poses; "
        f"test: {len(splits['test_identities'])} identities x {len(splits['test_poses'])} poses",
        f"  test list: {lst['triples']} triples, {lst['same_identity']} with id == pose id (GT = pose mesh), "
        f"{lst['same_pose']} with the same pose (GT = identity mesh)",
        f"  time: {seconds:.1f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "jaxpose data") -> int:
    """Run `jaxpose data`; invalid settings, too little memory or disk, an unwritable or occupied --out
    print one error line and return 1."""
    parser = argparse.ArgumentParser(prog=prog, description="Build datasets.")
    subparsers = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    _npt_parser(subparsers)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.dataset == "npt":
            return _run_npt(args)
    except (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"{prog} {args.dataset}: error: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown dataset {args.dataset!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
