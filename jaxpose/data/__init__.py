"""Datasets.

Pose transfer: the NPT-style generator on the default body (`npt`) and one loader for NPT / SMAL /
jaxpose directories (`pose_transfer`). Skinning: the CAPE-format reader (`cape`), synthetic clothed
sequences written in that format (`clothed`), and occupancy point sets (`occupancy_points`).
"""

from jaxpose.data.npt import NptConfig, generate_npt_dataset, identity_split, pose_index_plan, sample_betas
from jaxpose.data.pose_transfer import (
    NPT_NAMING,
    SMAL_NAMING,
    PairBatch,
    PermutedBatch,
    PoseTransferData,
    Triple,
    format_test_list,
    gather_pairs,
    inverse_permutation,
    make_test_triples,
    random_permutation_batch,
    read_test_list,
    sample_train_pairs,
    trivial_pair_counts,
)
from jaxpose.data.cape import CapeDataset, CapeSequence, CapeSubject
from jaxpose.data.clothed import generate_clothed_dataset
from jaxpose.data.occupancy_points import cached_eval_points, eval_points, iou_bbox, iou_surface

__all__ = [
    "CapeDataset", "CapeSequence", "CapeSubject", "cached_eval_points", "eval_points",
    "generate_clothed_dataset", "iou_bbox", "iou_surface",
    "NPT_NAMING", "SMAL_NAMING", "NptConfig", "PairBatch", "PermutedBatch", "PoseTransferData", "Triple",
    "format_test_list", "gather_pairs", "generate_npt_dataset", "identity_split", "inverse_permutation",
    "make_test_triples", "pose_index_plan", "random_permutation_batch", "read_test_list", "sample_betas",
    "sample_train_pairs", "trivial_pair_counts",
]
