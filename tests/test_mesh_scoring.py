"""INS scored as deployed (jaxpose.skinning.mesh_scoring): extract once, repose, the baselines' inside test."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from jaxpose.skinning.mesh_scoring import score_extracted_mesh

RADIUS = 0.3


class _Ball(nnx.Module):
    """Canonical occupancy: a ball of RADIUS at the origin (logit > 0 inside); reposing: root translation."""

    def __init__(self):
        self.scale = nnx.Param(jnp.ones(()))

    def canonical_occupancy(self, points):
        return self.scale.value * (RADIUS - jnp.linalg.norm(points, axis=-1))

    def repose(self, vertices, transforms):
        return vertices + transforms[0, :3, 3][None]


def _frames(offsets, rng, n_bbox=3000, n_surface=3000):
    points, labels, transforms = [], [], []
    for offset in offsets:
        box = rng.uniform(-0.6, 0.6, (n_bbox, 3)) + offset
        direction = rng.normal(size=(n_surface, 3))
        near = offset + direction / np.linalg.norm(direction, axis=1, keepdims=True) * RADIUS + rng.normal(0, 0.01, (n_surface, 3))
        frame_points = np.concatenate([box, near]).astype(np.float32)
        points.append(frame_points)
        labels.append(np.linalg.norm(frame_points - offset, axis=1) < RADIUS)
        transform = np.tile(np.eye(4, dtype=np.float32), (24, 1, 1))
        transform[:, :3, 3] = offset
        transforms.append(transform)
    return {"points": np.stack(points), "occupancy": np.stack(labels), "transforms": np.stack(transforms)}


def _config(n_bbox=3000):
    return ml_collections.ConfigDict({"data": {"eval_protocol": "dfaust", "eval_n_bbox": n_bbox}})


def test_reposed_extracted_ball_scores_near_one_in_both_columns():
    frames = _frames([(0.0, 0.0, 0.0), (0.2, -0.1, 0.05)], np.random.default_rng(0))
    scores = score_extracted_mesh(_Ball(), _config(), resolution=48, frames=frames, bounds=(np.full(3, -0.5), np.full(3, 0.5)))
    assert scores["iou_bbox"].shape == scores["iou_surface"].shape == (2,)
    assert np.all(scores["iou_bbox"] > 0.97) and np.all(scores["iou_surface"] > 0.9)


def test_wrong_repose_is_punished():
    """Labels of the ball moved by 5 cm while the model reposes it to the origin: the surface IoU drops."""
    rng = np.random.default_rng(1)
    frames = _frames([(0.05, 0.0, 0.0)], rng)
    frames["transforms"][:, :, :3, 3] = 0.0
    scores = score_extracted_mesh(_Ball(), _config(), resolution=48, frames=frames, bounds=(np.full(3, -0.5), np.full(3, 0.5)))
    assert scores["iou_surface"][0] < 0.75 and scores["iou_bbox"][0] < 0.9


def test_bad_resolution_is_an_error():
    with pytest.raises(ValueError, match="resolution"):
        score_extracted_mesh(_Ball(), _config(), resolution=1, frames=_frames([(0, 0, 0)], np.random.default_rng(2)))
