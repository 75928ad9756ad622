"""Config of the `deform_learn_lifter` task for tests: a handful of 32×32 synthetic people, small MLPs.

Run: jaxpose train deform_learn_lifter --config configs/deform_learn_lifter_tiny.py --workdir /tmp/dl_lifter_tiny
"""

import ml_collections


def tiny_data() -> ml_collections.ConfigDict:
    """The tiny synthetic data section shared by the two tiny deform-and-learn configs."""
    data = ml_collections.ConfigDict()
    data.cache_dir = "runs/deform_learn_data_tiny"
    data.targets = ""  # regressor: npz of registration θ (+ "depths", "depth_valid"); "" = none
    data.lifter_depths = ""  # regressor: optional npz of lifter depths ("depths" or "depths_train")
    data.synthetic = ml_collections.ConfigDict()  # `jaxpose.deform_learn.synthetic.DeformLearnDataConfig` fields
    s = data.synthetic
    s.image_size = 32
    s.num_train = 16
    s.num_test = 8
    s.train_subjects = 4
    s.test_subjects = 2
    s.points_per_person = 40
    s.seed = 0
    s.resolution = "low"
    s.chunk_size = 8
    return data


def optimizer(lr: float) -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adam"
    o.lr = lr
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0
    o.clip_grad_norm = 1.0
    o.schedule = "constant"
    o.warmup_steps = 0
    o.final_lr_fraction = 1.0
    o.constant_epochs = 0.0
    o.decay_epochs = 0.0
    return o


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "deform_learn_lifter"
    config.seed = 0
    config.body = "low"  # "low" | "mid" | "full" default body (must equal data.synthetic.resolution) or a body file
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_steps = 4
    config.log_every = 1
    config.eval_every = 4
    config.checkpoint_every = 4
    config.keep_checkpoints = 1
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.width = 32  # generator MLP: `depth` hidden ReLU layers of `width`
    config.model.depth = 2
    config.model.discriminator_width = 32
    config.model.discriminator_depth = 2

    config.loss = ml_collections.ConfigDict()
    config.loss.azimuth_range_deg = 90.0  # fake views: azimuth uniform in ± this (about the image y axis)
    config.loss.elevation_range_deg = 10.0  # and elevation uniform in ± this (about the image x axis)

    config.data = tiny_data()
    config.optimizer = optimizer(1e-3)
    return config
