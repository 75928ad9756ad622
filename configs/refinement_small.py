"""Config of the `refinement` task on 2 CPU cores: 128×128 synthetic people, a small U-Net.

Budget: ≤ 30 minutes on 2 CPU cores including data generation. Measured on a shared 2-core CPU:
generating the 1,200 train + 200 test people took 78 s (cached in data.cache_dir and reused by later
runs and the ablations); a train step (batch 16, base width 8, 4 levels, GroupNorm; ~185k
parameters) took 0.50 s at load ~1 and 0.7–1.1 s at load 4–6 (other jobs), so 1,200 steps
(16 epochs) take 10–22 min, plus ~10 s per evaluation of the 200 test people. On the synthetic data the initial
estimate is off by ~2.6 px on average (the zero_displacement baseline).

Run: python -m train.refinement --config configs/refinement_small.py --workdir runs/refinement_small
 (or: jaxpose train refinement --config configs/refinement_small.py --workdir runs/refinement_small)
Ablations: configs/refinement_small_no_{texture,depth,normals}.py (same data, one input off).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "refinement"
    config.seed = 0
    config.batch_size = 16  # global, split over all devices
    config.num_steps = 1200
    config.log_every = 20
    config.eval_every = 400  # 0 disables
    config.checkpoint_every = 400  # 0: only at the end
    config.keep_checkpoints = 2
    config.eval_batch_size = 40
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.base_width = 8  # level i has base_width · 2^i channels
    config.model.num_levels = 4  # image size must be divisible by 2^(num_levels − 1)
    config.model.convs_per_level = 2
    config.model.norm = "group"  # group | none
    config.model.num_groups = 8
    config.model.activation = "relu"  # relu | gelu
    config.model.downsample = "strided_conv"  # strided_conv | avg_pool
    config.model.upsample = "resize"  # resize | transpose_conv
    config.model.displacement_scale = 10.0  # px per unit of the head's displacement output
    config.model.inputs = ml_collections.ConfigDict()
    config.model.inputs.texture = True  # False: the untextured (grey) render instead of the textured one
    config.model.inputs.depth = True  # False: depth channel zeroed
    config.model.inputs.normals = True  # False: normal channels zeroed

    config.loss = ml_collections.ConfigDict()
    config.loss.confidence_weight = 1.0

    config.data = ml_collections.ConfigDict()
    config.data.cache_dir = "runs/refinement_data"
    config.data.synthetic = ml_collections.ConfigDict()  # `jaxpose.fitting.synthetic.SyntheticConfig` fields
    s = config.data.synthetic
    s.image_size = 128
    s.num_train = 1200
    s.num_test = 200
    s.train_identities = 300
    s.test_identities = 60
    s.train_poses = 1200
    s.test_poses = 200
    s.seed = 0
    s.pose_noise_deg = 5.0
    s.texture_mode = "backproject"
    s.texture_frames = 3
    s.chunk_size = 32

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.lr = 2e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.0  # adamw only
    config.optimizer.clip_grad_norm = 1.0  # 0 disables
    config.optimizer.schedule = "cosine"  # constant | constant_then_linear | cosine
    config.optimizer.warmup_steps = 50
    config.optimizer.final_lr_fraction = 0.05
    config.optimizer.constant_epochs = 0.0  # constant_then_linear only
    config.optimizer.decay_epochs = 0.0
    return config
