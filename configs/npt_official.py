"""NPT, the official recipe (docs/pose_transfer.md, "NPT") on the full-resolution default body.

Max-pool model, batch 8, Adam(lr 5e-5, default betas), 1 · MSE + 0.0005 · edge, 1000 epochs of 4000
pairs (500 iterations), constant learning rate.
Data: jaxpose data npt --out data/npt_full --identities 30 --poses 800 --resolution full --seed 0
Run:  python -m train.npt --config configs/npt_official.py --workdir runs/npt_official
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "npt"
    config.seed = 0
    config.batch_size = 8
    config.num_steps = 500_000  # 1000 epochs x 500 iterations
    config.log_every = 50
    config.eval_every = 0
    config.checkpoint_every = 10_000
    config.keep_checkpoints = 3
    config.eval_batch_size = 8
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.variant = "maxpool"
    config.model.pose_widths = (64, 128, 1024)
    config.model.init_stddev = 0.02

    config.data = ml_collections.ConfigDict()
    config.data.root = "data/npt_full"
    config.data.build = ml_collections.ConfigDict(dict(  # the `jaxpose data npt` settings of data.root
        identities=30, poses=800, resolution="full", seed=0, beta_mode="normal", num_test_triples=400, precision=6))
    config.data.pairs_per_epoch = 4000

    config.loss = ml_collections.ConfigDict()
    config.loss.reconstruction_weight = 1.0
    config.loss.edge_weight = 0.0005

    config.eval = ml_collections.ConfigDict()
    config.eval.permutation_seeds = (0, 1, 2)
    config.eval.list_file = ""
    config.eval.num_triples = 400
    config.eval.list_seed = 0
    config.eval.max_triples = 0

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.lr = 5e-5
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.0
    config.optimizer.clip_grad_norm = 0.0
    config.optimizer.schedule = "constant"
    config.optimizer.constant_epochs = 0.0
    config.optimizer.decay_epochs = 0.0
    config.optimizer.warmup_steps = 0
    config.optimizer.final_lr_fraction = 0.0
    return config
