"""NPT, small: trains on a 2-core CPU in a few minutes (low-resolution body).

Pose encoder 32-64-256 (decoder 259-129-64), otherwise the official recipe (max-pool model, Adam with
default betas, 1 · MSE + 0.0005 · edge, constant learning rate) with a higher learning rate and short
epochs to fit the budget.
Data: jaxpose data npt --out runs/demo/data --identities 8 --poses 24 --resolution low --seed 0
Run:  python -m train.npt --config configs/npt_small.py --workdir runs/npt_small
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("npt_official.py"))
    config.num_steps = 300
    config.log_every = 25
    config.checkpoint_every = 100
    config.model.pose_widths = (32, 64, 256)
    config.data.root = "runs/demo/data"
    config.data.build = ml_collections.ConfigDict(dict(  # the `jaxpose data npt` settings of data.root
        identities=8, poses=24, resolution="low", seed=0, beta_mode="normal", num_test_triples=400, precision=6))
    config.data.pairs_per_epoch = 400
    config.optimizer.lr = 5e-4
    return config
