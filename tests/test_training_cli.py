"""The command-line entry points: `python -m train.tiny`, `jaxpose train`, `jaxpose eval`."""

import csv
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from training_support import REPO, TINY_CONFIG, config_args, jaxpose_command, run, subprocess_env, tiny_config

from jaxpose.training import cli_eval, cli_train, logs, tiny

SHORT = dict(num_steps=20, checkpoint_every=10, eval_every=10, log_every=5, keep_checkpoints=3)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Train 20 steps with `python -m train.tiny`, then resume to 30 with `jaxpose train`."""
    workdir = tmp_path_factory.mktemp("cli") / "run"
    first = run([sys.executable, "-m", "train.tiny", "--workdir", str(workdir), *config_args(tiny_config(**SHORT))])
    assert first.returncode == 0, first.stderr[-3000:]
    snapshot = {
        "steps": sorted(p.name for p in (workdir / "checkpoints").iterdir()),
        "records": logs.read_jsonl(workdir / logs.METRICS_FILE),
        "stderr": first.stderr,
    }
    second = run(jaxpose_command("train", "tiny", "--workdir", str(workdir),
                                 *config_args(tiny_config(**{**SHORT, "num_steps": 30}))))  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    return workdir, snapshot, second


def test_training_writes_every_output(trained_run):
    workdir, snapshot, _ = trained_run
    assert snapshot["steps"] == ["10", "20"]
    assert "items/s" in snapshot["stderr"] and "loss=" in snapshot["stderr"]  # the tqdm bar
    train = [r for r in snapshot["records"] if "train/loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert all(r["train/items_per_second"] > 0 for r in train)
    assert [r["step"] for r in snapshot["records"] if "eval/mean_point_error" in r] == [10, 20]
    assert list((workdir / logs.TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    assert (workdir / logs.LOSS_CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(workdir.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_second_command_resumed_from_the_checkpoint(trained_run):
    workdir, snapshot, second = trained_run
    assert "finished step 30" in second.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10", "20", "30"]
    records = logs.read_jsonl(workdir / logs.METRICS_FILE)
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert train[:4] == [r for r in snapshot["records"] if "train/loss" in r]  # history kept, not redone
    assert train[-1]["train/loss"] < train[0]["train/loss"]


def test_eval_cli_tabulates_checkpoint_and_baselines(trained_run, tmp_path, capsys):
    workdir, _, _ = trained_run
    data = tmp_path / "data"
    names = tiny.write_dataset(data, seed=9, count=6, num_points=16)
    (data / "subset.txt").write_text("\n".join(names[:5]) + "\n")
    out = tmp_path / "results"
    code = cli_eval.main(["tiny", "--checkpoint", str(workdir), "--baseline", "identity", "--baseline", "rotation_only",
                          "--data", str(data), "--list", str(data / "subset.txt"), "--output", str(out),
                          "--batch_size", "8"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "tiny:run@30" in printed and "baseline:identity" in printed
    rows = {row["method"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert list(rows) == ["tiny:run@30", "baseline:identity", "baseline:rotation_only"]
    examples = tiny.make_examples(9, 6, 16)
    errors = np.linalg.norm(examples["inputs"][:5].astype(np.float64) - examples["targets"][:5], axis=-1).mean(axis=1)
    assert float(rows["baseline:identity"]["mean_point_error_mean"]) == pytest.approx(errors.mean(), rel=1e-5)
    assert float(rows["baseline:identity"]["mean_point_error_std"]) == pytest.approx(errors.std(ddof=1), rel=1e-4)
    assert rows["tiny:run@30"]["n"] == "5"
    assert float(rows["tiny:run@30"]["mean_point_error_mean"]) < float(rows["baseline:identity"]["mean_point_error_mean"])
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("| method |") and "| baseline:rotation_only |" in markdown


def test_eval_cli_shows_progress_per_method(trained_run, tmp_path, capsys):
    workdir, _, _ = trained_run
    data = tmp_path / "data"
    tiny.write_dataset(data, seed=9, count=6, num_points=16)
    code = cli_eval.main(["tiny", "--checkpoint", str(workdir), "--baseline", "identity", "--data", str(data),
                          "--output", str(tmp_path / "results"), "--batch_size", "4"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    # One bar per method over its batches, marked "compiling" until the first batch returns, then full.
    for label in ("tiny:run@30", "baseline:identity"):
        assert re.search(rf"{re.escape(label)}: .*compiling…", err), err
        assert re.search(rf"{re.escape(label)}: 100%\S* *\S* (\d+)/\1 ", err), err


def test_cli_errors_are_clear(trained_run, tmp_path, capsys):
    workdir, _, _ = trained_run
    assert cli_train.main(["tiny", "--workdir", str(tmp_path), "--config", str(TINY_CONFIG),
                           "--config.optimizer.lrr=1"]) == 2  # fmt: skip
    assert "did you mean optimizer.lr" in capsys.readouterr().err
    mismatched = config_args(tiny_config(**{**SHORT, "num_steps": 30, "model.hidden": 16}))
    assert cli_train.main(["tiny", "--workdir", str(workdir), *mismatched]) == 2
    assert "model.hidden: checkpoint has 8, config has 16" in capsys.readouterr().err
    assert cli_eval.main(["tiny", "--baseline", "nope", "--config", str(TINY_CONFIG)]) == 2
    assert "no baseline 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_train.main(["tiny", "--workdir", str(tmp_path)])  # no --config


@pytest.mark.multiprocess
def test_ctrl_c_stops_cleanly_with_a_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    config = tiny_config(num_steps=100000, checkpoint_every=0, log_every=5)
    proc = subprocess.Popen(jaxpose_command("train", "tiny", "--workdir", str(workdir), "--no_progress", *config_args(config)),
                            cwd=REPO, env=subprocess_env(1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not logs.read_jsonl(workdir / logs.METRICS_FILE):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "training never logged"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted at step" in stderr
    steps = [int(p.name) for p in (workdir / "checkpoints").iterdir()]
    assert len(steps) == 1 and 5 <= steps[0] < 100000
    assert (workdir / logs.LOSS_CURVE_FILE).exists()
