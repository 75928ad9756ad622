"""Body fitting and personalised 3D human pose and shape refinement (docs/fitting.md).

Public API (the rest lives in the submodules named in docs/fitting.md, "Modules"):
  BodyParams helpers      params_from_pose, full_pose, pose_body, zero_params, load_params_npz, save_params_npz
  SMPLify-style fitting   Observations, FitConfig, FitResult, default_stages, fit, fit_batch,
                          DEFAULT_WEIGHTS, KEYPOINT_WEIGHTS (`smplify`); energy terms (`energy`)
  per-vertex targets      vertex_targets, VertexTargets, TargetAnchor (`targets`)
  camera initialisation   estimate_translation, flipped_orientation (`camera_init`)
"""

from jaxpose.fitting.camera_init import estimate_translation, flipped_orientation
from jaxpose.fitting.params import (
    PARAM_KEYS, full_pose, load_params_npz, params_from_pose, pose_body, save_params_npz, zero_params,
)
from jaxpose.fitting.smplify import (
    DEFAULT_WEIGHTS, KEYPOINT_WEIGHTS, FitConfig, FitResult, Observations, default_stages, fit, fit_batch,
)
from jaxpose.fitting.targets import TargetAnchor, VertexTargets, vertex_targets

__all__ = [
    "DEFAULT_WEIGHTS", "KEYPOINT_WEIGHTS", "PARAM_KEYS", "FitConfig", "FitResult", "Observations", "TargetAnchor",
    "VertexTargets", "default_stages", "estimate_translation", "fit", "fit_batch", "flipped_orientation",
    "full_pose", "load_params_npz", "params_from_pose", "pose_body", "save_params_npz", "vertex_targets",
    "zero_params",
]
