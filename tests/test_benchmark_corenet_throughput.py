"""`benchmarks/corenet_throughput.py` runs end to end at tiny sizes; no time bound is asserted."""

from __future__ import annotations

import math

import pytest

from benchmarks import corenet_throughput as bench
from benchmarks.common import machine_description

TINY = ["model.feature_widths=(8,16,16)", "model.decoder_widths=(16,16,16)", "model.correlation_width=16",
        "batch_size=2", "npt_small:model.pose_widths=(8,16,16)"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from jaxpose.pose_transfer.npt_data import NptConfig, generate_npt_dataset

    directory = tmp_path_factory.mktemp("npt") / "data"
    generate_npt_dataset(directory, NptConfig(identities=4, poses=6, resolution="low"), progress=False)
    return str(directory)


def _table(report: str) -> list[dict]:
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert tuple(header) == bench.COLUMNS
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]


def test_tiny_run_reports_every_case(tiny_data, tmp_path, capsys):
    out = tmp_path / "throughput.md"
    # One train case, the cheapest to compile (each compiles a jitted state init and a step, ~10 s of CPU
    # apiece even at tiny widths); test_train_configs builds the other cases' configs.
    argv = ["--sizes", "64", "--repeats", "1", "--train-steps", "1", "--matmul-size", "128", "--bandwidth-mib", "4",
            "--cases", "inference,npt_small", "--data", tiny_data, "--out", str(out),
            "--override", "batch_size=2", "--override", "npt_small:model.pose_widths=(8,16,16)"]  # fmt: skip
    assert bench.main(argv) == 0
    report = out.read_text()
    assert report in capsys.readouterr().out
    assert machine_description() in report and "load average" in report and "jaxpose_commit" in report
    assert "python -m benchmarks.corenet_throughput --sizes 64" in report and "XLA's cost-analysis estimates" in report

    rows = _table(report)
    assert [row["case"] for row in rows] == [
        "matmul 128×128 @ 128×128 (start)", "bandwidth x*1.0001+1, 4 MiB in place", "inference dense N=64",
        "inference dense_scaling N=64", "train npt_small", "matmul 128×128 @ 128×128 (end)"]  # fmt: skip
    for row in rows:
        for column in ("GFLOP", "bytes (MiB)", "median (ms)", "GFLOP/s", "FLOP floor (ms)", "time / FLOP floor",
                       "roofline floor (ms)", "time / roofline"):  # fmt: skip
            value = float(row[column])
            assert math.isfinite(value) and value > 0, (column, row)
        assert float(row["roofline floor (ms)"]) >= float(row["FLOP floor (ms)"]) * (1 - 1e-3), row
        assert int(row["while loops (non-RNG)"]) >= 0
    by_case = {row["case"]: row for row in rows}
    # The log-domain Sinkhorn iterates in a lax.scan; the scaling domain is unrolled.
    assert int(by_case["inference dense N=64"]["while loops (non-RNG)"]) >= 1
    assert int(by_case["inference dense_scaling N=64"]["while loops (non-RNG)"]) == 0
    notes = by_case["train npt_small"]["notes"]
    assert "configs/npt_small.py" in notes and "batch 2" in notes and "1,229 vertices" in notes


def test_train_configs(tiny_data):
    import json
    import pathlib

    cases = bench.TRAIN_CASES + (bench.OFFICIAL_CASE,)
    built = bench.train_configs(cases, [bench.parse_override(o) for o in TINY], tiny_data)
    configs = {case[0]: config for case, config in built}
    assert list(configs) == ["corenet_small_dense", "corenet_small_scaling", "corenet_medium", "npt_small",
                             "corenet_official"]  # fmt: skip
    meta = json.loads((pathlib.Path(tiny_data) / "meta.json").read_text())["config"]
    for name, config in configs.items():
        assert config.data.root == tiny_data and config.data.build.to_dict() == meta and config.batch_size == 2, name
    assert configs["corenet_small_dense"].model.matching_mode == "dense"
    assert configs["corenet_small_scaling"].model.matching_mode == "dense_scaling"
    assert configs["corenet_medium"].model.matching_mode == "dense_scaling"
    assert configs["corenet_official"].model.feature_widths == (8, 16, 16)
    assert configs["npt_small"].model.pose_widths == (8, 16, 16)  # scoped: only NPT has the key
    with pytest.raises(ValueError, match="matches no selected train case"):
        bench.train_configs(bench.TRAIN_CASES[3:], [bench.parse_override("model.correlation_width=16")], tiny_data)
    with pytest.raises(KeyError):
        bench.train_configs(bench.TRAIN_CASES[3:], [bench.parse_override("npt_small:model.nonexistent=1")], tiny_data)
    assert bench.parse_override("a:b.c=1") == ("a", "b.c", "1") and bench.parse_override("b=x:y") == (None, "b", "x:y")
    with pytest.raises(ValueError):
        bench.parse_override("novalue")
    for argv in (["--cases", "nope"], ["--override", "nope:batch_size=2"], ["--override", "novalue"]):
        with pytest.raises(SystemExit):  # refused before anything is measured
            bench.main(argv)
