"""Model bundles: a trained model as three plain files, small enough to ship inside the package.

A bundle directory holds
  config.json    the resolved training config (the task and the model are rebuilt from it);
  weights.npz    every parameter and model-state array (e.g. spectral-norm vectors) in float32, keyed
                 "params/<path>" and "model_state/<path>" with the module's attribute path joined by "/";
  manifest.json  format tag and version, task, training step, SHA-256 of weights.npz, parameter count,
                 and free-form provenance (commands, training time, hardware, recorded metrics).

Unlike an engine checkpoint (Orbax, optimiser state included, one directory per step), a bundle is
inference-only, format-stable (NumPy + JSON) and about a third of the size. `export_bundle` writes one
from a restored checkpoint atomically (a temporary sibling directory renamed into place); `load_bundle`
rebuilds the model and checks every array's path, shape and dtype and the weights' checksum, naming
the file and the array at fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxpose.training.config import config_from_dict, config_to_json
from jaxpose.training.registry import build_task
from jaxpose.training.state import LoadedCheckpoint, TrainState, model_graphdef, split_model

BUNDLE_FORMAT = "jaxpose-model-bundle"
BUNDLE_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE = "config.json", "weights.npz", "manifest.json"
_GROUPS = ("params", "model_state")


class BundleError(ValueError):
    """A model bundle is missing, malformed, corrupt or does not match its config; the message names it."""


def is_bundle(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a bundle manifest."""
    return (pathlib.Path(path) / MANIFEST_FILE).is_file()


def _key_name(entry) -> str:
    for attribute in ("key", "idx", "name"):
        if hasattr(entry, attribute):
            return str(getattr(entry, attribute))
    raise TypeError(f"unsupported pytree key {entry!r}")


def flatten_arrays(tree) -> dict[str, np.ndarray]:
    """{"a/b/0/kernel": array} for a nested dict/list pytree of arrays."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): np.asarray(leaf) for path, leaf in leaves}


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_bundle(loaded: LoadedCheckpoint, out_dir: str | os.PathLike, *, provenance: Mapping | None = None,
                  extra_npz: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                  overwrite: bool = False) -> pathlib.Path:  # fmt: skip
    """Write the bundle of a restored checkpoint (`jaxpose.training.evaluation.load_checkpoint`) to `out_dir`.

    `provenance` (JSON-serialisable) is stored in the manifest under "provenance"; `extra_npz` maps file
    names to arrays written beside the weights (e.g. check data). The directory appears complete or not
    at all; an existing `out_dir` is replaced only with `overwrite`.
    """
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists (pass overwrite=True to replace it)")
    arrays = {f"{group}/{name}": value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
              for group, tree in zip(_GROUPS, (loaded.state.params, loaded.state.model_state))
              for name, value in flatten_arrays(jax.device_get(tree)).items()}  # fmt: skip
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Files and the directory get the modes an ordinary open()/mkdir() gives (the kernel applies the umask,
    # which is never read here: see jaxpose.io.atomic); the rename makes the bundle appear complete at once.
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(staging, 0o777)
    try:
        np.savez(staging / WEIGHTS_FILE, **arrays)
        for name, extra in (extra_npz or {}).items():
            if name in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE) or "/" in name or not name.endswith(".npz"):
                raise ValueError(f"extra file name {name!r}: must be a plain *.npz name other than the bundle's own")
            np.savez_compressed(staging / name, **extra)
        (staging / CONFIG_FILE).write_text(config_to_json(loaded.config) + "\n")
        manifest = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "task": loaded.task.name, "step": int(loaded.step),
            "weights_sha256": _sha256(staging / WEIGHTS_FILE),
            "num_parameters": int(sum(v.size for k, v in arrays.items() if k.startswith("params/"))),
            "provenance": dict(provenance or {}),
        }  # fmt: skip
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, retired)
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def read_manifest(path: str | os.PathLike) -> dict:
    """The bundle's manifest, checked for its format tag and version."""
    file = pathlib.Path(path) / MANIFEST_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a model bundle (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"{file}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{file}: not a {BUNDLE_FORMAT} manifest")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{file}: bundle version {manifest.get('version')!r}, this jaxpose reads {BUNDLE_VERSION}")
    return manifest


def read_bundle_config(path: str | os.PathLike):
    """The training config saved in the bundle (an `ml_collections.ConfigDict`)."""
    file = pathlib.Path(path) / CONFIG_FILE
    try:
        return config_from_dict(json.loads(file.read_text()))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: model bundle without {CONFIG_FILE}") from None
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as error:
        raise BundleError(f"{file}: unreadable config ({error})") from None


def _fill(abstract_tree, arrays: Mapping[str, np.ndarray], group: str, where: pathlib.Path):
    """(`abstract_tree` with every leaf replaced by the bundle's array of the same path (checked), the keys used)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(abstract_tree)
    keys = [f"{group}/" + "/".join(_key_name(k) for k in path) for path, _ in paths]
    leaves = []
    for key, (_, abstract) in zip(keys, paths):
        if key not in arrays:
            raise BundleError(f"{where}: array {key!r} is missing (the weights do not match config.json)")
        value = arrays[key]
        if value.shape != tuple(abstract.shape):
            raise BundleError(f"{where}: array {key!r} has shape {value.shape}, the model expects {tuple(abstract.shape)}")
        if not np.all(np.isfinite(value)):
            raise BundleError(f"{where}: array {key!r} contains NaN or Inf")
        leaves.append(jnp.asarray(value, abstract.dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves), set(keys)


def load_bundle(path: str | os.PathLike, mesh: Mesh | None = None) -> LoadedCheckpoint:
    """The bundle at `path` as a `LoadedCheckpoint` (inference only: no optimiser state), named
    "<directory>@<step>". Raises FileNotFoundError or BundleError naming the file and array at fault."""
    del mesh  # arrays are small and placed on the default device; the argument mirrors load_checkpoint
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    config = read_bundle_config(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: model bundle without {WEIGHTS_FILE}")
    if _sha256(weights) != manifest.get("weights_sha256"):
        raise BundleError(f"{weights}: checksum differs from the manifest's (corrupt or replaced file)")
    try:
        with np.load(weights, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as error:
        raise BundleError(f"{weights}: unreadable ({error})") from None
    task = build_task(config)
    if task.name != manifest.get("task"):
        raise BundleError(f"{path}: manifest task {manifest.get('task')!r} differs from config.json's {task.name!r}")
    graphdef = model_graphdef(task)
    abstract_params, abstract_state = jax.eval_shape(lambda: split_model(task.make_model(nnx.Rngs(0)))[1:])
    params, used_params = _fill(abstract_params, arrays, "params", weights)
    model_state, used_state = _fill(abstract_state, arrays, "model_state", weights)
    extra = sorted(set(arrays) - used_params - used_state)
    if extra:
        raise BundleError(f"{weights}: arrays the model does not have: {', '.join(extra[:5])}")
    step = int(manifest.get("step", 0))
    state = TrainState(step=jnp.asarray(step, jnp.int32), params=params, model_state=model_state, opt_state=None,
                       rng=jnp.zeros((2,), jnp.uint32))  # fmt: skip
    return LoadedCheckpoint(f"{path.name}@{step}", step, task, graphdef, state, config)


__all__ = ["BUNDLE_FORMAT", "BundleError", "export_bundle", "flatten_arrays", "is_bundle", "load_bundle",
           "read_bundle_config", "read_manifest"]
