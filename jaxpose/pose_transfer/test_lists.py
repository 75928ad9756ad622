"""Pose-transfer file naming and test lists: which mesh file holds (identity, pose), and the test
triples (identity mesh, pose mesh, ground truth) in 3D-CoreNet's list format (docs/pose_transfer.md,
"Splits and test lists").

Test lists hold one triple per line, `identity_file pose_file gt_file` (file names with extension),
exactly as 3D-CoreNet's `human_test_list`/`animal_test_list`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

# ----------------------------------------------------------------------------------------------
# File naming
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MeshNaming:
    """File naming of one dataset family: `{prefix}{identity}_{pose}{extension}`."""

    prefix: str
    extension: str
    list_name: str  # default test-list file name in the dataset directory

    def file_name(self, identity: int, pose: int) -> str:
        return f"{self.prefix}{int(identity)}_{int(pose)}{self.extension}"

    @property
    def pattern(self) -> re.Pattern:
        return re.compile(rf"^{re.escape(self.prefix)}(\d+)_(\d+){re.escape(self.extension)}$")

    def parse(self, name: str) -> tuple[int, int] | None:
        """(identity, pose) for a matching file name, else None (e.g. `id3_rest.obj`)."""
        match = self.pattern.match(name)
        return (int(match.group(1)), int(match.group(2))) if match else None


NPT_NAMING = MeshNaming(prefix="id", extension=".obj", list_name="human_test_list")
SMAL_NAMING = MeshNaming(prefix="toy_", extension=".ply", list_name="animal_test_list")

# 3D-CoreNet protocol (docs/pose_transfer.md, "Splits and test lists").
# HEAD trains on identities 0–14; NPT and MAPConNet on 0–15.
CORENET_HUMAN_TRAIN_IDENTITIES = tuple(range(15))
CORENET_HUMAN_TRAIN_POSES = range(200, 600)
CORENET_HUMAN_TEST_MIN_IDENTITY = 16
CORENET_HUMAN_TEST_MIN_POSE = 600
CORENET_SMAL_TRAIN_TOYS = tuple(range(16)) + (21, 23, 24, 26, 27, 28, 29, 30, 31, 34, 35, 38, 39)
CORENET_SMAL_TRAIN_POSES = range(0, 400)
CORENET_SMAL_TEST_POSES = range(400, 600)


# ----------------------------------------------------------------------------------------------
# Test lists
# ----------------------------------------------------------------------------------------------


class Triple(NamedTuple):
    """One test example: identity mesh (identity_id, identity_pose), pose mesh (pose_id, pose_pose).

    The ground truth is identity `identity_id` in pose `pose_pose`.
    """

    identity_id: int
    identity_pose: int
    pose_id: int
    pose_pose: int

    @property
    def gt(self) -> tuple[int, int]:
        return (self.identity_id, self.pose_pose)


_LIST_NAME = re.compile(r"^(?:.*/)?(id|toy_)(\d+)_(\d+)(?:\.(obj|ply))?$")


def _parse_list_name(token: str, where: str) -> tuple[int, int]:
    match = _LIST_NAME.match(token)
    if not match:
        raise ValueError(f"{where}: {token!r} is not a mesh name of the form id<I>_<P>.obj or toy_<I>_<P>.ply")
    return int(match.group(2)), int(match.group(3))


def read_test_list(path: str | os.PathLike) -> list[Triple]:
    """Parse a 3D-CoreNet test list (`identity_file pose_file gt_file` per line; blank lines ignored).

    Raises FileNotFoundError for a missing file and ValueError naming the line for a malformed line
    or a ground truth that is not (identity's id, pose file's pose).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"test list {path} does not exist")
    triples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        tokens = line.split()
        if len(tokens) != 3:
            raise ValueError(f"{where}: expected 3 file names `identity pose gt`, got {len(tokens)}: {line!r}")
        (ia, pa), (ib, pb), (ig, pg) = (_parse_list_name(t, where) for t in tokens)
        if (ig, pg) != (ia, pb):
            raise ValueError(
                f"{where}: ground truth {tokens[2]!r} must be the identity's id {ia} in the pose mesh's pose {pb}"
            )
        triples.append(Triple(ia, pa, ib, pb))
    if not triples:
        raise ValueError(f"test list {path} is empty")
    return triples


def format_test_list(triples: Iterable[Triple], naming: MeshNaming = NPT_NAMING) -> str:
    """The text of a test list: `identity_file pose_file gt_file` per line, single spaces."""
    lines = []
    for t in triples:
        names = (naming.file_name(t.identity_id, t.identity_pose), naming.file_name(t.pose_id, t.pose_pose),
                 naming.file_name(*t.gt))
        lines.append(" ".join(names))
    return "\n".join(lines) + "\n"


def make_test_triples(identities: Sequence[int], poses: Sequence[int], num_triples: int = 400, seed: int = 0) -> list[Triple]:
    """A fixed-seed test list equivalent to 3D-CoreNet's: `num_triples` distinct triples.

    Identity mesh (a, p1) and pose mesh (b, p2) are drawn uniformly and independently from
    `identities` x `poses` (a == b and p1 == p2 are allowed, as in the original lists), without
    repeating a triple. If fewer distinct triples exist, all of them are returned (in random order).
    """
    identities = np.asarray(sorted(set(int(i) for i in identities)), np.int64)
    poses = np.asarray(sorted(set(int(p) for p in poses)), np.int64)
    if identities.size == 0 or poses.size == 0:
        raise ValueError(f"need at least one test identity and one test pose, got {identities.size} and {poses.size}")
    if num_triples <= 0:
        raise ValueError(f"num_triples must be positive, got {num_triples}")
    num_i, num_p = identities.size, poses.size
    total = (num_i * num_p) ** 2
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E57]))
    flat = rng.choice(total, size=min(num_triples, total), replace=False)
    a, p1, b, p2 = np.unravel_index(flat, (num_i, num_p, num_i, num_p))
    return [Triple(int(identities[w]), int(poses[x]), int(identities[y]), int(poses[z])) for w, x, y, z in zip(a, p1, b, p2)]


def trivial_pair_counts(triples: Sequence[Triple]) -> dict[str, int]:
    """Counts of trivial triples: same identity (GT = pose mesh) and same pose (GT = identity mesh)."""
    return {
        "triples": len(triples),
        "same_identity": sum(t.identity_id == t.pose_id for t in triples),
        "same_pose": sum(t.identity_pose == t.pose_pose for t in triples),
    }


