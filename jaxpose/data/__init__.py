"""Pose-transfer data: the NPT-style generator on the default body and one loader for NPT/SMAL/jaxpose data."""

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

__all__ = [
    "NPT_NAMING", "SMAL_NAMING", "NptConfig", "PairBatch", "PermutedBatch", "PoseTransferData", "Triple",
    "format_test_list", "gather_pairs", "generate_npt_dataset", "identity_split", "inverse_permutation",
    "make_test_triples", "pose_index_plan", "random_permutation_batch", "read_test_list", "sample_betas",
    "sample_train_pairs", "trivial_pair_counts",
]
