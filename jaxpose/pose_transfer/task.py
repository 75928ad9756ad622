"""The engine tasks of the pose-transfer models, built from their config: `corenet` and `npt`.

Config sections (see `configs/corenet_official.py`, `configs/npt_official.py`):
  model (corenet): feature_widths, num_residual_blocks, correlation_width, decoder_widths, fc_kernel,
    use_elain, epsilon, num_sinkhorn_iterations, matching_mode (a `jaxpose.matching.MATCHING_NAMES`
    name), block_size, init_gain, residual_output — the `CoreNet` arguments;
  model (npt): variant ("maxpool" | "original"), pose_widths, init_stddev — the `NPT` arguments;
  data: root (a `jaxpose data npt` directory), build (its `jaxpose data npt` settings, named in the
    error when the directory is missing), pairs_per_epoch;
  loss: reconstruction_weight, edge_weight (3D-CoreNet 1000 / 0.5, 0 = "w/o edge loss"; NPT 1 / 0.0005);
  eval: permutation_seeds, list_file, num_triples, list_seed, max_triples.
Both tasks share the training pairs (`pairs`), the loss (`loss`), the test protocol (`protocol`) and
the `jaxpose eval corenet|npt` harness (`evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
from flax import nnx

from jaxpose.matching import matching_from_name
from jaxpose.pose_transfer import protocol
from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.pose_transfer.evaluation import PoseTransferProtocol
from jaxpose.pose_transfer.loss import make_loss_fn
from jaxpose.pose_transfer.npt import NPT
from jaxpose.pose_transfer.pairs import check_data_config, make_train_pairs, open_config_data
from jaxpose.training.data import ArrayDataset
from jaxpose.training.task import Task, TaskDefinition


def make_corenet(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> CoreNet:
    """3D-CoreNet from a `model` config section."""
    geometry, solver = matching_from_name(
        str(model.matching_mode), block_size=int(model.block_size), num_iterations=int(model.num_sinkhorn_iterations)
    )
    return CoreNet(
        feature_widths=tuple(int(w) for w in model.feature_widths),
        num_residual_blocks=int(model.num_residual_blocks),
        correlation_width=int(model.correlation_width),
        decoder_widths=tuple(int(w) for w in model.decoder_widths),
        fc_kernel=int(model.fc_kernel),
        use_elain=bool(model.use_elain),
        epsilon=float(model.epsilon),
        matching_geometry=geometry,
        matching_solver=solver,
        init_gain=float(model.init_gain),
        residual_output=bool(model.get("residual_output", False)),
        rngs=rngs,
    )


def make_npt(model: ml_collections.ConfigDict, rngs: nnx.Rngs) -> NPT:
    """NPT from a `model` config section."""
    return NPT(variant=str(model.variant), pose_widths=tuple(int(w) for w in model.pose_widths),
               init_stddev=float(model.init_stddev), rngs=rngs)  # fmt: skip


def make_eval_data(config: ml_collections.ConfigDict, data_dir: str | None, list_file: str | None) -> ArrayDataset:
    """Test set of `data_dir` (default `config.data.root`) with the first of `config.eval.permutation_seeds`."""
    data = open_config_data(config, data_dir)
    seeds = tuple(config.eval.permutation_seeds)
    triples = protocol.test_triples(config, data, list_file)
    return ArrayDataset(protocol.eval_arrays(data, triples, int(seeds[0]) if seeds else 0))


def _task_maker(name: str, make_model: Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]):
    def make_task(config: ml_collections.ConfigDict) -> Task:
        check_data_config(config)
        return Task(
            name=name,
            config=config,
            make_model=lambda rngs: make_model(config.model, rngs),
            loss_fn=make_loss_fn(float(config.loss.reconstruction_weight), float(config.loss.edge_weight)),
            make_train_data=lambda: make_train_pairs(config),
            make_eval_data=lambda data_dir, list_file: make_eval_data(config, data_dir, list_file),
            predict=protocol.predict,
            eval_metrics=protocol.eval_metrics,
            baselines=protocol.BASELINES,
        )

    return make_task


PROTOCOL = PoseTransferProtocol()
CORENET_TASK = TaskDefinition("corenet", _task_maker("corenet", make_corenet), PROTOCOL,
                              "3D-CoreNet pose transfer: OT correspondence + ElaIN refinement (Song et al., NeurIPS 2021)")
NPT_TASK = TaskDefinition("npt", _task_maker("npt", make_npt), PROTOCOL,
                          "NPT pose transfer: max-pooled pose code + SPAdaIN decoder (Wang et al., CVPR 2020)")
