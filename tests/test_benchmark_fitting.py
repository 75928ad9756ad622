"""`benchmarks/fitting.py` runs end to end and writes a JSON with every row; no time bound is asserted."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import fitting as bench


def _check_rows(rows, expected_keys, positive):
    assert sorted(tuple(row[k] for k in expected_keys[0]) for row in rows) == sorted(expected_keys[1])
    for row in rows:
        for key in positive:
            value = row[key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, row)
        assert all(math.isfinite(t) and t > 0 for t in row["times_s"]), row


def _check_json(path, solvers, fit_batches, bodies, sizes, cnn_batches, repeats):
    result = json.loads(path.read_text())
    for key in ("machine", "versions", "load_before", "load_after", "started_utc", "finished_utc", "command"):
        assert result[key], key
    assert result["settings"]["repeats"] == repeats
    timing = ("compile_s", "first_call_s", "median_s", "min_s")
    _check_rows(result["fitting"], (("solver", "batch"), [(s, b) for s in solvers for b in fit_batches]),
                timing + ("per_person_s", "people_per_s", "initial_mean_error_px", "final_mean_error_px"))
    for row in result["fitting"]:
        assert row["vertices"] == 1229 and row["image_size"] == 128 and len(row["mean_iterations"]) == 2
        assert all(n > 0 for n in row["mean_iterations"])
    _check_rows(result["render"], (("body", "image_size"), [(b, s) for b in bodies for s in sizes]), timing)
    assert all(row["covered_pixels"] > 0 for row in result["render"])
    _check_rows(result["cnn"], (("batch",), [(b,) for b in cnn_batches]), timing + ("ms_per_image", "parameters"))
    for row in result["fitting"] + result["render"] + result["cnn"]:
        assert len(row["times_s"]) == repeats
    return result


def test_tiny_run_writes_every_row(tmp_path, capsys):
    out, markdown = tmp_path / "fitting.json", tmp_path / "fitting.md"
    argv = ["--quick", "--solvers", "adam", "--fit-batches", "2", "--render-bodies", "low", "--render-sizes", "32",
            "--cnn-batches", "2", "--repeats", "1", "--out", str(out), "--markdown", str(markdown)]
    assert bench.main(argv) == 0
    result = _check_json(out, ["adam"], [2], ["low"], [32], [2], repeats=1)
    assert result["quick"] and result["fitting"][0]["stage_steps"] == list(bench.QUICK_STEPS["adam"])
    report = markdown.read_text()
    assert "### Fitting" in report and "### Rendering" in report and "### Refinement U-Net" in report
    assert report in capsys.readouterr().out


def test_check_result_rejects_bad_numbers():
    row = {"compile_s": 1.0, "first_call_s": 2.0, "median_s": 1.0, "min_s": 0.5, "ms_per_image": 3.0}
    fit_row = {**row, "per_person_s": 1.0, "people_per_s": 1.0}
    bench.check_result({"fitting": [fit_row], "render": [row], "cnn": [row]})
    with pytest.raises(ValueError, match="median_s"):
        bench.check_result({"fitting": [fit_row], "render": [{**row, "median_s": float("nan")}], "cnn": [row]})
    with pytest.raises(ValueError, match="no rows"):
        bench.check_result({"fitting": [], "render": [row], "cnn": [row]})


@pytest.mark.slow
def test_quick_run_has_every_row(tmp_path):
    out = tmp_path / "quick.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    _check_json(out, list(bench.SOLVERS), [1, 4], ["low", "full"], [128, 64], [1, 4], repeats=3)
