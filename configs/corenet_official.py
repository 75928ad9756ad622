"""3D-CoreNet, the official recipe on the full-resolution default body.

Recipe: docs/pose_transfer.md, "Losses and training recipe".

Batch 8, official widths, dense matching, Adam(lr 1e-4, b1 0, b2 0.9, eps 1e-3), 100 epochs constant +
100 epochs linear decay of 500 iterations (4000 pairs), loss 1000 · MSE + 0.5 · edge.
Data: jaxpose data npt --out data/npt_full --identities 30 --poses 800 --resolution full --seed 0
Run:  python -m train.corenet --config configs/corenet_official.py --workdir runs/corenet_official
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "corenet"
    config.seed = 0
    config.batch_size = 8  # global (the README's 2 GPUs x 4)
    config.num_steps = 100_000  # 200 epochs x 500 iterations
    config.log_every = 50
    config.eval_every = 0  # evaluate with `jaxpose eval corenet` (0 disables in-training eval)
    config.checkpoint_every = 5_000
    config.keep_checkpoints = 3
    config.eval_batch_size = 8
    config.compute_dtype = "float32"

    config.model = ml_collections.ConfigDict()
    config.model.feature_widths = (64, 128, 256)
    config.model.num_residual_blocks = 4
    config.model.correlation_width = 256
    config.model.decoder_widths = (1024, 512, 256)
    config.model.fc_kernel = 3  # official vertex-axis conv; 1 = permutation-equivariant variant
    config.model.use_elain = True  # False: the "w/o ElaIN" ablation
    config.model.epsilon = 0.03
    config.model.num_sinkhorn_iterations = 5
    config.model.matching_mode = "dense"  # "online" streams row blocks of block_size (O(N·block) memory)
    config.model.block_size = 1024
    config.model.init_gain = 0.02
    config.model.residual_output = False  # official: absolute coordinates (True: warp + offset, not in the paper)

    config.data = ml_collections.ConfigDict()
    config.data.root = "data/npt_full"
    config.data.build = ml_collections.ConfigDict(dict(  # the `jaxpose data npt` settings of data.root
        identities=30, poses=800, resolution="full", seed=0, beta_mode="normal", num_test_triples=400, precision=6))
    config.data.pairs_per_epoch = 4000  # 500 iterations of 8

    config.loss = ml_collections.ConfigDict()
    config.loss.reconstruction_weight = 1000.0
    config.loss.edge_weight = 0.5  # 0: the "w/o edge loss" ablation

    config.eval = ml_collections.ConfigDict()
    config.eval.permutation_seeds = (0, 1, 2)
    config.eval.list_file = ""  # "": the dataset's human_test_list, else a generated list
    config.eval.num_triples = 400  # length of a generated list
    config.eval.list_seed = 0
    config.eval.max_triples = 0  # 0: all

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.lr = 1e-4
    config.optimizer.b1 = 0.0
    config.optimizer.b2 = 0.9
    config.optimizer.eps = 1e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.clip_grad_norm = 0.0
    config.optimizer.schedule = "constant_then_linear"
    config.optimizer.constant_epochs = 100.0
    config.optimizer.decay_epochs = 100.0
    config.optimizer.warmup_steps = 0
    config.optimizer.final_lr_fraction = 0.0
    return config
