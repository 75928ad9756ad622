"""The `corenet` task: 3D-CoreNet trained and evaluated by the engine (corenet.md §1–§10).

Config sections (see `configs/corenet_official.py`):
  model: feature_widths, num_residual_blocks, correlation_width, decoder_widths, fc_kernel, use_elain,
    epsilon, num_sinkhorn_iterations, matching_mode ("dense" | "online" | ...), block_size, init_gain
    — the `jaxpose.models.corenet.CoreNet` arguments;
  data: root (a `jaxpose data npt` directory), pairs_per_epoch, build_args (named in the error when
    the directory is missing);
  loss: reconstruction_weight (official 1000), edge_weight (official 0.5; 0 = "w/o edge loss");
  eval: permutation_seeds, list_file, num_triples, list_seed, max_triples.
Data, loss, metrics, baselines and the `jaxpose eval corenet` harness: `jaxpose.tasks.pose_transfer`.
"""

from __future__ import annotations

import ml_collections
from flax import nnx

from jaxpose.models.corenet import CoreNet
from jaxpose.tasks import pose_transfer


def make_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> CoreNet:
    m = config.model
    return CoreNet(
        feature_widths=tuple(int(w) for w in m.feature_widths),
        num_residual_blocks=int(m.num_residual_blocks),
        correlation_width=int(m.correlation_width),
        decoder_widths=tuple(int(w) for w in m.decoder_widths),
        fc_kernel=int(m.fc_kernel),
        use_elain=bool(m.use_elain),
        epsilon=float(m.epsilon),
        num_sinkhorn_iterations=int(m.num_sinkhorn_iterations),
        matching_mode=str(m.matching_mode),
        block_size=int(m.block_size),
        init_gain=float(m.init_gain),
        residual_output=bool(m.get("residual_output", False)),
        rngs=rngs,
    )


TASK = pose_transfer.make_task("corenet", make_model, "3D-CoreNet pose transfer: OT correspondence + ElaIN refinement (Song et al., NeurIPS 2021)")
