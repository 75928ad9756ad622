"""The deform-and-learn loop on 2 CPU cores: 64×64 synthetic people, a small ResNet, 3 iterations.

Budget: ≤ 40 minutes on 2 CPU cores for the whole loop (data generation included); measured times are
in RESULTS.md §4 and BENCHMARKS.md §6. Reduced against the paper (ResNet-50, 100k images, 30 epochs)
only in size: every stage and loss is the full method.

Run: jaxpose deform-learn --config configs/deform_learn_small.py --workdir runs/deform_learn_small [--comparisons]
 (or: python -m train.deform_learn --config configs/deform_learn_small.py --workdir ...)
"""

import ml_collections


def optimizer(lr: float, schedule: str = "constant") -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.name = "adam"
    o.lr = lr
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0
    o.clip_grad_norm = 1.0  # 0 disables
    o.schedule = schedule  # constant | constant_then_linear | cosine
    o.warmup_steps = 0
    o.final_lr_fraction = 1.0 if schedule == "constant" else 0.1
    o.constant_epochs = 0.0
    o.decay_epochs = 0.0
    return o


def data_section() -> ml_collections.ConfigDict:
    data = ml_collections.ConfigDict()
    data.cache_dir = "runs/deform_learn_data"
    data.targets = ""  # set per iteration by the loop
    data.lifter_depths = ""
    data.synthetic = ml_collections.ConfigDict()  # `jaxpose.deform_learn.synthetic.DeformLearnDataConfig` fields
    s = data.synthetic
    s.image_size = 64
    s.num_train = 6000
    s.num_test = 1000
    s.train_subjects = 300
    s.test_subjects = 50
    s.points_per_person = 150
    s.root_yaw_deg = 90.0
    s.seed = 0
    s.resolution = "low"
    s.chunk_size = 50
    return data


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.body = "low"  # the default body's resolution (must equal data.synthetic.resolution) or a body file
    config.num_iterations = 4
    config.warm_start = True  # each iteration's ConvNet starts from the previous one's weights
    config.show_progress = True
    config.data = data_section()

    config.registration = ml_collections.ConfigDict()
    config.registration.num_steps = 300  # not stated in the paper (reconstruction)
    config.registration.learning_rate = 0.1  # the paper's
    config.registration.batch_size = 100  # images per compiled call; independent problems (throughput only)
    config.registration.weights = ml_collections.ConfigDict(
        dict(dense=1000.0, keypoint=1.0, scale=10.0, joint=0.001, det=1.0))  # the paper's; iteration 1: scale 100, joint 1

    config.lifter_steps_per_iteration = 1500
    lifter = config.lifter = ml_collections.ConfigDict()
    lifter.task = "deform_learn_lifter"
    lifter.batch_size = 64
    lifter.eval_batch_size = 100
    lifter.log_every = 250
    lifter.eval_every = 1500
    lifter.checkpoint_every = 1500
    lifter.keep_checkpoints = 1
    lifter.compute_dtype = "float32"
    lifter.model = ml_collections.ConfigDict(dict(width=256, depth=3, discriminator_width=256, discriminator_depth=3))
    lifter.loss = ml_collections.ConfigDict(dict(azimuth_range_deg=90.0, elevation_range_deg=10.0))
    lifter.optimizer = optimizer(2e-4)

    regressor = config.regressor = ml_collections.ConfigDict()
    regressor.task = "deform_learn_regressor"
    regressor.batch_size = 30  # the paper's
    # Per iteration, 5 epochs of 6,000 images. More overfits: on 4,000 images the test MPJPE of even the
    # ground-truth-supervised ConvNet rose from 230 mm after 2,000 steps to 254 mm after 6,000 (RESULTS.md §4).
    regressor.num_steps = 1000
    regressor.eval_batch_size = 50
    regressor.log_every = 100
    regressor.eval_every = 500
    regressor.checkpoint_every = 1000
    regressor.keep_checkpoints = 1
    regressor.compute_dtype = "float32"
    regressor.model = ml_collections.ConfigDict(dict(preset="small", init_params=""))
    regressor.loss = ml_collections.ConfigDict(dict(alpha=1.0, beta=10.0, gamma=1.0, target="registration"))
    regressor.optimizer = optimizer(1e-3)  # the paper: 1e-4 for an ImageNet-pretrained ResNet-50 (see docs)
    return config
