"""The deform-and-learn loop at the paper's sizes, for an accelerator: ResNet-50 at 224×224, 20k images.

The paper: ResNet-50 (ImageNet-pretrained), batch 30, lr 1e-4, 30 epochs per iteration, ~100k real
images. jaxpose ships no ImageNet weights (nothing is downloaded), so this trains from scratch; pass
`--config.regressor.model.init_params=FILE` (an npz of `save_model_params`) to start from your own.
Not run on the 2-core CPU of this project (a ResNet-50 train step at 64² already takes ~4 s there).

Run: jaxpose deform-learn --config configs/deform_learn_full.py --workdir runs/deform_learn_full --comparisons
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config() -> ml_collections.ConfigDict:
    config = load_config(pathlib.Path(__file__).with_name("deform_learn_small.py"))
    config.num_iterations = 5
    s = config.data.synthetic
    s.image_size, s.num_train, s.num_test, s.train_subjects, s.test_subjects = 224, 20000, 2000, 1000, 200
    s.chunk_size = 100
    config.data.cache_dir = "runs/deform_learn_data_full"
    config.registration.batch_size = 1000
    config.lifter_steps_per_iteration = 5000
    config.lifter.eval_batch_size = 500
    config.lifter.eval_every = config.lifter.checkpoint_every = 5000
    r = config.regressor
    r.batch_size = 30  # the paper's
    r.num_steps = 20000  # 30 epochs of 20k images
    r.eval_batch_size = 100
    r.log_every, r.eval_every, r.checkpoint_every = 200, 5000, 5000
    r.model.preset = "resnet50"
    r.optimizer.lr = 1e-4  # the paper's
    return config
