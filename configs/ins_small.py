"""INS, small: a 2-core CPU run on a REDUCED subject — say so whenever its numbers are quoted.

Reduced: low-resolution body (1,229 vertices), ONE clothed subject (synth01, skirt), 4 frames per motion
(20 training frames over 5 motions; held-out test motions kick/walkB/randomC, the first 6 frames),
evaluation on 10k bbox + 10k surface points per frame (protocol: 100k + 100k), batch 2 frames of
2000 near-surface + 750 uniform points, the uniform ones drawn from a 25k pool in each frame's
evaluation cube (data.uniform_box = "bbox"; SNARF's [-1.8, 1.8]^3 box with a small pool lets the SIREN
grow spurious inside blobs there), narrow networks (occupancy SIREN 3 x 64, skinning 3 x 64, PINs of 3
layers of width 32), Broyden 20 steps, 600 steps with Adam lr 1e-3 (clip 0.1), cosine decay to 5 %
after 20 warm-up steps (about 15 min on a quiet 2-core CPU). The skinning field is also
distilled towards the minimal body's weights (loss.skinning_distill_weight, not in INS/SNARF) during
the first extras_epochs epochs, since the short budget leaves no time to discover them from occupancy.
Run: python -m train.ins --config configs/ins_small.py --workdir runs/ins_small
Ablations (INS Table 3) are overrides of this config, e.g.
     python -m train.ins --config configs/ins_small.py --config.model.use_h_c=False --workdir runs/ins_small_no_h_c
with use_pose_multiplication, use_siren, use_rotation, use_h_d, use_h_c or use_lbs set to False.
"""

import pathlib

from jaxpose.training.config import load_config


def get_config():
    config = load_config(pathlib.Path(__file__).with_name("ins_full.py"))
    config.batch_size = 2
    config.num_steps = 600
    config.log_every = 10
    config.checkpoint_every = 200
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 20
    config.optimizer.final_lr_fraction = 0.05
    config.model.occupancy_width = 64
    config.model.occupancy_depth = 3
    config.model.skinning_width = 64
    config.model.skinning_depth = 3
    config.model.root_max_steps = 20
    config.model.pin.n_layers = 3
    config.model.pin.pose_code_dim = 16
    config.model.pin.encoder_width = 32
    config.model.pin.embed_width = 32
    config.model.pin.head_width = 32
    config.loss.extras_epochs = 5
    config.loss.skinning_distill_weight = 10.0
    config.data.root = "runs/ins_data_small"
    config.data.resolution = "low"
    config.data.frames_per_motion = 4
    config.data.eval_n_bbox = 10_000
    config.data.eval_n_surface = 10_000
    config.data.max_eval_frames = 6
    config.data.pool_surface = 10_000
    config.data.pool_uniform = 25_000
    config.data.n_uniform = 750
    config.data.uniform_box = "bbox"
    return config
