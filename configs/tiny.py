"""Config of the `tiny` engine-test task: converges in a few hundred CPU steps.

Run: python -m train.tiny --config configs/tiny.py --workdir /tmp/tiny [--config.optimizer.lr=1e-3]
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "tiny"
    config.seed = 0
    config.batch_size = 32  # global, split over all devices
    config.num_steps = 300
    config.log_every = 10
    config.eval_every = 100  # 0 disables
    config.checkpoint_every = 100  # 0: only at the end
    config.keep_checkpoints = 3
    config.eval_batch_size = 32
    config.compute_dtype = "float32"  # or "bfloat16" (params and optimizer state stay float32)

    config.model = ml_collections.ConfigDict()
    config.model.hidden = 32
    config.model.depth = 1

    config.data = ml_collections.ConfigDict()
    config.data.num_train = 256
    config.data.num_eval = 64
    config.data.num_points = 64
    config.data.train_seed = 0
    config.data.eval_seed = 1

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.lr = 3e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.0  # adamw only
    config.optimizer.clip_grad_norm = 1.0  # 0 disables
    config.optimizer.schedule = "cosine"  # constant | constant_then_linear | cosine
    config.optimizer.warmup_steps = 10
    config.optimizer.final_lr_fraction = 0.05
    config.optimizer.constant_epochs = 0.0  # constant_then_linear only
    config.optimizer.decay_epochs = 0.0
    return config
