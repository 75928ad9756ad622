"""3D-CoreNet, small: trains meaningfully on a 2-core CPU in about 15 minutes (low-resolution body).

Narrower than the official model (features 32-64-128 with 2 residual blocks, correlation 64,
decoder 128-64-32); otherwise the official
recipe (dense matching, Adam b1 0 / b2 0.9 / eps 1e-3, constant-then-linear schedule, 1000 · MSE +
0.5 · edge), with a higher learning rate and short epochs to fit the budget.
Data: jaxpose data npt --out runs/demo/data --identities 8 --poses 24 --resolution low --seed 0
Run:  python -m train.corenet --config configs/corenet_small.py --workdir runs/corenet_small
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("corenet_official.py"))
    config.num_steps = 400  # ≈15 min on a shared 2-core CPU (see notes)
    config.log_every = 25
    config.checkpoint_every = 100
    config.model.feature_widths = (32, 64, 128)
    config.model.num_residual_blocks = 2
    config.model.correlation_width = 64
    config.model.decoder_widths = (128, 64, 32)
    config.data.root = "runs/demo/data"
    config.data.build_args = "--identities 8 --poses 24 --resolution low --seed 0"
    config.data.pairs_per_epoch = 400  # 50 iterations of 8
    config.optimizer.lr = 5e-4
    config.optimizer.constant_epochs = 4.0  # epochs of 50 iterations
    config.optimizer.decay_epochs = 4.0
    return config
