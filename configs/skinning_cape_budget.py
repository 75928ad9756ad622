"""The shared CPU budget of the INS / SNARF / SNARF-NC comparison on CAPE-like subjects (RESULTS.md §2).

Every learned method loads this file and only adds its `model` section, so data, sampling, steps,
optimiser, loss extras, warm starts, root finding and evaluation are identical across methods.

Data: CAPE-like synthetic subjects (jaxpose.skinning.outfits) on the low-resolution body (1,229
vertices): cape01 (long sleeves + trousers, trained on by default), cape02 (short sleeves + trousers) and
the pure-LBS control `ctrl` (static skirt, no noise); 8 frames per motion (40 training frames: walk,
squat, armraise, randomA, randomB; 24 held-out frames: kick, walkB, randomC), generated at data.root
on first use. Training items: SNARF's CAPE sampling (2000 vertices + N(0, 0.01^2) and 250 uniform in
[-1.8, 1.8]^3 per frame) drawn from labelled per-frame pools; batch 1 frame (SNARF: 8).
Evaluation: data.eval_protocol = "cape" (SNARF's CAPE set, both halves; paper-comparable) on all 24
held-out frames; the harsher D-FAUST-style protocol is an override:
  --config.data.eval_protocol=dfaust --config.data.eval_n_bbox=100000 --config.data.eval_n_surface=100000
Budget: `num_steps` steps of Adam (lr 1e-3, 20 warm-up steps, cosine to 5 %, clip 0.1), after warm starts
(skinning field pre-distilled to the minimal body's weights; canonical occupancy pre-fitted to the
minimal body in the star pose; 500 and 600 full-batch Adam steps), Fast-SNARF's root finding (<= 10 Broyden steps,
converged below 1e-4, diverged above 0.5) and a 4-nearest-bones pre-filter at evaluation.
SNARF's first-epoch extras (joint one-hot weights lambda 10, bone occupancy lambda 1) plus the skinning
distillation (lambda 10, not in SNARF) for the first epoch (40 steps at batch 1).
"""

import ml_collections

from jaxpose.skinning.data import data_config

CAPE_SUBJECTS = {"cape01": "longlong", "cape02": "shortlong", "ctrl": "skirtstatic"}


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 1
    config.num_steps = 300
    config.log_every = 10
    config.eval_every = 0
    config.checkpoint_every = 100
    config.keep_checkpoints = 2
    config.eval_batch_size = 1
    config.compute_dtype = "float32"

    config.loss = ml_collections.ConfigDict()
    config.loss.extras_epochs = 1
    config.loss.joint_one_hot_weight = 10.0
    config.loss.bone_occupancy_weight = 1.0
    config.loss.skinning_distill_weight = 10.0

    config.warm_start = ml_collections.ConfigDict()
    config.warm_start.skinning_steps = 500
    config.warm_start.skinning_lr = 3e-3
    config.warm_start.occupancy_steps = 600
    config.warm_start.occupancy_lr = 5e-3

    data = data_config(root="runs/ins_data_cape", subject="cape01", resolution="low", frames_per_motion=8)
    data.subjects = dict(CAPE_SUBJECTS)
    data.eval_protocol = "cape"
    data.eval_prefilter_bones = 4
    config.data = data

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.lr = 1e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.0
    config.optimizer.clip_grad_norm = 0.1
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 20
    config.optimizer.final_lr_fraction = 0.05
    return config
