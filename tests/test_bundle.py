"""Model bundles (`jaxpose.training.bundle`): export → load round trip, and clear errors on damaged bundles."""

from __future__ import annotations

import json
import os
import stat

import jax
import numpy as np
import pytest

from jaxpose.pose_transfer import protocol
from jaxpose.pose_transfer.pairs import open_data
from jaxpose.training.bundle import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    BundleError,
    export_bundle,
    flatten_arrays,
    is_bundle,
    load_bundle,
    read_manifest,
)
from jaxpose.training.evaluation import load_checkpoint
from jaxpose.training.sharding import make_mesh
from jaxpose.training.state import merge_model
from transfer_support import write_transfer_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return write_transfer_setup(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def exported(setup, tmp_path_factory):
    loaded = load_checkpoint(setup["root"] / "corenet", make_mesh(jax.devices()[:1]))
    out = tmp_path_factory.mktemp("bundles") / "corenet_tiny"
    export_bundle(loaded, out, provenance={"commands": ["x"]}, extra_npz={"check.npz": {"a": np.arange(3)}})
    return loaded, out


def _copy(bundle, tmp_path):
    target = tmp_path / bundle.name
    target.mkdir()
    for file in bundle.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def test_round_trip_restores_every_array_and_the_same_predictions(setup, exported):
    loaded, out = exported
    assert is_bundle(out) and not is_bundle(setup["root"] / "corenet")
    bundle = load_bundle(out)
    assert bundle.task.name == "corenet" and bundle.step == loaded.step and bundle.name == f"corenet_tiny@{loaded.step}"
    for original, restored in ((loaded.state.params, bundle.state.params), (loaded.state.model_state, bundle.state.model_state)):
        a, b = flatten_arrays(jax.device_get(original)), flatten_arrays(jax.device_get(restored))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    data = open_data(setup["root"] / "data")
    batch = protocol.eval_arrays(data, data.test_triples(None)[:2], 0)

    def run(checkpoint):
        model = merge_model(checkpoint.graphdef, checkpoint.state.params, checkpoint.state.model_state)
        model.eval(update_stats=False)
        return np.asarray(protocol.predict(model, batch))

    np.testing.assert_array_equal(run(loaded), run(bundle))
    manifest = read_manifest(out)
    assert manifest["provenance"] == {"commands": ["x"]}
    assert manifest["num_parameters"] == sum(v.size for v in flatten_arrays(jax.device_get(loaded.state.params)).values())
    with np.load(out / "check.npz") as check:
        np.testing.assert_array_equal(check["a"], np.arange(3))


def test_load_checkpoint_accepts_a_bundle_and_checks_the_step(exported):
    loaded, out = exported
    mesh = make_mesh(jax.devices()[:1])
    assert load_checkpoint(out, mesh).step == loaded.step
    with pytest.raises(ValueError, match="model bundle of step"):
        load_checkpoint(out, mesh, step=loaded.step + 1)


def test_export_is_atomic_respects_the_umask_and_refuses_to_overwrite(exported, tmp_path):
    loaded, out = exported
    with pytest.raises(FileExistsError, match="overwrite"):
        export_bundle(loaded, out)
    old = os.umask(0o027)
    try:
        target = export_bundle(loaded, tmp_path / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((target / WEIGHTS_FILE).stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging directory left behind
    export_bundle(loaded, target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_corrupt_weights_are_refused_by_checksum(exported, tmp_path):
    bundle = _copy(exported[1], tmp_path)
    data = bytearray((bundle / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(bundle)


def test_mismatched_config_names_the_array(exported, tmp_path):
    bundle = _copy(exported[1], tmp_path)
    config = json.loads((bundle / "config.json").read_text())
    config["model"]["correlation_width"] = 24
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"array .params/(phi|theta)/.* has shape \(16,\), the model expects \(24,\)"):
        load_bundle(bundle)


def test_bad_manifest_and_missing_files_are_clear_errors(exported, tmp_path):
    bundle = _copy(exported[1], tmp_path)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    (bundle / MANIFEST_FILE).write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(BundleError, match="version 99"):
        load_bundle(bundle)
    (bundle / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(bundle)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    (bundle / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_bundle(bundle)
    with pytest.raises(FileNotFoundError, match="not a model bundle"):
        read_manifest(tmp_path)


def test_npt_bundle_round_trip(setup, tmp_path):
    loaded = load_checkpoint(setup["root"] / "npt", make_mesh(jax.devices()[:1]))
    bundle = load_bundle(export_bundle(loaded, tmp_path / "npt"))
    assert bundle.task.name == "npt"
    a, b = flatten_arrays(jax.device_get(loaded.state.params)), flatten_arrays(jax.device_get(bundle.state.params))
    assert all(np.array_equal(a[k], b[k]) for k in a)
