"""Config of the `refinement` task for tests: 32×32 images, a handful of people, a few steps.

Run: python -m train.refinement --config configs/refinement_tiny.py --workdir /tmp/refinement_tiny
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config() -> ml_collections.ConfigDict:
    config = load_config(pathlib.Path(__file__).with_name("refinement_small.py"))
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_steps = 4
    config.log_every = 2
    config.eval_every = 4
    config.checkpoint_every = 4
    config.optimizer.warmup_steps = 0

    config.model.base_width = 4
    config.model.num_levels = 3
    config.model.convs_per_level = 1
    config.model.num_groups = 2

    config.data.cache_dir = "runs/refinement_data_tiny"
    s = config.data.synthetic
    s.image_size = 32
    s.num_train = 16
    s.num_test = 8
    s.train_identities = 4
    s.test_identities = 2
    s.train_poses = 16
    s.test_poses = 8
    s.texture_frames = 1
    s.chunk_size = 8
    return config
