"""Config of the `deform_learn_regressor` task for tests: a handful of 32×32 synthetic people, a tiny ResNet.

`loss.target = "ground_truth"` needs no registration file; set `data.targets` to a registrations npz
(written by the deform-and-learn loop) and `loss.target = "registration"` for the loop's variant.

Run: jaxpose train deform_learn_regressor --config configs/deform_learn_regressor_tiny.py --workdir /tmp/dl_reg_tiny
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config() -> ml_collections.ConfigDict:
    lifter = load_config(pathlib.Path(__file__).with_name("deform_learn_lifter_tiny.py"))
    config = ml_collections.ConfigDict()
    config.task = "deform_learn_regressor"
    config.seed = 0
    config.body = lifter.body
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_steps = 4
    config.log_every = 1
    config.eval_every = 4
    config.checkpoint_every = 4
    config.keep_checkpoints = 1
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.preset = "tiny"  # resnet50 | resnet18 | small | tiny (`jaxpose.deform_learn.resnet.RESNET_PRESETS`)
    config.model.init_params = ""  # "" or an npz of `save_model_params` (warm start)

    config.loss = ml_collections.ConfigDict()
    config.loss.alpha = 1.0  # smooth-L1 θ regression
    config.loss.beta = 10.0  # dense correspondences
    config.loss.gamma = 1.0  # keypoints (+ lifter depths)
    config.loss.target = "ground_truth"  # registration | ground_truth

    config.data = ml_collections.ConfigDict(lifter.data.to_dict())
    config.optimizer = ml_collections.ConfigDict(lifter.optimizer.to_dict())
    config.optimizer.lr = 1e-3
    return config
