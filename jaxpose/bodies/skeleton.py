"""The SMPL 24-joint skeleton: joint names, parent table and the left/right pairing used for mirroring."""

from __future__ import annotations

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_SMPL_JOINTS = len(SMPL_PARENTS)

# (left, right) joint index pairs; every other joint lies on the body's mid-plane.
SMPL_LEFT_RIGHT_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23))
SMPL_CENTRE_JOINTS = (0, 3, 6, 9, 12, 15)


def _mirror_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_SMPL_JOINTS))
    for left, right in SMPL_LEFT_RIGHT_PAIRS:
        perm[left], perm[right] = right, left
    return tuple(perm)


# SMPL_MIRROR_PERMUTATION[j] is the joint that j maps to under a left/right reflection.
SMPL_MIRROR_PERMUTATION = _mirror_permutation()
