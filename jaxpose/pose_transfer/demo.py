"""`jaxpose demo`: the 3D-CoreNet tour on the embedded default body, with the models that ship in the package.

Default (a few minutes on 2 CPU cores; nothing is trained):
  1. data     — the low-resolution NPT-style test set of `configs/corenet_small.py`'s `data.build`
                settings (seed 0; none of its identities or poses was seen by the shipped models),
                built into OUT/data (kept when an identical one is there);
  2. models   — the shipped 3D-CoreNet (`jaxpose.pose_transfer.pretrained`, configs/corenet_medium.py)
                and the shipped NPT (configs/npt_medium.py); their provenance is printed;
  3. eval     — one table via the pose-transfer harness (`jaxpose eval corenet`): 3D-CoreNet, its raw
                OT warp, NPT, Deformation Transfer (oracle S0), copy-identity and copy-pose (the pose mesh
                itself: a perfect correspondence without shape transfer, a diagnostic bound), written to
                OUT/eval/results.md and results.csv;
  4. renders  — OUT/renders/pair_<k>.png: identity / pose / 3D-CoreNet output / raw OT warp / NPT
                output / Deformation Transfer / ground truth for non-trivial test pairs (different
                identity, different pose; front and side views; vertices coloured by their position on
                the identity so correspondences show).
`--train` instead trains `configs/corenet_small.py` and `configs/npt_small.py` on that data (the
reduced training of earlier releases; the engine writes each model's loss curve to
OUT/<run>/loss_curve.png) and evaluates and renders those. `--quick` is a smoke version (a smaller
dataset in OUT/data_quick, 2 test triples, one render; with `--train`, tiny widths, batch 2, 3 steps).
The table has PMD and CD; `--emd exact` adds EMD. Needs nothing but the package (no network, no user files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import numpy as np

from jaxpose.io.atomic import atomic_write_text
from jaxpose.pose_transfer import pretrained, protocol
from jaxpose.pose_transfer.data_cli import format_summary
from jaxpose.pose_transfer.evaluation import PoseTransferProtocol, evaluate as evaluate_pose_transfer, write_evaluation
from jaxpose.pose_transfer.host_callbacks import EMD_CHOICES, deformation_transfer
from jaxpose.pose_transfer.npt_data import generate_npt_dataset
from jaxpose.pose_transfer.pairs import npt_config, open_data
from jaxpose.render.figures import save_mesh_grid_png
from jaxpose.render.shade import vertex_code_colors
from jaxpose.training.checkpoint import CheckpointError
from jaxpose.training.config import apply_overrides, load_config
from jaxpose.training.evaluation import format_table, load_checkpoint
from jaxpose.training.logs import LOSS_CURVE_FILE
from jaxpose.training.loop import train_and_evaluate
from jaxpose.training.state import merge_model

CORENET_CONFIG = "corenet_small.py"
NPT_CONFIG = "npt_small.py"
BASELINES = ("copy_identity", "copy_pose", "deformation_transfer")
SHIPPED_CORENET = pretrained.DEFAULT_MODEL
SHIPPED_NPT = "npt_medium"

# --quick: a dataset and models small enough for a CI smoke run (tests/test_demo.py).
QUICK_BUILD = (("data.build.identities", "4"), ("data.build.poses", "6"))
QUICK_CORENET_OVERRIDES = (
    ("model.feature_widths", "(8, 16, 16)"),
    ("model.num_residual_blocks", "1"),
    ("model.correlation_width", "16"),
    ("model.decoder_widths", "(16, 16, 16)"),
)
QUICK_NPT_OVERRIDES = (("model.pose_widths", "(8, 16, 32)"),)
QUICK_BATCH = (("batch_size", "2"), ("eval_batch_size", "2"))
QUICK_STEPS = 3
QUICK_TRIPLES = 2
QUICK_RENDERS = 1


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """Everything the demo will do, resolved from the command line (no side effects)."""

    out: pathlib.Path
    train: bool  # False: evaluate the shipped models; True: train corenet_small / npt_small first
    data_dir: pathlib.Path
    corenet_dir: pathlib.Path  # a training workdir (--train) or a shipped model bundle
    npt_dir: pathlib.Path
    eval_dir: pathlib.Path
    render_dir: pathlib.Path
    corenet_config: object  # ml_collections.ConfigDict
    npt_config: object
    permutation_seeds: tuple[int, ...]
    max_triples: int
    emd: str
    num_renders: int
    render_size: int
    progress: bool


def configs_dir() -> pathlib.Path:
    """The repository's `configs/` folder (configs are files loaded by path, not an installed package)."""
    path = pathlib.Path(__file__).resolve().parents[2] / "configs"
    if not (path / CORENET_CONFIG).is_file():
        raise FileNotFoundError(f"{path / CORENET_CONFIG} not found: the demo runs from a jaxpose repository checkout "
                                "(pip install -e . in it), whose configs/ folder holds its configs")  # fmt: skip
    return path


def _parse_override(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{flag} {text!r}: expected KEY=VALUE, e.g. model.decoder_widths=(64,32,32)")
    return key.strip(), value


def rescaled_schedule_overrides(config, steps: int) -> list[tuple[str, str]]:
    """Overrides that stretch a constant-then-linear schedule over `steps` steps, halves as in the config."""
    opt = config.optimizer
    if opt.get("schedule") != "constant_then_linear":
        return []
    steps_per_epoch = float(config.data.pairs_per_epoch) / float(config.batch_size)
    total_epochs = float(opt.constant_epochs) + float(opt.decay_epochs)
    if total_epochs <= 0:
        return []
    epochs = steps / steps_per_epoch
    constant = epochs * float(opt.constant_epochs) / total_epochs
    return [("optimizer.constant_epochs", repr(constant)), ("optimizer.decay_epochs", repr(epochs - constant))]


def make_plan(args) -> DemoPlan:
    out = pathlib.Path(args.out)
    data_dir = out / ("data_quick" if args.quick else "data")
    suffix = ("_train" if args.train else "") + ("_quick" if args.quick else "")
    directory = configs_dir()
    built = []
    for name, quick_overrides, user in ((CORENET_CONFIG, QUICK_CORENET_OVERRIDES, args.corenet_override),
                                        (NPT_CONFIG, QUICK_NPT_OVERRIDES, args.npt_override)):
        config = load_config(directory / name)
        overrides = [("data.root", str(data_dir))]
        if args.quick:
            overrides += list(QUICK_BUILD) + ([*QUICK_BATCH, *quick_overrides] if args.train else [])
        steps = args.steps if args.steps is not None else (QUICK_STEPS if args.quick and args.train else None)
        if steps is not None:
            if steps < 1:
                raise ValueError(f"--steps must be positive, got {steps}")
            overrides.append(("num_steps", str(steps)))
        overrides += [_parse_override(o, f"--{name.split('_')[0]}-override") for o in user]
        try:
            config = apply_overrides(config, overrides)
        except KeyError as error:  # an unknown key: report it as bad input like every other
            raise ValueError(f"{name}: {error.args[0]}") from None
        if steps is not None:
            config = apply_overrides(config, rescaled_schedule_overrides(config, int(config.num_steps)))
        built.append(config)
    corenet_config, npt_config = built
    if corenet_config.data.build.to_dict() != npt_config.data.build.to_dict():
        raise ValueError("the CoreNet and NPT configs must use the same dataset (their data.build sections differ)")
    seeds = tuple(int(s) for s in args.permutation_seeds.split(",")) if args.permutation_seeds else (
        (0,) if args.quick else (0, 1, 2))
    max_triples = args.max_triples if args.max_triples is not None else (QUICK_TRIPLES if args.quick else 100)
    if not args.train and (args.steps is not None or args.corenet_override or args.npt_override):
        raise ValueError("--steps, --corenet-override and --npt-override change the training: use them with --train")
    num_renders = args.renders if args.renders is not None else (QUICK_RENDERS if args.quick else 3)
    if max_triples < 1 or num_renders < 0:
        raise ValueError("--max-triples must be >= 1 and --renders >= 0")
    if args.train:
        corenet_dir, npt_dir = out / f"corenet_small{suffix}", out / f"npt_small{suffix}"
    else:
        corenet_dir, npt_dir = pretrained.path(SHIPPED_CORENET), pretrained.path(SHIPPED_NPT)
    return DemoPlan(
        out=out, train=bool(args.train), data_dir=data_dir, corenet_dir=corenet_dir, npt_dir=npt_dir,
        eval_dir=out / f"eval{suffix}", render_dir=out / f"renders{suffix}", corenet_config=corenet_config,
        npt_config=npt_config, permutation_seeds=seeds, max_triples=max_triples,
        emd=args.emd or "none",
        num_renders=num_renders, render_size=128 if args.quick else 192, progress=args.progress,
    )


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


def build_data(plan: DemoPlan):
    start = time.perf_counter()
    # The demo owns its run directory: a different earlier dataset there is replaced.
    report = generate_npt_dataset(plan.data_dir, npt_config(plan.corenet_config.data.build), overwrite=True,
                                  skip_if_identical=True, progress=plan.progress)  # fmt: skip
    print(format_summary(report.meta, report.out_dir, time.perf_counter() - start, report.skipped))
    return report


def train(config, workdir: pathlib.Path, progress: bool):
    """Train (or resume) `config` in `workdir`; a checkpoint of another config is a clear error."""
    try:
        result = train_and_evaluate(config, workdir, show_progress=progress)
    except CheckpointError as error:
        raise CheckpointError(
            f"{workdir} holds a checkpoint of a different config, so the demo cannot resume it: {error}\n"
            f"Delete {workdir} or choose another --out."
        ) from None
    if result.interrupted:
        raise KeyboardInterrupt(f"training interrupted at step {result.step}; rerun the demo to resume")
    if result.resumed_from is not None and result.resumed_from >= int(config.num_steps):
        print(f"{workdir}: already trained to step {result.resumed_from} (reused)")
    elif result.resumed_from is not None:
        print(f"{workdir}: resumed at step {result.resumed_from}, trained to {result.step}")
    return result


def describe_shipped(plan: DemoPlan) -> None:
    """One line per shipped model: where it is, its config and how it was trained (from its manifest)."""
    for directory in (plan.corenet_dir, plan.npt_dir):
        manifest = pretrained.manifest(directory.name)
        made = manifest.get("provenance", {})
        print(f"  {directory}: {manifest['task']} @ step {manifest['step']}, {manifest['num_parameters']:,} "
              f"parameters, config {made.get('config', '?')}; trained {made.get('training_time', '?')} on "
              f"{made.get('hardware', '?')}")


def evaluate(plan: DemoPlan):
    mesh = PoseTransferProtocol().make_mesh()
    checkpoints = [load_checkpoint(plan.corenet_dir, mesh), load_checkpoint(plan.npt_dir, mesh)]
    report = evaluate_pose_transfer(
        checkpoints, BASELINES, data_root=str(plan.data_dir), config=plan.corenet_config,
        permutation_seeds=plan.permutation_seeds, emd=plan.emd, batch_size=int(plan.corenet_config.eval_batch_size),
        max_triples=plan.max_triples, mesh=mesh, show_progress=plan.progress,
    )  # fmt: skip
    csv_path, md_path = write_evaluation(report, plan.eval_dir)
    return report, pathlib.Path(csv_path), pathlib.Path(md_path)


def _predictions(workdir: pathlib.Path, batch: dict) -> tuple:
    """(output (B, N, 3), warp (B, N, 3) or None) of the checkpoint in `workdir`, test protocol."""
    loaded = load_checkpoint(workdir, PoseTransferProtocol().make_mesh())

    @jax.jit
    def run(params, model_state, batch):
        model = merge_model(loaded.graphdef, params, model_state)
        model.eval(update_stats=False)
        return protocol.permuted_forward(model, batch)

    params, model_state = jax.device_get((loaded.state.params, loaded.state.model_state))
    result = run(params, model_state, batch)
    warped = None if result.warped is None else np.asarray(result.warped)
    return np.asarray(result.output), warped


def non_trivial(triples: list) -> list:
    """The triples whose pose mesh shows another person in another pose than the identity mesh (the
    test list also holds same-identity and same-pose triples, whose answer is one of the inputs)."""
    return [t for t in triples if t.identity_id != t.pose_id and t.identity_pose != t.pose_pose]


def render_pairs(plan: DemoPlan) -> list[pathlib.Path]:
    if plan.num_renders == 0:
        return []
    data = open_data(plan.data_dir)
    triples = non_trivial(protocol.test_triples(plan.corenet_config, data, None))[: plan.num_renders]
    if not triples:
        print("  no test triple has a different identity and a different pose: nothing to render")
        return []
    batch = protocol.eval_arrays(data, triples, plan.permutation_seeds[0])
    corenet_output, corenet_warp = _predictions(plan.corenet_dir, batch)
    npt_output, _ = _predictions(plan.npt_dir, batch)
    transferred = np.asarray(deformation_transfer(batch))
    faces = data.faces
    paths = []
    for k, triple in enumerate(triples):
        # One colour per vertex from the identity's own shape: the same vertex has the same colour in
        # every panel (all meshes share the dataset's topology), so misplaced parts stand out.
        colours = np.asarray(vertex_code_colors(batch["identity"][k]))
        panels = [
            (batch["identity"][k], "identity", colours),
            (batch["pose"][k], "pose", colours),
            (corenet_output[k], "3D-CoreNet", colours),
            (corenet_warp[k], "raw OT warp", colours),
            (npt_output[k], "NPT", colours),
            (transferred[k], "deform. transfer", colours),
            (batch["gt"][k], "ground truth", colours),
        ]
        path = plan.render_dir / f"pair_{k}.png"
        save_mesh_grid_png(path, [(v, faces, title, c) for v, title, c in panels], views=("front", "side"),
                           size=plan.render_size)
        print(f"  {path}: identity id{triple.identity_id}_{triple.identity_pose}, pose id{triple.pose_id}_"
              f"{triple.pose_pose}, ground truth id{triple.identity_id}_{triple.pose_pose}")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[0].split(": ", 1)[1],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument("--steps", type=int, help="with --train: training steps per model (default: the configs' num_steps; "
                        "a constant-then-linear learning-rate schedule is stretched to end at this step)")
    parser.add_argument("--train", action="store_true",
                        help="train configs/corenet_small.py and configs/npt_small.py on the demo data first (about "
                             "12 minutes on 2 CPU cores) and evaluate those instead of the shipped models")
    parser.add_argument("--quick", action="store_true",
                        help="smoke version (small data, 2 triples, 1 render; with --train also tiny models)")
    parser.add_argument("--max-triples", type=int, help="test triples to evaluate (default 100; quick 2)")
    parser.add_argument("--permutation-seeds", help="comma-separated vertex-permutation seeds (default 0,1,2; quick 0)")
    parser.add_argument("--emd", choices=EMD_CHOICES, default=None,
                        help="add an EMD column: exact (SciPy assignment) or sinkhorn (default none: the exact "
                        "assignment takes 0.1 s per pair on good outputs but up to ~15 s on the collapsed outputs of "
                        "a partly trained model at 1,229 vertices)")
    parser.add_argument("--renders", type=int, help="test pairs to render (default 3; quick 1)")
    parser.add_argument("--corenet-override", action="append", default=[], metavar="KEY=VALUE",
                        help="with --train: override a configs/corenet_small.py field (repeatable)")
    parser.add_argument("--npt-override", action="append", default=[], metavar="KEY=VALUE",
                        help="with --train: override a configs/npt_small.py field (repeatable)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None, prog: str = "jaxpose demo") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, function, *stage_args):
        stage_start = time.perf_counter()
        value = function(*stage_args)
        timings[name] = round(time.perf_counter() - stage_start, 2)
        return value

    try:
        plan = make_plan(args)
        build = ", ".join(f"{k} {v}" for k, v in plan.corenet_config.data.build.items())
        stages = 5 if plan.train else 4
        banner(f"1/{stages} data: {build} -> {plan.data_dir}")
        stage("data", build_data, plan)
        if plan.train:
            banner(f"2/5 train 3D-CoreNet ({CORENET_CONFIG}, {int(plan.corenet_config.num_steps)} steps) -> {plan.corenet_dir}")
            stage("train_corenet", train, plan.corenet_config, plan.corenet_dir, plan.progress)
            banner(f"3/5 train NPT ({NPT_CONFIG}, {int(plan.npt_config.num_steps)} steps) -> {plan.npt_dir}")
            stage("train_npt", train, plan.npt_config, plan.npt_dir, plan.progress)
        else:
            banner("2/4 the shipped models (nothing is trained; `--train` trains small ones instead)")
            describe_shipped(plan)
        banner(f"{stages - 1}/{stages} evaluate against the baselines ({plan.max_triples} test triples max, permutation "
               f"seeds {','.join(map(str, plan.permutation_seeds))}, EMD {plan.emd})")
        evaluation, csv_path, md_path = stage("eval", evaluate, plan)
        banner(f"{stages}/{stages} render {plan.num_renders} non-trivial test pairs -> {plan.render_dir}")
        renders = stage("render", render_pairs, plan)
    except (ValueError, FileNotFoundError, NotADirectoryError, CheckpointError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1

    total = time.perf_counter() - start
    timings["total"] = round(total, 2)
    curves = [plan.corenet_dir / LOSS_CURVE_FILE, plan.npt_dir / LOSS_CURVE_FILE] if plan.train else []
    summary = {
        "data": str(plan.data_dir),
        "runs": {"corenet": str(plan.corenet_dir), "npt": str(plan.npt_dir)},
        "results": {"markdown": str(md_path), "csv": str(csv_path)},
        "renders": [str(p) for p in renders],
        "loss_curves": [str(p) for p in curves],
        "seconds": timings,
    }
    atomic_write_text(plan.out / f"demo_summary{'_quick' if args.quick else ''}.json", json.dumps(summary, indent=1) + "\n")

    banner(f"done in {total / 60:.1f} min")
    print(f"data:         {plan.data_dir}")
    print(f"models:       {plan.corenet_dir}, {plan.npt_dir}")
    if curves:
        print(f"loss curves:  {', '.join(map(str, curves))}")
    print(f"results:      {md_path}, {csv_path}")
    print(f"renders:      {', '.join(map(str, renders)) or '(none)'}")
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print()
    print(format_table(evaluation.results))
    print(evaluation.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
