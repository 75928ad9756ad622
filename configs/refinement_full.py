"""Config of the `refinement` task for an accelerator: 256×256 images, more people, a wider U-Net.

Data: 4,000 train / 500 test people (1,000 / 120 identities), generated once into data.cache_dir
(~29 bytes per pixel in memory after compaction: ~7.6 GB for the training split; generation holds
the float32 split, ~31 GB, while it runs).
Model: base width 32, 5 levels (32–512 channels), GroupNorm. 30,000 steps of batch 32 (240 epochs).

Run: python -m train.refinement --config configs/refinement_full.py --workdir runs/refinement_full
Ablations: add --config.model.inputs.texture=False (or depth / normals) and another --workdir.
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("refinement_small.py"))
    config.batch_size = 32
    config.num_steps = 30_000
    config.log_every = 100
    config.eval_every = 2_000
    config.checkpoint_every = 2_000
    config.keep_checkpoints = 3
    config.eval_batch_size = 50

    config.model.base_width = 32
    config.model.num_levels = 5
    config.model.num_groups = 8

    config.data.cache_dir = "runs/refinement_data_full"
    s = config.data.synthetic
    s.image_size = 256
    s.num_train = 4000
    s.num_test = 500
    s.train_identities = 1000
    s.test_identities = 120
    s.train_poses = 4000
    s.test_poses = 500
    s.chunk_size = 64

    config.optimizer.lr = 1e-3
    config.optimizer.warmup_steps = 500
    return config
