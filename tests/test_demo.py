"""`jaxpose demo --quick` end to end in a temporary directory, plus its cheap pure helpers.

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
EXPECTED_ROWS = ("corenet [", "corenet raw OT warp [", "npt [", "copy_identity", "deformation_transfer")


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
    completed = _run_demo(out)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, completed


def test_quick_demo_writes_table_with_every_row_and_finite_numbers(quick_run):
    out, completed = quick_run
    with open(out / "eval_quick" / "results.csv", newline="") as handle:
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
    markdown = (out / "eval_quick" / "results.md").read_text()
    assert all(prefix in markdown for prefix in EXPECTED_ROWS)
    # The printed summary ends with the same table and says where everything is.
    assert "deformation_transfer (oracle S0)" in completed.stdout
    assert str(out / "eval_quick" / "results.md") in completed.stdout
    for stage in ("=== 1/5 data", "=== 2/5 train 3D-CoreNet", "=== 3/5 train NPT", "=== 4/5 evaluate", "=== 5/5 render"):
        assert stage in completed.stdout


def test_quick_demo_writes_renders_curves_and_checkpoints(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "demo_summary_quick.json").read_text())
    assert len(summary["renders"]) == demo.QUICK_RENDERS
    for path in summary["renders"] + summary["loss_curves"]:
        data = pathlib.Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, path
    for run in ("corenet_small_quick", "npt_small_quick"):
        assert (out / run / "checkpoints" / str(demo.QUICK_STEPS)).is_dir()
        steps = [json.loads(line)["step"] for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert max(steps) == demo.QUICK_STEPS
    assert (out / "data_quick" / "meta.json").is_file()
    assert set(summary["seconds"]) == {"data", "train_corenet", "train_npt", "eval", "render", "total"}


def test_demo_refuses_to_resume_a_checkpoint_of_another_config(quick_run):
    out, _ = quick_run
    completed = _run_demo(out, "--corenet-override", "model.correlation_width=8")
    assert completed.returncode == 1
    assert "different config" in completed.stderr and "corenet_small_quick" in completed.stderr


def _plan(*argv):
    return demo.make_plan(demo.build_parser("jaxpose demo").parse_args(list(argv)))


def test_plan_defaults_and_quick_overrides(tmp_path):
    full = _plan("--out", str(tmp_path))
    assert full.corenet_config.data.root == str(tmp_path / "data")
    assert full.npt_config.data.root == str(tmp_path / "data")
    from jaxpose.training.config import load_config

    shipped = load_config(REPO / "configs" / "corenet_small.py")
    assert tuple(full.corenet_config.model.decoder_widths) == tuple(shipped.model.decoder_widths)
    assert full.corenet_config.num_steps == shipped.num_steps  # no --steps: the config's own
    assert full.permutation_seeds == (0, 1, 2) and full.emd == "none"
    assert _plan("--out", str(tmp_path), "--emd", "exact").emd == "exact"
    quick = _plan("--out", str(tmp_path), "--quick", "--npt-override", "model.pose_widths=(4, 4, 8)")
    assert quick.corenet_dir == tmp_path / "corenet_small_quick"
    assert [(f"data.build.{k}", str(v)) for k, v in quick.corenet_config.data.build.items()
            if k in ("identities", "poses")] == list(demo.QUICK_BUILD)
    assert quick.corenet_config.num_steps == demo.QUICK_STEPS and quick.npt_config.batch_size == 2
    assert tuple(quick.npt_config.model.pose_widths) == (4, 4, 8)
    assert quick.emd == "none"


def test_steps_stretch_the_constant_then_linear_schedule(tmp_path):
    plan = _plan("--out", str(tmp_path), "--steps", "300")
    opt, config = plan.corenet_config.optimizer, plan.corenet_config
    steps_per_epoch = config.data.pairs_per_epoch / config.batch_size
    assert config.num_steps == 300
    assert math.isclose((opt.constant_epochs + opt.decay_epochs) * steps_per_epoch, 300)
    assert math.isclose(opt.constant_epochs, opt.decay_epochs)  # the configs' 50/50 split is kept


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        _plan("--out", str(tmp_path), "--corenet-override", "model.decoder_widths")
    with pytest.raises(ValueError, match="no such config key"):
        _plan("--out", str(tmp_path), "--corenet-override", "model.no_such_field=3")
    with pytest.raises(ValueError, match="--steps"):
        _plan("--out", str(tmp_path), "--steps", "0")
    with pytest.raises(ValueError, match="no such config key"):
        _plan("--out", str(tmp_path), "--corenet-override", "data.build.colour=red")
    with pytest.raises(ValueError, match="data.build has unknown keys"):
        npt_config(ml_collections.ConfigDict({"identities": 4, "colour": "red"}))
    config = npt_config(ml_collections.ConfigDict({"identities": 4, "poses": 6, "resolution": "low", "seed": 3}))
    assert (config.identities, config.poses, config.resolution, config.seed) == (4, 6, "low", 3)
    with pytest.raises(ValueError, match="the CoreNet and NPT configs must use the same dataset"):
        _plan("--out", str(tmp_path), "--npt-override", "data.build.seed=1")
