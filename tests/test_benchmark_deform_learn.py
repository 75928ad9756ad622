"""`benchmarks/deform_learn.py` runs end to end and writes a JSON with every row; no time bound is asserted."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import deform_learn as bench


def _check_rows(rows, keys, expected, positive, repeats):
    assert sorted(tuple(row[k] for k in keys) for row in rows) == sorted(expected)
    for row in rows:
        for key in bench.TIMING_KEYS + positive:
            value = row[key]
            assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, row)
        assert len(row["times_s"]) == repeats and all(math.isfinite(t) and t > 0 for t in row["times_s"]), row


def test_tiny_run_writes_every_row(tmp_path, capsys):
    out, markdown = tmp_path / "deform_learn.json", tmp_path / "deform_learn.md"
    argv = ["--quick", "--registration-batches", "1", "2", "--registration-steps", "3", "--presets", "tiny",
            "--convnet-batch", "2", "--convnet-steps", "2", "--lifter-batch", "4", "--lifter-steps", "2",
            "--image-size", "32", "--repeats", "1", "--out", str(out), "--markdown", str(markdown)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    for key in ("machine", "versions", "load_before", "load_after", "started_utc", "finished_utc", "command", "config"):
        assert result[key], key
    assert result["benchmark"] == "deform_learn" and result["quick"]
    assert result["settings"]["repeats"] == 1 and result["settings"]["presets"] == ["tiny"]
    assert result["data"]["images"] == 4 and result["data"]["image_size"] == 32 and result["data"]["seconds"] > 0

    _check_rows(result["registration"], ("batch",), [(1,), (2,)], bench.SECTION_KEYS["registration"], repeats=1)
    for row in result["registration"]:
        assert row["steps"] == 3 and row["vertices"] == 1229
        assert math.isclose(row["registrations_per_s"] * row["per_registration_s"], 1.0, rel_tol=1e-9)
        assert math.isfinite(row["initial_mean_energy"]) and math.isfinite(row["final_mean_energy"])
    _check_rows(result["convnet"], ("preset", "batch"), [("tiny", 2)], bench.SECTION_KEYS["convnet"], repeats=1)
    convnet = result["convnet"][0]
    assert convnet["steps_per_call"] == 2 and math.isclose(convnet["images_per_s"], 2 * convnet["steps_per_s"])
    assert math.isfinite(convnet["final_loss"])
    _check_rows(result["lifter"], ("batch",), [(4,)], bench.SECTION_KEYS["lifter"], repeats=1)
    lifter = result["lifter"][0]
    assert (lifter["width"], lifter["depth"]) == (256, 3) and math.isfinite(lifter["final_loss"])

    report = markdown.read_text()
    assert "### Registration" in report and "### ConvNet training" in report and "### Lifter training" in report
    assert "independent problems" in report
    assert report in capsys.readouterr().out


def test_check_result_rejects_bad_numbers():
    timing = {"compile_s": 1.0, "first_call_s": 2.0, "median_s": 1.0, "min_s": 0.5}
    rows = {section: [{**timing, **{key: 1.0 for key in keys}}] for section, keys in bench.SECTION_KEYS.items()}
    bench.check_result(rows)
    with pytest.raises(ValueError, match="steps_per_s"):
        bench.check_result({**rows, "lifter": [{**rows["lifter"][0], "steps_per_s": float("nan")}]})
    with pytest.raises(ValueError, match="no rows"):
        bench.check_result({**rows, "convnet": []})


def test_quick_settings_drop_resnet50():
    quick, full = bench.Settings.quick_settings(), bench.Settings()
    assert "resnet50" in full.presets and "resnet50" not in quick.presets
    assert quick.repeats < full.repeats and full.registration_batches == (1, 10, 100)
    assert full.num_images == 100
