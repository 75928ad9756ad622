"""3D-CoreNet, medium: the model that ships with jaxpose (`jaxpose/pose_transfer/weights/`).

Between `corenet_small` and the official widths, chosen from the CPU throughput work (BENCHMARKS.md):
features 32-64-128 with 2 residual blocks, θ/φ 128, decoder 192-96-48; dense matching in the original
scaling domain (`dense_scaling`: the same 5-step iteration, 3-4x cheaper to differentiate on a CPU);
the official optimiser (Adam b1 0 / b2 0.9 / eps 1e-3) at 2e-4 with clipping 1, constant for half the
run then linear decay; 1000 · MSE + 0.5 · edge. `residual_output=True` (decoder offset added to the OT
warp, not in the paper: see `corenet_small.py` and the decoder ablation in RESULTS.md §1).
Data: 32 identities (16 for training) x 96 poses (64 for training) of the low-resolution default body,
seed 1, so the demo's seed-0 test identities are unseen (different betas) and every test pose is held out:
    jaxpose data npt --out data/npt_medium --identities 32 --poses 96 --resolution low --seed 1
Run:  python -m train.corenet --config configs/corenet_medium.py --workdir runs/corenet_medium
"""

import pathlib

import ml_collections

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("corenet_official.py"))
    config.num_steps = 4000
    config.log_every = 50
    config.eval_every = 500
    config.checkpoint_every = 250
    config.keep_checkpoints = 2
    config.model.feature_widths = (32, 64, 128)
    config.model.num_residual_blocks = 2
    config.model.correlation_width = 128
    config.model.decoder_widths = (192, 96, 48)
    config.model.matching_mode = "dense_scaling"
    config.model.residual_output = True  # not in the paper; see the docstring
    config.data.root = "data/npt_medium"
    config.data.build = ml_collections.ConfigDict(dict(  # the `jaxpose data npt` settings of data.root
        identities=32, poses=96, resolution="low", seed=1, beta_mode="normal", num_test_triples=400, precision=6))
    config.data.pairs_per_epoch = 4000  # 500 iterations of 8
    config.eval.max_triples = 100  # in-training evaluation: the first 100 held-out triples
    config.optimizer.lr = 2e-4
    config.optimizer.clip_grad_norm = 1.0
    config.optimizer.constant_epochs = 4.0  # epochs of 500 iterations: 2,000 steps constant, 2,000 decay
    config.optimizer.decay_epochs = 4.0
    return config
