"""The deform-and-learn loop at test sizes: 32×32 people, tiny networks, 2 iterations of a few steps.

Used by tests/test_deform_learn_loop.py and the notebook; not a meaningful result.
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config() -> ml_collections.ConfigDict:
    config = load_config(pathlib.Path(__file__).with_name("deform_learn_small.py"))
    config.num_iterations = 2
    config.show_progress = False
    config.data = load_config(pathlib.Path(__file__).with_name("deform_learn_lifter_tiny.py")).data
    config.registration.num_steps = 20
    config.registration.batch_size = 16
    config.lifter_steps_per_iteration = 4
    config.lifter.batch_size = 8
    config.lifter.eval_batch_size = 8
    config.lifter.log_every = config.lifter.eval_every = config.lifter.checkpoint_every = 4
    config.lifter.model = ml_collections.ConfigDict(dict(width=32, depth=2, discriminator_width=32, discriminator_depth=2))
    r = config.regressor
    r.batch_size, r.num_steps, r.eval_batch_size = 8, 4, 8
    r.log_every = r.eval_every = r.checkpoint_every = 4
    r.model.preset = "tiny"
    return config
