"""jaxpose: learning on 3D human bodies with JAX and Flax NNX.

Shared layers (imported by the systems, never importing them):
  geometry  rotations, LBS of points, mesh geometry, winding numbers, root finding
  nn        layers (normalisations, spectral norm, SIREN, MLP)
  io        validated mesh I/O and atomic file writes
  bodies    SMPL-style body models, the shipped ANNY body, loaders, poses, canonical pose, priors
  render    a pure-JAX rasteriser and figures
  matching  correlation matrices and entropic optimal transport (geometry x solver choices)
  metrics   PMD, Chamfer, EMD, MPJPE, PA-MPJPE, PVE, occupancy IoU
  optim     per-sample optimisation: problem -> solver -> result, staged solving
  training  the functional, data-parallel training engine, task registry and evaluation protocols

Systems (one package each, owning its models, data, losses, evaluation protocol, task and CLI):
  pose_transfer  3D-CoreNet, NPT, Deformation Transfer
  skinning       Invertible Neural Skinning, SNARF, LBS baselines
  fitting        personalised pose and shape refinement (reserved)
  deform_learn   deform-and-learn (reserved)

Python API (lazy: `import jaxpose` does not import JAX, so `jaxpose --help` stays instant):
  jaxpose.transfer(identity, pose, checkpoint, ...)   pose transfer of one pair (jaxpose.pose_transfer.api)
  jaxpose.repose(checkpoint, poses, ...)              INS canonical mesh reposed to poses (jaxpose.skinning.repose)
"""

import importlib

__version__ = "0.1.0"

# name -> module defining it; imported on first access (PEP 562), since both modules import JAX.
_LAZY_ATTRIBUTES = {"transfer": "jaxpose.pose_transfer.api", "repose": "jaxpose.skinning.repose"}


def __getattr__(name: str):
    """`jaxpose.transfer` / `jaxpose.repose`, imported on first use (the modules import JAX)."""
    if name in _LAZY_ATTRIBUTES:
        return getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'jaxpose' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_ATTRIBUTES])


__all__ = ["__version__", "repose", "transfer"]
