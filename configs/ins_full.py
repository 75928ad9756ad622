"""INS, full run: full-resolution body (13,718 vertices), SNARF's CAPE sampling and optimiser.

Data: synthetic clothed subject synth01 (skirt) at resolution "full", 60 frames per motion (300 training
frames over 5 motions, 180 held-out test frames), generated at data.root on first use.
Per item: 2000 near-surface + 250 uniform points drawn from a labelled per-frame pool (SNARF's values);
evaluation: the protocol's 100k bbox + 100k surface points per held-out frame.
Model: INS defaults (SIREN occupancy 5 x 256, omega0 30; skinning field 4 x 128; two 4-layer PINs).
Optimiser: SNARF's (Adam lr 1e-3, gradient clip 0.1, batch 8 frames, 100k steps) — INS's own values are
[unverified] (paper body not read).
Run: python -m train.ins --config configs/ins_full.py --workdir runs/ins_full   (needs an accelerator)
"""

import ml_collections

from jaxpose.skinning.data import data_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "ins"
    config.seed = 0
    config.batch_size = 8
    config.num_steps = 100_000
    config.log_every = 100
    config.eval_every = 0  # evaluate with `jaxpose eval ins --checkpoint ...`
    config.checkpoint_every = 5_000
    config.keep_checkpoints = 3
    config.eval_batch_size = 1
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.occupancy_width = 256
    config.model.occupancy_depth = 5
    config.model.occupancy_omega0 = 30.0
    config.model.skinning_width = 128
    config.model.skinning_depth = 4
    config.model.root_max_steps = 50
    config.model.root_chunk_size = 0  # 0: no chunking
    config.model.pin = ml_collections.ConfigDict()
    config.model.pin.n_layers = 4
    config.model.pin.pose_code_dim = 32
    config.model.pin.encoder_width = 64
    config.model.pin.embed_width = 64
    config.model.pin.embed_depth = 2
    config.model.pin.head_width = 64
    config.model.pin.head_depth = 2
    # Ablation switches (INS Table 3).
    config.model.use_pose_multiplication = True
    config.model.use_siren = True
    config.model.use_rotation = True
    config.model.use_h_d = True
    config.model.use_h_c = True
    config.model.use_lbs = True

    config.loss = ml_collections.ConfigDict()
    config.loss.extras_epochs = 1  # SNARF: first epoch only
    config.loss.joint_one_hot_weight = 10.0  # SNARF's lambda
    config.loss.skinning_distill_weight = 0.0

    config.data = data_config(root="data/clothed_full", resolution="full", frames_per_motion=60, eval_n=100_000)

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.lr = 1e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.0
    config.optimizer.clip_grad_norm = 0.1
    config.optimizer.schedule = "constant"
    return config
