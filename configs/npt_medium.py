"""NPT, medium: the NPT that ships with jaxpose (`jaxpose/pose_transfer/weights/npt_medium/`), the demo's baseline.

`npt_small`'s widths (pose encoder 32-64-256, decoder 259-129-64) and recipe (max-pool model, Adam 5e-4,
1 · MSE + 0.0005 · edge, constant learning rate), trained longer on the shipped 3D-CoreNet's data
(`configs/corenet_medium.py`: 16 training identities x 64 training poses, seed 1).
Data: jaxpose data npt --out data/npt_medium --identities 32 --poses 96 --resolution low --seed 1
Run:  python -m train.npt --config configs/npt_medium.py --workdir runs/npt_medium
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("npt_small.py"))
    config.num_steps = 600
    config.log_every = 50
    config.checkpoint_every = 100
    config.keep_checkpoints = 2
    config.data.root = "data/npt_medium"
    config.data.build = ml_collections.ConfigDict(dict(  # the `jaxpose data npt` settings of data.root
        identities=32, poses=96, resolution="low", seed=1, beta_mode="normal", num_test_triples=400, precision=6))
    config.data.pairs_per_epoch = 4000
    return config
