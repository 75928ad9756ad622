"""Config of the `deform_learn_lifter` task for tests: a handful of 32×32 synthetic people, small MLPs.

Run: jaxpose train deform_learn_lifter --config configs/deform_learn_lifter_tiny.py --workdir /tmp/dl_lifter_tiny
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config

_SMALL = pathlib.Path(__file__).with_name("deform_learn_small.py")


def tiny_data() -> ml_collections.ConfigDict:
    """The tiny synthetic data section shared by the two tiny deform-and-learn configs."""
    data = load_config(_SMALL).data
    data.cache_dir = "runs/deform_learn_data_tiny"
    s = data.synthetic
    s.image_size, s.num_train, s.num_test, s.train_subjects, s.test_subjects = 32, 16, 8, 4, 2
    s.points_per_person, s.chunk_size = 40, 8
    return data


def optimizer(lr: float) -> ml_collections.ConfigDict:
    """Adam at a constant `lr` (the small loop config's optimizer section)."""
    o = load_config(_SMALL).lifter.optimizer
    o.lr = lr
    return o


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "deform_learn_lifter"
    config.seed = 0
    config.body = "low"  # "low" | "mid" | "full" default body (must equal data.synthetic.resolution) or a body file
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_steps = 4
    config.log_every = 1
    config.eval_every = 4
    config.checkpoint_every = 4
    config.keep_checkpoints = 1
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.width = 32  # generator MLP: `depth` hidden ReLU layers of `width`
    config.model.depth = 2
    config.model.discriminator_width = 32
    config.model.discriminator_depth = 2

    config.loss = ml_collections.ConfigDict()
    config.loss.azimuth_range_deg = 90.0  # fake views: azimuth uniform in ± this (about the image y axis)
    config.loss.elevation_range_deg = 10.0  # and elevation uniform in ± this (about the image x axis)

    config.data = tiny_data()
    config.optimizer = optimizer(1e-3)
    return config
