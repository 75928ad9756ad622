"""`jaxpose demo --quick` (the shipped models) and `--quick --train` (tiny training) end to end in a
temporary directory, plus the demo's cheap pure helpers.

The demo runs as a real CLI subprocess on one CPU device (the suite's 8 simulated devices are
dropped), sharing the suite's persistent compilation cache.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from jaxpose.pose_transfer import demo
from jaxpose.pose_transfer.pairs import npt_config

REPO = pathlib.Path(__file__).resolve().parents[1]
EXPECTED_ROWS = ("corenet [", "corenet raw OT warp [", "npt [", "copy_identity", "copy_pose", "deformation_transfer")


def _run_demo(out: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(REPO / ".jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "jaxpose.cli", "demo", "--quick", "--no-progress", "--out", str(out), *extra]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    completed = _run_demo(out, "--train")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, completed


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_shipped") / "run"
    completed = _run_demo(out)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, completed


def _check_table(csv_path: pathlib.Path) -> list[dict]:
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    methods = [row["method"] for row in rows]
    for prefix in EXPECTED_ROWS:
        assert sum(m.startswith(prefix) for m in methods) == 1, (prefix, methods)
    for row in rows:
        numbers = {k: float(v) for k, v in row.items() if k.endswith(("_mean", "_std"))}
        assert all(math.isfinite(v) for v in numbers.values()), row
        assert int(row["n"]) == demo.QUICK_TRIPLES
    return rows


def test_shipped_demo_evaluates_the_packaged_models_on_non_trivial_pairs(shipped_run):
    out, completed = shipped_run
    rows = {row["method"].split(" [")[0]: row for row in _check_table(out / "eval_quick" / "results.csv")}
    assert "corenet_medium@" in completed.stdout and "npt_medium@" in completed.stdout
    pmd = {name: float(row["PMD_1e-4m2_mean"]) for name, row in rows.items()}
    # The shipped 3D-CoreNet is a trained model: better than its own raw OT warp and than the shipped NPT
    # on held-out triples (copying the identity can be exact here: the 2 quick triples may share a pose).
    assert pmd["corenet"] < pmd["corenet raw OT warp"]
    assert pmd["corenet"] < pmd["npt"]
    for stage in ("=== 1/4 data", "=== 2/4 the shipped models", "=== 3/4 evaluate", "=== 4/4 render"):
        assert stage in completed.stdout
    summary = json.loads((out / "demo_summary_quick.json").read_text())
    assert summary["loss_curves"] == [] and set(summary["seconds"]) == {"data", "eval", "render", "total"}
    (render,) = summary["renders"]
    assert pathlib.Path(render).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The rendered pair shows another person in another pose (printed as "identity idI_P, pose idJ_Q").
    line = next(text for text in completed.stdout.splitlines() if render in text)
    identity, pose = line.split("identity ")[1].split(",")[0], line.split("pose ")[1].split(",")[0]
    (ia, pa), (ib, pb) = (tuple(x.removeprefix("id").split("_")) for x in (identity, pose))
    assert ia != ib and pa != pb


def test_non_trivial_keeps_only_pairs_with_another_identity_and_pose():
    from jaxpose.pose_transfer.test_lists import Triple

    triples = [Triple(1, 2, 1, 3), Triple(1, 2, 4, 2), Triple(1, 2, 4, 3), Triple(5, 6, 7, 8)]
    assert demo.non_trivial(triples) == [Triple(1, 2, 4, 3), Triple(5, 6, 7, 8)]


def test_quick_demo_writes_table_with_every_row_and_finite_numbers(quick_run):
    out, completed = quick_run
    with open(out / "eval_train_quick" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    methods = [row["method"] for row in rows]
    for prefix in EXPECTED_ROWS:
        assert sum(m.startswith(prefix) for m in methods) == 1, (prefix, methods)
    assert len(rows) == len(EXPECTED_ROWS)
    for row in rows:
        numbers = {k: float(v) for k, v in row.items() if k.endswith(("_mean", "_std"))}
        assert {"PMD_1e-4m2_mean", "CD_1e-4m2_mean"} <= set(numbers), row
        assert all(math.isfinite(v) for v in numbers.values()), row
        assert numbers["PMD_1e-4m2_mean"] >= 0 and numbers["CD_1e-4m2_mean"] >= 0
        assert int(row["n"]) == demo.QUICK_TRIPLES
    markdown = (out / "eval_train_quick" / "results.md").read_text()
    assert all(prefix in markdown for prefix in EXPECTED_ROWS)
    # The printed summary ends with the same table and says where everything is.
    assert "deformation_transfer (oracle S0)" in completed.stdout
    assert str(out / "eval_train_quick" / "results.md") in completed.stdout
    for stage in ("=== 1/5 data", "=== 2/5 train 3D-CoreNet", "=== 3/5 train NPT", "=== 4/5 evaluate", "=== 5/5 render"):
        assert stage in completed.stdout


def test_quick_demo_writes_renders_curves_and_checkpoints(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "demo_summary_quick.json").read_text())
    assert len(summary["renders"]) == demo.QUICK_RENDERS
    for path in summary["renders"] + summary["loss_curves"]:
        data = pathlib.Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, path
    for run in ("corenet_small_train_quick", "npt_small_train_quick"):
        assert (out / run / "checkpoints" / str(demo.QUICK_STEPS)).is_dir()
        steps = [json.loads(line)["step"] for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert max(steps) == demo.QUICK_STEPS
    assert (out / "data_quick" / "meta.json").is_file()
    assert set(summary["seconds"]) == {"data", "train_corenet", "train_npt", "eval", "render", "total"}


def test_demo_refuses_to_resume_a_checkpoint_of_another_config(quick_run):
    out, _ = quick_run
    completed = _run_demo(out, "--train", "--corenet-override", "model.correlation_width=8")
    assert completed.returncode == 1
    assert "different config" in completed.stderr and "corenet_small_train_quick" in completed.stderr


def _plan(*argv):
    return demo.make_plan(demo.build_parser("jaxpose demo").parse_args(list(argv)))


def test_plan_defaults_and_quick_overrides(tmp_path):
    shipped_plan = _plan("--out", str(tmp_path))
    assert not shipped_plan.train and shipped_plan.corenet_dir.name == "corenet_medium"
    assert shipped_plan.eval_dir == tmp_path / "eval" and shipped_plan.render_dir == tmp_path / "renders"
    with pytest.raises(ValueError, match="--train"):
        _plan("--out", str(tmp_path), "--steps", "10")
    full = _plan("--out", str(tmp_path), "--train")
    assert full.corenet_config.data.root == str(tmp_path / "data")
    assert full.npt_config.data.root == str(tmp_path / "data")
    from jaxpose.training.config import load_config

    shipped = load_config(REPO / "configs" / "corenet_small.py")
    assert tuple(full.corenet_config.model.decoder_widths) == tuple(shipped.model.decoder_widths)
    assert full.corenet_config.num_steps == shipped.num_steps  # no --steps: the config's own
    assert full.permutation_seeds == (0, 1, 2) and full.emd == "none"
    assert _plan("--out", str(tmp_path), "--emd", "exact").emd == "exact"
    quick = _plan("--out", str(tmp_path), "--quick", "--train", "--npt-override", "model.pose_widths=(4, 4, 8)")
    assert quick.corenet_dir == tmp_path / "corenet_small_train_quick"
    assert [(f"data.build.{k}", str(v)) for k, v in quick.corenet_config.data.build.items()
            if k in ("identities", "poses")] == list(demo.QUICK_BUILD)
    assert quick.corenet_config.num_steps == demo.QUICK_STEPS and quick.npt_config.batch_size == 2
    assert tuple(quick.npt_config.model.pose_widths) == (4, 4, 8)
    assert quick.emd == "none"


def test_steps_stretch_the_constant_then_linear_schedule(tmp_path):
    plan = _plan("--out", str(tmp_path), "--train", "--steps", "300")
    opt, config = plan.corenet_config.optimizer, plan.corenet_config
    steps_per_epoch = config.data.pairs_per_epoch / config.batch_size
    assert config.num_steps == 300
    assert math.isclose((opt.constant_epochs + opt.decay_epochs) * steps_per_epoch, 300)
    assert math.isclose(opt.constant_epochs, opt.decay_epochs)  # the configs' 50/50 split is kept


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _plan("--out", str(tmp_path), "--train", "--corenet-override", "model.decoder_widths")
    with pytest.raises(ValueError, match="no such config key"):
        _plan("--out", str(tmp_path), "--train", "--corenet-override", "model.no_such_field=3")
    with pytest.raises(ValueError, match="--steps"):
        _plan("--out", str(tmp_path), "--train", "--steps", "0")
    with pytest.raises(ValueError, match="no such config key"):
        _plan("--out", str(tmp_path), "--train", "--corenet-override", "data.build.colour=red")
    with pytest.raises(ValueError, match="data.build has unknown keys"):
        npt_config(ml_collections.ConfigDict({"identities": 4, "colour": "red"}))
    config = npt_config(ml_collections.ConfigDict({"identities": 4, "poses": 6, "resolution": "low", "seed": 3}))
    assert (config.identities, config.poses, config.resolution, config.seed) == (4, 6, "low", 3)
    with pytest.raises(ValueError, match="the CoreNet and NPT configs must use the same dataset"):
        _plan("--out", str(tmp_path), "--train", "--npt-override", "data.build.seed=1")
