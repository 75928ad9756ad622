"""End-to-end fault injection on the `jaxpose` command line: provoke each fault, record what happens.

Every case runs the real CLI in a subprocess, as a user would, and checks the two things that matter:
the outcome (exit code and the error's first line) and that nothing was lost or silently wrong
(files that must not change are hashed before and after; checkpoints are checked for NaN).

    python -m benchmarks.fault_injection --workdir runs/faults [--big-seconds 90] [--out table.md]

Setup (once, reused): `jaxpose data npt` (4 identities x 8 poses, low resolution) and a 5-step
`corenet_small` run, then a 219k-vertex mesh pair (the full-resolution default body subdivided
twice: 219,368 vertices). Cases: 1 corrupt checkpoint (resume and transfer), 2 non-finite/huge learning rates, 3 two
runs on one workdir, 4 resume with a different config, 6 output over an input, 7 bad output paths,
8 dense matching on 219k x 219k, 9 online matching on 219k x 219k (run for `--big-seconds`, then
stopped: the check is that progress and an estimate are shown, not the hour it would take).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import machine_description

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Outcome:
    row: str
    fault: str
    rc: int | None
    seconds: float
    message: str
    intact: str


def _cli(*args, timeout: float | None = None, env: dict | None = None) -> tuple[int | None, str, str, float]:
    """Run `python -m jaxpose.cli ARGS`; (rc or None on timeout, stdout, stderr, seconds)."""
    command = [sys.executable, "-m", "jaxpose.cli", *map(str, args)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
        return done.returncode, done.stdout, done.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        err = (expired.stderr or b"").decode() if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        return None, out, err, time.perf_counter() - start


def _error_line(stderr: str) -> str:
    """The line a user reads: the last `error:` line, else the last non-progress line."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [number for number, line in enumerate(lines) if "error:" in line]
    if errors:
        number = errors[-1]
        shown = lines[number] + (" " + lines[number + 1] if lines[number].endswith(":") and number + 1 < len(lines) else "")
    else:
        shown = lines[-1] if lines else ""
    return shown.replace("|", "\\|")[:260]


def _hashes(root: pathlib.Path, skip: tuple[str, ...] = (".lock",)) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}  # fmt: skip


def _checkpoints_finite(workdir: pathlib.Path) -> str:
    """'all finite' or the error of the first checkpoint that fails restore (digests and finiteness)."""
    from jaxpose.training.checkpoint import CheckpointError, Checkpointer
    from jaxpose.training.evaluation import load_checkpoint
    from jaxpose.training.sharding import make_mesh

    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return "no checkpoints"
    steps = Checkpointer(directory, create=False).all_steps()
    for step in steps:
        try:
            load_checkpoint(workdir, make_mesh(), step)
        except CheckpointError as error:
            return f"step {step}: {str(error).splitlines()[0][:120]}"
    return f"checkpoints {steps} restore, all finite"


def setup(root: pathlib.Path) -> dict:
    data, run = root / "data", root / "cn5"
    if not (data / "meta.json").exists():
        rc, _, err, _ = _cli("data", "npt", "--out", data, "--identities", 4, "--poses", 8, "--test-triples", 8,
                             "--no-progress")  # fmt: skip
        assert rc == 0, err
    if not (run / "checkpoints").is_dir():
        rc, _, err, _ = _cli("train", "corenet", "--config", REPO / "configs/corenet_small.py", "--workdir", run,
                             "--config.num_steps=5", "--config.checkpoint_every=5", "--config.eval_every=0",
                             f"--config.data.root={data}", "--no_progress")  # fmt: skip
        assert rc == 0, err
    big = root / "big_identity.ply", root / "big_pose.ply"
    if not all(p.exists() for p in big):
        import trimesh  # only for the subdivision, once

        from jaxpose.io.mesh import save_mesh

        for path, posed in zip(big, (False, True)):
            vertices, faces = _full_body(posed)
            for _ in range(2):
                vertices, faces = trimesh.remesh.subdivide(vertices, faces)
            save_mesh(path, vertices, faces)
    return {"data": data, "run": run, "big": big}


def _full_body(posed: bool) -> tuple[np.ndarray, np.ndarray]:
    """The full-resolution default body: (vertices (V, 3) m, faces (F, 3)); a second shape with the
    shoulders lowered by 60° when `posed`, else the mean shape at rest."""
    import jax.numpy as jnp

    from jaxpose.bodies.default import default_body
    from jaxpose.bodies.model import forward, joint_rotation, zero_pose

    body = default_body("full")
    betas = jnp.zeros((1,)).at[0].set(1.0 if posed else 0.0)
    pose = zero_pose(body)
    if posed:
        pose = pose.at[16].set(jnp.asarray(joint_rotation("z", -60.0))).at[17].set(jnp.asarray(joint_rotation("z", 60.0)))
    return np.asarray(forward(body, betas, pose).vertices, np.float64), np.asarray(body.faces)


def row1(s: dict, root: pathlib.Path) -> list[Outcome]:
    run = root / "row1"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(s["run"], run)
    files = [p for p in (run / "checkpoints" / "5" / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle - 2048 : middle + 2048] = np.random.default_rng(0).bytes(len(data[middle - 2048 : middle + 2048]))
    target.write_bytes(bytes(data))
    before = _hashes(run)
    rc, _, err, seconds = _cli("train", "corenet", "--config", REPO / "configs/corenet_small.py", "--workdir", run,
                               "--config.num_steps=7", "--config.checkpoint_every=5", "--config.eval_every=0",
                               f"--config.data.root={s['data']}", "--no_progress")  # fmt: skip
    intact = "workdir unchanged" if _hashes(run) == before else "WORKDIR CHANGED"
    outcomes = [Outcome("1", "4,096 bytes overwritten in an array file, then resume", rc, seconds, _error_line(err), intact)]
    out = root / "row1_out.obj"
    out.unlink(missing_ok=True)
    rc, _, err, seconds = _cli("transfer", "--identity", s["data"] / "id0_200.obj", "--pose", s["data"] / "id1_600.obj",
                               "--checkpoint", run, "--out", out)  # fmt: skip
    outcomes.append(Outcome("1", "the same checkpoint to `transfer`", rc, seconds, _error_line(err),
                            "no output written" if not out.exists() else "OUTPUT WRITTEN"))  # fmt: skip
    return outcomes


def row2(root: pathlib.Path) -> list[Outcome]:
    outcomes = []
    for value in ("nan", "inf", "1e8"):
        work = root / f"row2_{value}"
        shutil.rmtree(work, ignore_errors=True)
        rc, _, err, seconds = _cli("train", "tiny", "--config", REPO / "configs/tiny.py", "--workdir", work,
                                   f"--config.optimizer.lr={value}", "--no_progress")  # fmt: skip
        intact = "workdir not created" if not work.exists() else _checkpoints_finite(work)
        outcomes.append(Outcome("2", f"`--config.optimizer.lr={value}`", rc, seconds, _error_line(err), intact))
    return outcomes


def row3(root: pathlib.Path) -> list[Outcome]:
    work = root / "row3"
    shutil.rmtree(work, ignore_errors=True)
    command = [sys.executable, "-m", "jaxpose.cli", "train", "tiny", "--config", str(REPO / "configs/tiny.py"),
               "--workdir", str(work), "--no_progress", "--config.num_steps=400", "--config.log_every=1"]  # fmt: skip
    start = time.perf_counter()
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (work / ".lock").exists() and first.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    first_out, first_err = first.communicate()
    seconds = time.perf_counter() - start
    log = (work / "metrics.jsonl").read_text() if (work / "metrics.jsonl").exists() else ""
    train_records = sum('"train/loss"' in line for line in log.splitlines())
    intact = f"first run rc {first.returncode}; metrics.jsonl has {train_records} of 400 train records"
    return [Outcome("3", "a second `train tiny` on the same workdir while the first runs", second.returncode,
                    seconds, _error_line(second.stderr), intact)]  # fmt: skip


def row4(s: dict, root: pathlib.Path) -> list[Outcome]:
    run = root / "row4"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(s["run"], run)
    before = _hashes(run)
    rc, _, err, seconds = _cli("train", "corenet", "--config", REPO / "configs/corenet_small.py", "--workdir", run,
                               "--config.num_steps=7", "--config.seed=1", "--config.eval_every=0",
                               f"--config.data.root={s['data']}", "--no_progress")  # fmt: skip
    intact = "workdir (config.json included) unchanged" if _hashes(run) == before else "WORKDIR CHANGED"
    return [Outcome("4", "resume with a different seed", rc, seconds, _error_line(err), intact)]


def row6_7(s: dict, root: pathlib.Path) -> list[Outcome]:
    outcomes = []
    identity = root / "row6_identity.obj"
    shutil.copyfile(s["data"] / "id0_200.obj", identity)
    digest = hashlib.sha256(identity.read_bytes()).hexdigest()
    rc, _, err, seconds = _cli("transfer", "--identity", identity, "--pose", s["data"] / "id1_600.obj",
                               "--checkpoint", s["run"], "--out", identity)  # fmt: skip
    intact = "input unchanged" if hashlib.sha256(identity.read_bytes()).hexdigest() == digest else "INPUT CHANGED"
    outcomes.append(Outcome("6", "`--out` equal to `--identity`", rc, seconds, _error_line(err), intact))
    blocker = root / "row7_file"
    blocker.write_text("not a directory\n")
    for out, what in ((root / "out.stl", "`--out out.stl`"), (pathlib.Path("."), "`--out .`"),
                      (blocker / "x.obj", "`--out existing_file/x.obj`")):  # fmt: skip
        rc, _, err, seconds = _cli("transfer", "--identity", s["data"] / "id0_200.obj", "--pose",
                                   s["data"] / "id1_600.obj", "--checkpoint", s["run"], "--out", out)  # fmt: skip
        intact = "nothing written" if not (root / "out.stl").exists() else "FILE WRITTEN"
        outcomes.append(Outcome("7", what, rc, seconds, _error_line(err), intact))
    return outcomes


def row8_9(s: dict, root: pathlib.Path, big_seconds: float) -> list[Outcome]:
    identity, pose = s["big"]
    from jaxpose.io.mesh import load_mesh

    size = f"{len(load_mesh(identity).vertices):,} x {len(load_mesh(pose).vertices):,} vertices"
    outcomes = []
    out = root / "big_out.ply"
    out.unlink(missing_ok=True)
    rc, _, err, seconds = _cli("transfer", "--identity", identity, "--pose", pose, "--checkpoint", s["run"],
                               "--out", out, "--matching", "dense", timeout=big_seconds)  # fmt: skip
    outcomes.append(Outcome("8", f"{size}, `--matching dense`", rc, seconds, _error_line(err),
                            "no output written" if not out.exists() else "output written"))  # fmt: skip
    rc, _, err, seconds = _cli("transfer", "--identity", identity, "--pose", pose, "--checkpoint", s["run"],
                               "--out", out, "--matching", "online", timeout=big_seconds)  # fmt: skip
    bars = [line for line in err.replace("\r", "\n").splitlines() if "%|" in line or "estimate" in line.lower()]
    shown = (bars[0].strip()[:110] + " … " + bars[-1].strip()[:110]) if bars else "NO PROGRESS SHOWN"
    status = "finished" if rc == 0 else ("stopped after the time limit" if rc is None else f"rc {rc}")
    outcomes.append(Outcome("9", f"the same, `--matching online` (run for {big_seconds:.0f} s)", rc, seconds,
                            shown.replace("|", "\\|"), status))  # fmt: skip
    return outcomes


def format_table(outcomes: list[Outcome]) -> str:
    lines = ["| row | fault | exit | seconds | what the user sees | nothing lost? |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        rc = "timeout" if o.rc is None else str(o.rc)
        lines.append(f"| {o.row} | {o.fault} | {rc} | {o.seconds:.1f} | {o.message} | {o.intact} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/faults", help="scratch directory (setup is reused)")
    parser.add_argument("--big-seconds", type=float, default=90.0, help="time limit of the 219k x 219k cases")
    parser.add_argument("--out", help="also write the table (Markdown) here")
    parser.add_argument("--rows", default="1,2,3,4,6,7,8,9", help="comma-separated rows to run")
    args = parser.parse_args(argv)
    root = pathlib.Path(args.workdir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    rows = set(args.rows.split(","))
    start = time.perf_counter()
    print("setting up (data npt, 5-step corenet_small, 219k-vertex meshes) ...", file=sys.stderr, flush=True)
    s = setup(root)
    outcomes: list[Outcome] = []
    cases = [("1", lambda: row1(s, root)), ("2", lambda: row2(root)), ("3", lambda: row3(root)),
             ("4", lambda: row4(s, root)), ("6", lambda: row6_7(s, root)), ("8", lambda: row8_9(s, root, args.big_seconds))]  # fmt: skip
    for row, case in cases:
        if row in rows or (row == "6" and "7" in rows) or (row == "8" and "9" in rows):
            print(f"row {row} ...", file=sys.stderr, flush=True)
            outcomes += case()
    table = format_table(outcomes)
    footer = (f"\n`python -m benchmarks.fault_injection {' '.join(argv if argv is not None else sys.argv[1:])}`; "
              f"{machine_description()}; {time.perf_counter() - start:.0f} s in all.\n")  # fmt: skip
    print(table + footer)
    if args.out:
        from jaxpose.io.atomic import atomic_write_text

        atomic_write_text(args.out, table + footer)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
