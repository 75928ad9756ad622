"""The trained pose-transfer models that ship inside the package (`weights/<name>/`, model bundles).

    from jaxpose.pose_transfer import pretrained
    loaded = pretrained.load()                 # the default 3D-CoreNet, a LoadedCheckpoint
    pretrained.manifest()["provenance"]        # how it was trained: commands, time, hardware, metrics

`jaxpose transfer` and `jaxpose.transfer` use `DEFAULT_MODEL` when no checkpoint is given; every
place that takes a checkpoint directory also takes `path(name)`. How each bundle was made (config,
commands, training time and hardware, held-out metrics) is in its manifest and in RESULTS.md §1.
Nothing is downloaded: the files are part of the source tree and of the installed package.
"""

from __future__ import annotations

import pathlib

from jaxpose.training.bundle import is_bundle, load_bundle, read_manifest
from jaxpose.training.state import LoadedCheckpoint

WEIGHTS_DIR = pathlib.Path(__file__).resolve().with_name("weights")
DEFAULT_MODEL = "corenet_medium"
"""The shipped 3D-CoreNet (`configs/corenet_medium.py`)."""


def available() -> list[str]:
    """Names of the shipped models (sub-directories of `WEIGHTS_DIR` that hold a bundle)."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if is_bundle(p))


def path(name: str = DEFAULT_MODEL) -> pathlib.Path:
    """The bundle directory of shipped model `name`; FileNotFoundError listing the shipped ones."""
    directory = WEIGHTS_DIR / name
    if not is_bundle(directory):
        raise FileNotFoundError(f"no shipped model {name!r} in {WEIGHTS_DIR}; shipped: {', '.join(available()) or 'none'}")
    return directory


def manifest(name: str = DEFAULT_MODEL) -> dict:
    """The manifest of shipped model `name` (task, step, checksum, provenance)."""
    return read_manifest(path(name))


def load(name: str = DEFAULT_MODEL) -> LoadedCheckpoint:
    """Shipped model `name`, ready for `jaxpose.pose_transfer.evaluation` or `merge_model`."""
    return load_bundle(path(name))


__all__ = ["DEFAULT_MODEL", "WEIGHTS_DIR", "available", "load", "manifest", "path"]
