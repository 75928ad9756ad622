"""INS vs SNARF vs SNARF-NC vs AVG-LBS / FIRST-LBS on CAPE-like subjects, and INS's ablations, at one
CPU budget (RESULTS.md §2).

    python -m train.skinning_comparison --workdir runs/ins_cape --steps 300 \\
        --subjects cape01,ctrl --ablations --dfaust_frames 4 --dfaust_points 100000

Every learned run uses `configs/<method>_cape.py` (all three load configs/skinning_cape_budget.py: same
data, sampling, warm starts, steps, optimiser, loss extras, root finding and evaluation) with
`num_steps = --steps` and `data.subject` set; INS ablations are overrides of configs/ins_cape.py
(INS Table 3). Each run trains in its own process (`jaxpose train`, so its wall time and peak memory
are its own), in WORKDIR/<subject>/<run>; a finished run is reused, an interrupted one resumed.
Scoring (in this process): the paper-comparable `cape` protocol on every held-out frame, then the
D-FAUST-style protocol (`--dfaust_points` uniform box points + as many near-surface points per frame,
first `--dfaust_frames` held-out frames); the LBS baselines are scored on the same points, and INS also
as deployed (`jaxpose.skinning.mesh_scoring`: canonical mesh extracted once at `--mesh_resolution`³,
reposed, the baselines' inside test). Tables already in WORKDIR/report.json for the same runs and
steps are reused (re-running adds only what is missing).
Outputs: WORKDIR/report.md and report.json (tables, wall times, machine, load), WORKDIR/curves.png
(per-run training BCE, point accuracy and the skinning field's posed-vertex error against steps).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.common import load_average, machine_description  # noqa: E402
from jaxpose.io.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from jaxpose.skinning.mesh_scoring import score_extracted_mesh  # noqa: E402
from jaxpose.skinning.repose import load_ins  # noqa: E402
from jaxpose.training.config import apply_overrides  # noqa: E402
from jaxpose.training.evaluation import load_checkpoint  # noqa: E402
from jaxpose.training.protocol import EvaluationRequest, StandardProtocol  # noqa: E402
from jaxpose.training.sharding import make_mesh  # noqa: E402

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
METHODS = {"ins": ("ins", "ins_cape.py"), "snarf": ("snarf", "snarf_cape.py"), "snarf_nc": ("snarf_nc", "snarf_nc_cape.py")}
ABLATIONS = {
    "ins_no_pose_multiplication": ["model.use_pose_multiplication=False"],
    "ins_no_siren": ["model.use_siren=False"],
    "ins_no_rotation": ["model.use_rotation=False"],
    "ins_no_h_d": ["model.use_h_d=False"],
    "ins_no_h_c": ["model.use_h_c=False"],
    "ins_no_lbs": ["model.use_lbs=False"],
}
LABELS = {"ins": "INS", "ins_mesh": "INS, extracted mesh reposed", "snarf": "SNARF", "snarf_nc": "SNARF-NC", "ins_no_pose_multiplication": "w/o pose multiplication",
          "ins_no_siren": "w/o SIREN", "ins_no_rotation": "w/o rotation", "ins_no_h_d": "w/o H_d", "ins_no_h_c": "w/o H_c",
          "ins_no_lbs": "w/o LBS"}


def _finished(workdir: pathlib.Path, steps: int) -> bool:
    return (workdir / "checkpoints" / str(steps)).is_dir()


def train_run(name: str, task: str, config_file: str, overrides: list[str], workdir: pathlib.Path) -> dict:
    """Train one run in a child process (reused if finished); returns its wall time, load and peak memory."""
    steps = int(next(o.split("=", 1)[1] for o in overrides if o.startswith("num_steps=")))
    if _finished(workdir, steps) and (workdir / "run.json").is_file():
        return json.loads((workdir / "run.json").read_text())
    command = [sys.executable, "-m", "jaxpose.cli", "train", task, "--config", str(CONFIGS / config_file),
               "--workdir", str(workdir), "--no_progress", *(f"--config.{o}" for o in overrides)]
    print(f"[{name}] {' '.join(command[2:])}", flush=True)
    load_start, start = load_average(), time.time()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"[{name}] training failed with exit code {child.returncode}")
    run = {"name": name, "command": " ".join(command[2:]), "wall_s": time.time() - start, "load_start": load_start,
           "load_end": load_average(), "peak_rss_gib": usage.ru_maxrss / 2**20}
    atomic_write_text(workdir / "run.json", json.dumps(run, indent=1))
    return run


def evaluate(workdirs: dict[str, pathlib.Path], data_overrides: list[str]) -> dict:
    """One table: every run and both LBS baselines on the same points ({row: {metric: (mean, std)}})."""
    mesh = make_mesh(jax.devices()[:1])
    loaded = [load_checkpoint(path, mesh) for path in workdirs.values()]
    config = apply_overrides(loaded[0].config, [tuple(o.split("=", 1)) for o in data_overrides])
    request = EvaluationRequest(config, loaded, ["avg_lbs", "first_lbs"], mesh, 1)
    start = time.time()
    report = StandardProtocol().evaluate(request)
    rows = {}
    for (row, summary), name in zip(report.results.items(), [*workdirs, "avg_lbs", "first_lbs"]):
        rows[name] = {metric: [float(s.mean), float(s.std)] for metric, s in summary.items()}
    return {"rows": rows, "frames": report.examples, "seconds": time.time() - start, "load_end": load_average()}


def evaluate_extracted(workdir: pathlib.Path, data_overrides: list[str], resolution: int) -> dict:
    """INS as deployed: canonical mesh extracted once at resolution³, reposed, the baselines' inside test."""
    model, config = load_ins(workdir)
    config = apply_overrides(config, [tuple(o.split("=", 1)) for o in data_overrides])
    start = time.time()
    scores = score_extracted_mesh(model, config, resolution=resolution)
    return {metric: [float(v.mean()), float(v.std())] for metric, v in scores.items()} | {"seconds": time.time() - start}


def curves(workdirs: dict[str, pathlib.Path], out: pathlib.Path) -> None:
    keys = (("train/bce", "training BCE"), ("train/point_accuracy", "point accuracy (batch)"),
            ("train/skinning_vertex_error", "skinning field: posed-vertex error (m)"))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, path in workdirs.items():
        records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
        records = [r for r in records if "train/bce" in r]
        for axis, (key, title) in zip(axes, keys):
            axis.plot([r["step"] for r in records], [r.get(key, float("nan")) for r in records], label=name)
            axis.set_title(title)
            axis.set_xlabel("step")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    path = out.with_suffix(".tmp.png")
    figure.savefig(path, dpi=90)
    plt.close(figure)
    atomic_write_bytes(out, path.read_bytes())
    path.unlink()


def markdown(report: dict) -> str:
    lines = [f"# INS comparison on CAPE-like subjects ({report['steps']} steps per learned run)", "",
             f"Machine: {report['machine']}; started {report['started']}.", ""]
    for subject, block in report["subjects"].items():
        for protocol, table in block["tables"].items():
            lines += [f"## {subject}, protocol `{protocol}` ({table['frames']} held-out frames, scored in {table['seconds']:.0f} s)",
                      "", "| method | IoU surface | IoU bbox | training wall time |", "|---|---|---|---|"]
            for name, row in table["rows"].items():
                run = block["runs"].get("ins" if name == "ins_mesh" else name)
                wall = f"{run['wall_s'] / 60:.1f} min (load {run['load_start']} → {run['load_end']})" if run else "—"
                label = LABELS.get(name, name.replace("_", "-").upper())
                lines.append(f"| {label} | {row['iou_surface'][0]:.4f} ± {row['iou_surface'][1]:.4f} | "
                             f"{row['iou_bbox'][0]:.4f} ± {row['iou_bbox'][1]:.4f} | {wall} |")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--subjects", default="cape01,ctrl", help="comma-separated subjects of the dataset")
    parser.add_argument("--methods", default="ins,snarf,snarf_nc")
    parser.add_argument("--ablations", action="store_true", help="also train INS's ablations (first subject only)")
    parser.add_argument("--dfaust_frames", type=int, default=4, help="held-out frames scored by the D-FAUST-style protocol (0: skip)")
    parser.add_argument("--dfaust_points", type=int, default=100_000)
    parser.add_argument("--mesh_resolution", type=int, default=128,
                        help="also score INS as deployed: canonical mesh extracted once at this grid resolution, reposed (0: skip)")
    parser.add_argument("--train_only", action="store_true")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to every run (repeatable), e.g. warm_start.occupancy_steps=100")
    args = parser.parse_args(argv)
    root = pathlib.Path(args.workdir)
    os.environ.setdefault("JAXPOSE_COMPILATION_CACHE", str(root / "xla_cache"))
    previous_file = root / "report.json"  # tables of an earlier invocation with the same runs are reused
    previous = json.loads(previous_file.read_text()) if previous_file.is_file() else {}
    previous_steps, previous = previous.get("steps"), previous.get("subjects", {})
    report = {"steps": args.steps, "machine": machine_description(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "subjects": {}}
    all_workdirs = {}
    for index, subject in enumerate(args.subjects.split(",")):
        runs, workdirs = {}, {}
        todo = [(m, *METHODS[m], []) for m in args.methods.split(",") if m]
        if args.ablations and index == 0:
            todo += [(name, "ins", "ins_cape.py", extra) for name, extra in ABLATIONS.items()]
        for name, task, config_file, extra in todo:
            workdir = root / subject / name
            overrides = [f"num_steps={args.steps}", f"data.subject={subject}", *args.override, *extra]
            runs[name] = train_run(name, task, config_file, overrides, workdir)
            workdirs[name] = workdir
        all_workdirs.update({f"{subject}/{k}": v for k, v in workdirs.items()})
        report["subjects"][subject] = {"runs": runs, "tables": {}, "workdirs": {k: str(v) for k, v in workdirs.items()}}
    # Every run is trained before any scoring: a child's peak RSS (ru_maxrss) counts what it inherited
    # at fork, so training after in-process scoring would report the scorer's memory as its own.
    for subject, block in ({} if args.train_only else report["subjects"]).items():
        workdirs = {k: pathlib.Path(v) for k, v in block.pop("workdirs").items()}
        tables = block["tables"]
        protocols = {"cape": ["data.eval_protocol=cape", "data.max_eval_frames=0"]}
        if args.dfaust_frames:
            n = str(args.dfaust_points)
            protocols["dfaust"] = ["data.eval_protocol=dfaust", f"data.eval_n_bbox={n}", f"data.eval_n_surface={n}",
                                   f"data.max_eval_frames={args.dfaust_frames}"]
        for protocol, data_overrides in protocols.items():
            table = previous.get(subject, {}).get("tables", {}).get(protocol)
            if not (table and previous_steps == args.steps and set(workdirs) <= set(table["rows"])):
                table = evaluate(workdirs, data_overrides)  # not scored before with these runs
            if "ins" in workdirs and args.mesh_resolution and "ins_mesh" not in table["rows"]:
                table["rows"]["ins_mesh"] = evaluate_extracted(workdirs["ins"], data_overrides, args.mesh_resolution)
                table["mesh_resolution"] = args.mesh_resolution
            tables[protocol] = table
            atomic_write_text(root / "report.json", json.dumps(report, indent=1))
        atomic_write_text(root / "report.md", markdown(report))
    for block in report["subjects"].values():
        block.pop("workdirs", None)
    if all_workdirs:
        curves(all_workdirs, root / "curves.png")
    atomic_write_text(root / "report.json", json.dumps(report, indent=1))
    atomic_write_text(root / "report.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
